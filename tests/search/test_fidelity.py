import re

import pytest

import evoforge
from evoforge.api import open_store
from evoforge.errors import ConfigError, UnknownNameError
from evoforge.pareto import Objective, non_dominated_sort, to_min_matrix
from evoforge.problems import BenchmarkDomain
from evoforge.run import RunSpec
from evoforge.search.engine import Search
from evoforge.search.evaluation import Evaluation, Status
from evoforge.search.fidelity import Fidelity
from evoforge.search.termination import Termination
from evoforge.store import SQLiteRunStore
from evoforge.testing.domains import FidelityDomain

OBJECTIVES = (Objective("a"), Objective("b"))


def results(points):
    return {f"k{i}": Evaluation(Status.OK, {"a": a, "b": b}) for i, (a, b) in enumerate(points)}


def test_bad_schedules_name_the_value_and_the_fix():
    for rungs in ((0.5,), (0.5, 0.9), (1.0, 0.5, 1.0), (0.0, 1.0), (0.5, 0.5, 1.0)):
        with pytest.raises(ConfigError, match="rungs .* are invalid; give increasing fractions"):
            Fidelity(rungs)
    with pytest.raises(ConfigError, match="eta=1 is invalid"):
        Fidelity((0.5, 1.0), eta=1)
    with pytest.raises(ConfigError, match="unknown promotion rule 'best'; valid: top, front"):
        Fidelity((0.5, 1.0), promote="best")
    with pytest.raises(ConfigError, match="fractions separated by commas"):
        Fidelity.parse("quarter,1")
    assert Fidelity.parse("0.25, 0.5,1", 2, "front") == Fidelity((0.25, 0.5, 1.0), 2, "front")
    assert Fidelity((0.1, 0.3, 1.0), eta=3).widening == 9
    assert Fidelity.from_dict(Fidelity((0.2, 1.0)).to_dict()) == Fidelity((0.2, 1.0))
    with pytest.raises(ConfigError, match="unknown promotion schedule 'eager'; valid: asynchronous, synchronous"):
        Fidelity((0.5, 1.0), schedule="eager")
    assert Fidelity.parse("0.5,1", schedule="asynchronous").asynchronous
    assert Fidelity.from_dict({"rungs": [0.5, 1.0], "eta": 2, "promote": "top"}).schedule == "synchronous"  # runs stored before


def test_top_promotes_the_screening_front_first_then_the_largest_contributors():
    # k0, k1, k2 are non-dominated; k3..k8 are dominated, k3 only just
    points = [(0, 3), (1, 1), (3, 0), (1.1, 1.1), (2, 2), (3, 3), (4, 4), (5, 5), (6, 6)]
    fidelity = Fidelity((0.25, 1.0), eta=3)
    keys = list(results(points))
    assert fidelity.promoted(keys, results(points), OBJECTIVES, 99) == ["k0", "k1", "k2"]  # ceil(9 / 3)
    two_of_front = fidelity.promoted(keys, results(points), OBJECTIVES, 2)
    assert len(two_of_front) == 2 and set(two_of_front) < {"k0", "k1", "k2"}  # the cap cuts inside the front
    two = Fidelity((0.25, 1.0), eta=2)
    assert two.promoted(keys, results(points), OBJECTIVES, 99) == ["k0", "k1", "k2", "k3", "k4"]  # the next front follows


def test_front_promotes_only_non_dominated_candidates():
    points = [(0, 0), (1, 1), (2, 2), (3, 3), (4, 4), (5, 5)]
    keys = list(results(points))
    assert Fidelity((0.25, 1.0), eta=2, promote="front").promoted(keys, results(points), OBJECTIVES, 99) == ["k0"]
    assert Fidelity((0.25, 1.0), eta=2, promote="top").promoted(keys, results(points), OBJECTIVES, 99) == ["k0", "k1", "k2"]


