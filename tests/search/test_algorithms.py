import re

import numpy as np
import pytest

from evoforge.errors import ConfigError, UnknownNameError
from evoforge.pareto import Objective
from evoforge.problems import BenchmarkDomain, RealVector
from evoforge.registry import Registry
from evoforge.search.algorithms import ALGORITHMS, Individual, adapted_rates, make_algorithm
from evoforge.search.domain import Domain, register_domain
from evoforge.search.engine import Search
from evoforge.search.evaluation import Evaluation, Status
from evoforge.search.termination import Termination
from evoforge.testing.domains import AdaptationDomain, SphereDomain


def test_unknown_algorithm_lists_valid_names():
    assert {"nsga2", "petra", "random"} <= set(ALGORITHMS)
    # every registered name (a benchmark's adapters may have joined the built-in three in this process)
    with pytest.raises(UnknownNameError, match=re.escape(f"valid names: {', '.join(sorted(ALGORITHMS))}")):
        make_algorithm("cmaes")
    with pytest.raises(ConfigError, match="pop_size"):
        make_algorithm("nsga2", pop_size=1)


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_every_algorithm_improves_on_zdt1(name):
    s = Search.create(BenchmarkDomain("zdt1", n_var=10), algorithm=name, algorithm_options={"pop_size": 20},
                      termination=Termination(max_evaluations=400), seed=1)
    s.run()
    hv = [r["hypervolume"] for r in s.store.generations()]
    assert hv[-1] >= hv[0]
    assert all(len(r["population"]) <= 20 for r in s.store.generations())


@pytest.mark.parametrize("name", ["nsga2", "petra", "random"])
def test_every_algorithm_runs_a_single_objective(name):
    s = Search.create(SphereDomain(), algorithm=name, algorithm_options={"pop_size": 8},
                      termination=Termination(max_evaluations=80), seed=1)
    front = s.run()
    values = sorted(e.objectives["distance"] for e in s.store.evaluations().values())
    assert [m.objectives["distance"] for m in front] == [values[0]] * len(front)  # the front: the best value, ties kept
    hv = [r["hypervolume"] for r in s.store.generations()]
    assert hv[-1] == pytest.approx(2.5 - values[0]) and hv[-1] > hv[0]


def test_nsga2_beats_random_on_zdt1():
    def final_hv(name):
        s = Search.create(BenchmarkDomain("zdt1", n_var=10), algorithm=name, algorithm_options={"pop_size": 20},
                          termination=Termination(max_evaluations=1000), seed=2)
        s.run()
        return s.store.generations()[-1]["hypervolume"]

    assert final_hv("nsga2") > final_hv("random") + 0.05


def test_adapted_rates_formula():
    rates = adapted_rates({"a": [8, 10], "b": [0, 10]}, floor=0.05)
    assert sum(rates.values()) == pytest.approx(1.0)
    qa, qb = 9 / 12, 1 / 12
    assert rates["a"] == pytest.approx(0.05 + 0.9 * qa / (qa + qb))
    extreme = adapted_rates({"a": [1000, 1000], "b": [0, 1000], "c": [0, 1000]}, floor=0.05)
    assert min(extreme.values()) >= 0.05 - 1e-12
    assert adapted_rates({"a": [0, 0], "b": [0, 0]}, floor=0.05) == {"a": 0.5, "b": 0.5}


def test_petra_rates_move_towards_the_operator_that_succeeds():
    s = Search.create(AdaptationDomain(), algorithm="petra", algorithm_options={"pop_size": 8},
                      termination=Termination(max_generations=25), seed=0)
    s.run()
    records = s.store.generations()
    first, last = records[1]["operator_rates"], records[-1]["operator_rates"]
    assert last["improve"] > first["improve"]
    assert last["improve"] > last["worsen"] and last["improve"] > last["wander"]
    assert all(v >= 0.05 - 1e-12 for v in last.values())
    successes, trials = records[-1]["operator_stats"]["improve"]
    assert 0 < successes <= trials