def test_failed_candidates_are_never_promoted_and_infeasible_ones_come_last():
    evaluations = {
        "bad": Evaluation.failure(Status.CRASHED, "died"),
        "infeasible": Evaluation(Status.OK, {"a": 0.0, "b": 0.0}, {"limit": 1.0}),
        "ok": Evaluation(Status.OK, {"a": 5.0, "b": 5.0}, {"limit": -1.0}),
    }
    fidelity = Fidelity((0.5, 1.0), eta=2)
    assert fidelity.promoted(list(evaluations), evaluations, OBJECTIVES, 99) == ["infeasible", "ok"]  # ceil(3 / 2), in key order
    assert fidelity.promoted(list(evaluations), evaluations, OBJECTIVES, 1) == ["ok"]  # feasible first, however good the rest
    assert fidelity.promoted(["bad"], evaluations, OBJECTIVES, 99) == []


def test_asynchronous_promotion_takes_the_best_floor_share_of_what_is_done_then_fills_the_rung():
    # k0, k1, k2 are non-dominated, k3..k8 dominated
    points = [(0, 3), (1, 1), (3, 0), (1.1, 1.1), (2, 2), (3, 3), (4, 4), (5, 5), (6, 6)]
    screened, keys = results(points), list(results(points))
    fidelity = Fidelity((0.25, 1.0), eta=3, schedule="asynchronous")
    done = lambda *ks: {k: screened[k] for k in ks}  # noqa: E731
    assert fidelity.promote_more(keys, done("k4", "k5"), OBJECTIVES, 3, [], complete=False) == []  # floor(2 / 3)
    assert fidelity.promote_more(keys, done("k4", "k5", "k6"), OBJECTIVES, 3, [], complete=False) == ["k4"]
    four = done("k4", "k5", "k6", "k1")
    assert fidelity.promote_more(keys, four, OBJECTIVES, 3, ["k4"], complete=False) == ["k1"]  # the best now; k4 stays promoted
    six = done("k4", "k5", "k6", "k1", "k3", "k7")
    assert fidelity.promote_more(keys, six, OBJECTIVES, 3, ["k4", "k1"], complete=False) == ["k3"]  # floor(6 / 3): k1 and k3
    assert fidelity.promote_more(keys, six, OBJECTIVES, 2, ["k4", "k1"], complete=False) == []  # never beyond the cap
    # complete: the synchronous choice (k0, k1, k2) fills what the cap leaves, best first
    fill = fidelity.promote_more(keys, screened, OBJECTIVES, 4, ["k4", "k1"], complete=True)
    assert sorted(fill) == ["k0", "k2"]
    assert fidelity.promote_more(keys, screened, OBJECTIVES, 3, ["k4", "k1"], complete=True) in (["k0"], ["k2"])
    front = Fidelity((0.25, 1.0), eta=3, promote="front", schedule="asynchronous")
    assert front.promote_more(keys, done("k4", "k5", "k6"), OBJECTIVES, 3, [], complete=False) == ["k4"]  # the front of what is done
    assert front.promote_more(keys, done("k4", "k5", "k6", "k3", "k7", "k8"), OBJECTIVES, 3, [], complete=False) == ["k3"]


def _run_in_order(search, on_evaluation=None):
    """Drive ``search`` as one in-process worker does: always the first candidate `ask` offers."""
    while True:
        candidates = search.ask()
        if not candidates:
            search.advance()
            if search.stop_reason() is not None:
                return
            continue
        c = candidates[0]
        search.tell(c.key, search.domain.evaluate(c.genome, _context(c)), c.fidelity)
        if on_evaluation is not None:
            on_evaluation(c)


def test_asynchronous_promotion_starts_full_evaluations_before_the_rung_is_screened(tmp_path):
    def create(name, schedule):
        return Search.create(WarmStartToy(), algorithm="nsga2", algorithm_options={"pop_size": 4},
                             termination=Termination(max_evaluations=12), seed=2, store=SQLiteRunStore(tmp_path / name),
                             fidelity=Fidelity((0.25, 1.0), eta=3, schedule=schedule))

    order = []
    s = create("async.db", "asynchronous")
    _run_in_order(s, lambda c: order.append((c.generation, c.fidelity, c.operator)))
    first = [f for g, f, op in order if g == 0 and op != "warm_start"]
    assert first[:4] == [0.25, 0.25, 0.25, 1.0]  # the best of the first three screenings goes on at once
    # two slots beside the two warm starts; once both are promoted the rest of the rung is not screened
    assert first.count(1.0) == 2 and first.count(0.25) < 10
    full, screened = s.store.evaluations(), s.store.screenings()[0.25]
    assert len(full) == 12 and len(screened) < 34
    stored = s.store.meta("promotions/0")
    assert list(stored) == ["0.25"] and len(stored["0.25"]) == 2 and set(stored["0.25"]) <= set(full)
    sync = create("sync.db", "synchronous")
    _run_in_order(sync)
    assert len(sync.store.evaluations()) == 12 and len(sync.store.screenings()[0.25]) == 34


def test_a_run_resumed_in_the_middle_of_an_asynchronous_rung_ends_like_an_uninterrupted_one(tmp_path):
    def create(store, budget):
        return Search.create(FidelityDomain(), algorithm="petra", algorithm_options={"pop_size": 4},
                             termination=Termination(max_evaluations=budget), seed=5, store=store,
                             fidelity=Fidelity((0.2, 0.5, 1.0), eta=2, schedule="asynchronous"))

    full = create(SQLiteRunStore(tmp_path / "full.db"), 16)
    full.run()  # one in-process worker: the same order as `_run_in_order`
    s = create(SQLiteRunStore(tmp_path / "run.db"), 16)
    steps = []
    try:
        _run_in_order(s, lambda c: steps.append(c.generation) if len(steps) < 44 else (_ for _ in ()).throw(KeyboardInterrupt))
    except KeyboardInterrupt:  # "crash" inside generation 1, promotions made at both screening rungs
        pass
    assert set(s.store.meta("promotions/1")) == {"0.2", "0.5"} and len(s.store.evaluations()) < 16
    s.store.close()
    resumed = Search.resume(SQLiteRunStore(tmp_path / "run.db"))
    resumed.run()
    assert list(resumed.store.evaluations()) == list(full.store.evaluations())
    assert {f: list(v) for f, v in resumed.store.screenings().items()} == {f: list(v) for f, v in full.store.screenings().items()}
    assert resumed.store.meta("promotions/1") == full.store.meta("promotions/1")


def test_a_multi_fidelity_run_evaluates_in_full_only_what_screening_promotes(tmp_path):
    fidelity = Fidelity((0.25, 1.0), eta=3, schedule="synchronous")
    s = Search.create(FidelityDomain(), algorithm="nsga2", algorithm_options={"pop_size": 4},
                      termination=Termination(max_evaluations=12), seed=2, store=SQLiteRunStore(tmp_path / "run.db"),
                      fidelity=fidelity)
    s.run()
    full, screened = s.store.evaluations(), s.store.screenings()[0.25]
    assert len(full) == 12 and len(screened) == 36  # 4 full evaluations per generation, each from 12 screened
    assert all(e.metrics["asked_fidelity"] == 1.0 for e in full.values())
    assert all(e.metrics["asked_fidelity"] == 0.25 and e.metrics["fidelity"] == 0.25 for e in screened.values())
    for gen in range(3):
        batch = [o["key"] for o in s.store.batch(gen)["offspring"]]
        chosen = [k for k in batch if k in full]
        # the shift keeps the order, so the promoted are the screening's best 4 by rank and contribution
        assert chosen == fidelity.promoted(batch, screened, FidelityDomain().objectives, 4)
        F = to_min_matrix(FidelityDomain().objectives, [screened[k].objectives for k in batch])
        first = {batch[i] for i in non_dominated_sort(F)[0]}
        assert first <= set(chosen) or set(chosen) <= first
    assert {m.key for m in s.front()} <= set(full)


class WarmStartToy(FidelityDomain):
    """The toy with two warm starts that every screening would drop (they are dominated)."""

    def warm_starts(self):
        from evoforge.problems import RealVector

        return [RealVector((1.0, 1.0)), RealVector((0.9, 1.0))]

    def initial_population(self, rng, size):
        return (self.warm_starts() + [self.sample(rng) for _ in range(size)])[:size]