def test_petra_state_round_trips_and_survival_keeps_front():
    algo = make_algorithm("petra", pop_size=4)
    algo.load_state({"stats": {"x": [2, 5]}, "reference": [1.0, 2.0]})
    assert algo.state() == {"stats": {"x": [2, 5]}, "reference": [1.0, 2.0]}
    s = Search.create(BenchmarkDomain("zdt1", n_var=4), algorithm="petra", algorithm_options={"pop_size": 6},
                      termination=Termination(max_evaluations=60), seed=4)
    s.run()
    # elitism: the hypervolume of the population never drops
    hv = np.array([r["hypervolume"] for r in s.store.generations()])
    assert np.all(np.diff(hv) >= -1e-12)


class ToyDomain(Domain):
    """Two objectives read from a RealVector; subclasses name their mutation operators."""

    def __init__(self, objectives: tuple[Objective, ...], **operators) -> None:
        self.objectives = objectives
        self._ops: Registry = Registry("mutation operator")
        for name, operator in operators.items():
            self._ops.add(name, operator)

    def config(self):
        return {}

    @property
    def mutations(self):
        return self._ops


@register_domain
class IdleDomain(ToyDomain):
    """``idle`` changes a coordinate no objective reads (its children tie their parents);
    ``improve`` moves towards the origin."""

    name = "idle-toy"

    def __init__(self) -> None:
        super().__init__(
            (Objective("x", reference=11.0), Objective("y", reference=11.0)),
            improve=lambda g, rng: RealVector((*np.clip(np.array(g.values[:2]) - rng.uniform(0.01, 0.2, 2), 0, 10), g.values[2])),
            idle=lambda g, rng: RealVector((*g.values[:2], float(rng.uniform()))),
        )

    def initial_population(self, rng, size):
        return [self.sample(rng) for _ in range(size)]

    def sample(self, rng):
        return RealVector(tuple(float(v) for v in rng.uniform(8, 10, 3)))

    def evaluate(self, genome, context):
        return Evaluation(Status.OK, {"x": genome.values[0], "y": genome.values[1]})


@register_domain
class WarmStartDomain(ToyDomain):
    """A warm start in the middle of a ZDT1-like front that mutation reaches only in small
    steps, while fresh samples spread along it."""

    name = "warm-start-toy"

    def __init__(self) -> None:
        super().__init__(
            (Objective("f1", reference=1.1), Objective("f2", reference=11.0)),
            step=lambda g, rng: RealVector(tuple(float(v) for v in np.clip(np.array(g.values) + rng.normal(0, 0.02, 2), 0, 1))),
        )

    def initial_population(self, rng, size):
        return [RealVector((0.5, 0.5))] + [self.sample(rng) for _ in range(size - 1)]

    def sample(self, rng):
        return RealVector(tuple(float(v) for v in rng.uniform(0, 1, 2)))

    def evaluate(self, genome, context):
        x, y = genome.values
        return Evaluation(Status.OK, {"f1": x, "f2": (1 + 9 * y) * (1 - np.sqrt(x / (1 + 9 * y)))})


def test_a_child_that_ties_its_parent_is_no_success():
    """The credit rule on a toy domain where the answer is known (see `IdleDomain`)."""
    from evoforge.search.algorithms.petra import child_succeeds

    s = Search.create(IdleDomain(), algorithm="petra", algorithm_options={"pop_size": 6},
                      termination=Termination(max_generations=20), seed=1)
    s.run()
    stats = s.store.generations()[-1]["operator_stats"]
    assert stats["idle"][0] == 0 and stats["idle"][1] > 0  # ties never count, however often they join the front
    assert stats["improve"][0] > 0
    rates = s.store.generations()[-1]["operator_rates"]
    assert rates["improve"] > 0.8 and rates["idle"] < 0.2

    objectives = IdleDomain().objectives
    parent = Individual(RealVector((1.0, 1.0, 0.0)), Evaluation(Status.OK, {"x": 1.0, "y": 1.0}))
    tie = Individual(RealVector((1.0, 1.0, 0.5)), Evaluation(Status.OK, {"x": 1.0, "y": 1.0}))
    trade = Individual(RealVector((0.5, 2.0, 0.0)), Evaluation(Status.OK, {"x": 0.5, "y": 2.0}))
    better = Individual(RealVector((0.5, 0.5, 0.0)), Evaluation(Status.OK, {"x": 0.5, "y": 0.5}))
    assert not child_succeeds(tie, parent, {tie.key, parent.key}, objectives)
    assert child_succeeds(trade, parent, {trade.key, parent.key}, objectives)  # a new trade-off on the front
    assert not child_succeeds(trade, parent, {parent.key}, objectives)  # not on the front, not better
    assert child_succeeds(better, parent, set(), objectives)  # dominates its parent


def test_petra_starts_with_twice_its_population_and_keeps_the_best():
    algo = make_algorithm("petra", pop_size=5)
    assert algo.initial_size == 10 and algo.config()["initial_size"] == 10
    assert make_algorithm("nsga2", pop_size=5).initial_size == 5
    assert make_algorithm("petra", pop_size=5, initial_size=7).initial_size == 7
    with pytest.raises(ConfigError, match="initial_size"):
        make_algorithm("petra", pop_size=5, initial_size=-1)
    s = Search.create(BenchmarkDomain("zdt1", n_var=4), algorithm="petra", algorithm_options={"pop_size": 5},
                      termination=Termination(max_evaluations=20), seed=0)
    s.run()
    generations = s.store.generations()
    assert generations[0]["evaluations"] == 10 and len(generations[0]["population"]) == 5


def test_a_broad_first_generation_beats_a_warm_start_at_a_small_budget():
    """On a toy domain where the answer is known (`WarmStartDomain`), at 40 evaluations a first
    generation of twice the population covers more hypervolume than the population alone."""
    from evoforge.front import feasible_hypervolume

    def hv(initial_size: int, seed: int) -> float:
        domain = WarmStartDomain()
        s = Search.create(domain, algorithm="petra", algorithm_options={"pop_size": 10, "initial_size": initial_size},
                          termination=Termination(max_evaluations=40), seed=seed)
        s.run()
        return feasible_hypervolume(s.store.evaluations().values(), domain.objectives, np.array([1.1, 11.0]))

    broad = [hv(20, seed) for seed in range(5)]
    narrow = [hv(10, seed) for seed in range(5)]  # the population alone
    assert np.median(broad) > np.median(narrow), (broad, narrow)


def _children_in_the_good_region(preselect: int, seed: int) -> float:
    """Share of the children (not the first generation) of a 60-evaluation run on
    `HiddenSettingDomain` that have the good setting and a knob near its best value."""
    from evoforge.genome import genome_from_json
    from evoforge.testing.domains import HiddenSettingDomain

    s = Search.create(HiddenSettingDomain(), algorithm="petra", algorithm_options={"pop_size": 10, "preselect": preselect},
                      termination=Termination(max_evaluations=60), seed=seed)
    s.run()
    first = {o["key"] for o in s.store.batch(0)["offspring"]}
    children = [genome_from_json(s.store.genome(k)).values for k in s.store.evaluations() if k not in first]  # type: ignore[attr-defined]
    good = [min(int(v[0] * 10), 9) == HiddenSettingDomain.GOOD_BIN and abs(v[1] - 0.2) < 0.15 for v in children]
    return float(np.mean(good))


def test_preselection_steers_children_to_what_worked():
    """On a domain where a model of past evaluations is known to pay (one of ten values of a
    setting avoids a penalty), pre-selected children land in the good region far more often."""
    plain = [_children_in_the_good_region(1, seed) for seed in range(6)]
    model = [_children_in_the_good_region(8, seed) for seed in range(6)]
    assert np.mean(model) > 2 * np.mean(plain), (model, plain)
    assert np.median(model) > np.median(plain)


def _lock_out_run(explore: float, seed: int) -> tuple[float, int]:
    """(hypervolume of all evaluations, children in the paying region) of an 80-evaluation
    petra run on `LockOutDomain` with pre-selection and the given exploration share."""
    from evoforge.front import feasible_hypervolume
    from evoforge.genome import genome_from_json
    from evoforge.testing.domains import LockOutDomain

    domain = LockOutDomain()
    s = Search.create(domain, algorithm="petra", algorithm_options={"pop_size": 10, "preselect": 8, "explore": explore},
                      termination=Termination(max_evaluations=80), seed=seed)
    s.run()
    evaluations = s.store.evaluations()
    values = [genome_from_json(s.store.genome(k)).values for k in evaluations]  # type: ignore[attr-defined]
    paying = sum(v[0] >= 0.5 and abs(v[1] - domain.BEST_KNOB) < domain.BAND for v in values)
    return feasible_hypervolume(evaluations.values(), domain.objectives, np.array([1.1, 6.0])), paying