def test_warm_starts_skip_screening_and_count_toward_the_full_evaluations(tmp_path):
    domain = WarmStartToy()
    s = Search.create(domain, algorithm="nsga2", algorithm_options={"pop_size": 4}, termination=Termination(max_evaluations=8),
                      seed=2, store=SQLiteRunStore(tmp_path / "run.db"), fidelity=Fidelity((0.25, 1.0), eta=3, schedule="synchronous"))
    s.run()
    warm = {g.content_hash for g in domain.warm_starts()}
    first = s.store.batch(0)["offspring"]
    assert len(first) == 12 and {o["key"] for o in first if o["operator"] == "warm_start"} == warm
    full, screened = s.store.evaluations(), s.store.screenings()[0.25]
    assert warm <= set(full) and not warm & set(screened)  # dominated as they are, never screened out
    assert len([o for o in first if o["key"] in full]) == 4  # the two warm starts and the two best of 10 screened
    assert len(screened) == 10 + 12 and len(full) == 8


def test_warm_starts_are_evaluated_in_full_with_the_first_screenings_and_first(tmp_path):
    domain = WarmStartToy()
    s = Search.create(domain, algorithm="nsga2", algorithm_options={"pop_size": 4}, termination=Termination(max_evaluations=8),
                      seed=2, store=SQLiteRunStore(tmp_path / "run.db"), fidelity=Fidelity((0.25, 1.0), eta=3))
    warm = {g.content_hash for g in domain.warm_starts()}
    first = s.ask()
    assert {c.key for c in first[:2]} == warm and all(c.fidelity == 1.0 for c in first[:2])  # first, so a time budget keeps them
    assert len(first) == 12 and {c.fidelity for c in first[2:]} == {0.25}
    for c in first:
        s.tell(c.key, domain.evaluate(c.genome, _context(c)), c.fidelity)
    promoted = s.ask()
    assert len(promoted) == 2 and {c.fidelity for c in promoted} == {1.0} and not warm & {c.key for c in promoted}


def test_a_run_resumed_in_the_middle_of_a_rung_ends_like_an_uninterrupted_one(tmp_path):
    def create(store):
        return Search.create(FidelityDomain(), algorithm="petra", algorithm_options={"pop_size": 4},
                             termination=Termination(max_evaluations=16), seed=5, store=store,
                             fidelity=Fidelity((0.2, 0.5, 1.0), eta=2, schedule="synchronous"))

    full = create(SQLiteRunStore(tmp_path / "full.db"))
    full.run()
    s = create(SQLiteRunStore(tmp_path / "run.db"))
    for c in s.ask():
        s.tell(c.key, s.domain.evaluate(c.genome, _context(c)), c.fidelity)
    while candidates := s.ask():
        for c in candidates:
            s.tell(c.key, s.domain.evaluate(c.genome, _context(c)), c.fidelity)
    s.advance()
    screening = s.ask()
    assert screening and {c.fidelity for c in screening} == {0.2}
    for c in screening[:5]:  # half a rung, then "crash"
        s.tell(c.key, s.domain.evaluate(c.genome, _context(c)), c.fidelity)
    s.store.close()
    resumed = Search.resume(SQLiteRunStore(tmp_path / "run.db"))
    resumed.run()
    assert list(resumed.store.evaluations()) == list(full.store.evaluations())
    assert {f: list(v) for f, v in resumed.store.screenings().items()} == {f: list(v) for f, v in full.store.screenings().items()}


@pytest.mark.parametrize("schedule", ["synchronous", "asynchronous"])
def test_a_time_budget_that_runs_out_inside_a_rung_stops_there_and_resume_goes_on(tmp_path, monkeypatch, schedule):
    import time

    def create(store, termination):
        return Search.create(FidelityDomain(), algorithm="petra", algorithm_options={"pop_size": 4},
                             termination=termination, seed=5, store=store,
                             fidelity=Fidelity((0.2, 0.5, 1.0), eta=2, schedule=schedule))

    full = create(SQLiteRunStore(tmp_path / "full.db"), Termination(max_evaluations=8))
    full.run()
    plain = FidelityDomain.evaluate

    def slow(self, genome, context):  # 16 screenings at the first rung take >= 0.8 s
        time.sleep(0.05)
        return plain(self, genome, context)

    monkeypatch.setattr(FidelityDomain, "evaluate", slow)
    cut = create(SQLiteRunStore(tmp_path / "run.db"), Termination(max_evaluations=8, max_seconds=0.3))
    cut.run()
    screened = cut.store.screenings()[0.2]
    assert 0 < len(screened) < 16  # no screening started once the time was up
    if schedule == "synchronous":  # promotion waits for the whole rung
        assert cut.store.evaluations() == {} and set(cut.store.screenings()) == {0.2}
    else:  # the first rung's best went on while it was screened: the cut run has a front already
        assert len(cut.store.screenings().get(0.5, {})) >= len(screened) // 2 - 1 and cut.store.evaluations()
        assert len(cut.front()) >= 1
    finished = cut.store.meta("finished")
    assert "time" in finished["reason"] and finished["elapsed_s"] >= 0.3 and finished["stopped_in_generation"] == 0
    cut.store.close()
    monkeypatch.setattr(FidelityDomain, "evaluate", plain)
    resumed = Search.resume(SQLiteRunStore(tmp_path / "run.db"), termination=Termination(max_evaluations=8))
    resumed.run()
    assert list(resumed.store.evaluations()) == list(full.store.evaluations())
    assert {f: list(v) for f, v in resumed.store.screenings().items()} == {f: list(v) for f, v in full.store.screenings().items()}


def _context(candidate):
    from evoforge.search.domain import EvalContext

    return EvalContext(seed=candidate.seed, fidelity=candidate.fidelity)


def test_settings_build_the_schedule_and_refuse_domains_without_fidelity(tmp_path):
    spec = RunSpec(rungs="0.25,1", eta=4, promote="front")
    assert spec.fidelity() == Fidelity((0.25, 1.0), 4, "front") and RunSpec().fidelity() is None
    with pytest.raises(ConfigError, match="give rungs too"):
        RunSpec(eta=3)
    with pytest.raises(ConfigError, match="give rungs too"):
        RunSpec(schedule="asynchronous")
    assert RunSpec(rungs="0.5,1", schedule="asynchronous").fidelity() == Fidelity((0.5, 1.0), schedule="asynchronous")
    with pytest.raises(ConfigError, match="no cheaper fidelity to screen at"):
        evoforge.optimize(BenchmarkDomain("zdt1", n_var=3), budget=8, pop_size=4, rungs="0.5,1")
    evoforge.optimize(FidelityDomain(), algorithm="random", budget=8, pop_size=4, rungs=[0.5, 1], eta=2, run_dir=tmp_path / "r")
    with open_store(tmp_path / "r", readonly=True) as store:
        config = store.config()
        assert config["fidelity"] == {"rungs": [0.5, 1.0], "eta": 2, "promote": "top", "schedule": "asynchronous"}
        assert config["run"]["rungs"] == [0.5, 1] and len(store.evaluations()) == 8 and len(store.screenings()[0.5]) == 16
    from evoforge.report.text import run_summary

    headline = run_summary(tmp_path / "r")["headline"]
    assert "multi-fidelity: screened 16 at 0.5 of full fidelity (eta 2, promote top, asynchronous); 8 full evaluations" in headline
    assert re.search(r"screening cost: a median \S+ s at 0\.5 \(\d+\.\d\d of the same candidates' full evaluations, 8 promoted\)\. "
                     r"Screening saves compute only well below 1/eta = 0\.50 of a full evaluation", headline), headline
    with pytest.raises(ConfigError, match="rungs cannot change when a run resumes"):
        evoforge.resume(tmp_path / "r", rungs="0.1,1")
    with pytest.raises(UnknownNameError):
        RunSpec(algorithm="cma", rungs="0.5,1")