def test_an_exploration_share_escapes_a_setting_the_model_locked_out():
    """On `LockOutDomain` greedy pre-selection stops trying the mode whose first trials failed in
    about half the seeds; a quarter of plain mutants finds its paying region in more seeds and
    covers more hypervolume."""
    greedy = [_lock_out_run(0.0, seed) for seed in range(10)]
    exploring = [_lock_out_run(0.25, seed) for seed in range(10)]
    assert sum(paying > 5 for _, paying in exploring) > sum(paying > 5 for _, paying in greedy), (greedy, exploring)
    assert np.median([hv for hv, _ in exploring]) > np.median([hv for hv, _ in greedy]), (greedy, exploring)


def test_explored_children_skip_the_model(monkeypatch):
    """With ``explore`` 1 every child is a plain mutant: the model never ranks a candidate."""
    from evoforge.search import surrogate
    from evoforge.testing.domains import LockOutDomain

    calls = []
    score = surrogate.DensityRatio.score
    monkeypatch.setattr(surrogate.DensityRatio, "score", lambda self, c: calls.append(c) or score(self, c))

    def run(explore: float) -> None:
        Search.create(LockOutDomain(), algorithm="petra", algorithm_options={"pop_size": 6, "preselect": 8, "explore": explore},
                      termination=Termination(max_evaluations=30), seed=1).run()

    run(1.0)
    assert calls == []
    run(0.5)
    assert calls  # the other half is pre-selected
    with pytest.raises(ConfigError, match="explore must be a share in \\[0, 1\\]"):
        make_algorithm("petra", explore=1.5)


def test_preselection_needs_features_and_enough_evaluations():
    from evoforge.search.algorithms.petra import Petra
    from evoforge.testing.domains import HiddenSettingDomain

    with pytest.raises(ConfigError, match="preselect"):
        make_algorithm("petra", preselect=0)
    with pytest.raises(ConfigError, match="model_after"):
        make_algorithm("petra", model_after=1)
    assert make_algorithm("petra").config()["preselect"] == 1  # plain mutation unless asked
    assert make_algorithm("petra").config()["explore"] == 0.0

    def individual(values, f1):
        return Individual(RealVector(values), Evaluation(Status.OK, {"f1": f1, "f2": 1.0 - f1}))

    algo = Petra(model_after=3)
    domain = HiddenSettingDomain()
    algo.observe([individual((0.75, 0.2, 0.1), 0.1), individual((0.1, 0.9, 0.5), 0.5)])
    assert algo._model(domain) is None  # two evaluations: too few
    algo.observe([individual((0.3, 0.5, 0.9), 0.9), individual((0.75, 0.2, 0.1), 0.1)])  # a repeat counts once
    assert len(algo._archive) == 3 and algo._model(domain) is not None
    blind = Petra(model_after=3)
    blind.observe(list(algo._archive.values()))
    assert blind._model(BenchmarkDomain("zdt1", n_var=3)) is None  # no features: plain mutation


def test_a_resumed_run_with_preselection_asks_what_the_uninterrupted_run_asks(tmp_path):
    """The model is rebuilt from the stored evaluations, so a run stopped between generations
    continues exactly."""
    from evoforge.store import SQLiteRunStore
    from evoforge.testing.domains import HiddenSettingDomain

    def create(store=None):
        return Search.create(HiddenSettingDomain(), algorithm="petra", algorithm_options={"pop_size": 6, "preselect": 8, "explore": 0.25},
                             termination=Termination(max_evaluations=36), seed=4, store=store)

    full = create()
    full.run()
    s = create(SQLiteRunStore(tmp_path / "run.db"))
    for _ in range(3):
        for c in s.ask():
            s.tell(c.key, s.domain.evaluate(c.genome, None))  # type: ignore[arg-type]
        s.advance()
    s.store.close()
    resumed = Search.resume(SQLiteRunStore(tmp_path / "run.db"))
    resumed.run()
    assert list(resumed.store.evaluations()) == list(full.store.evaluations())
