import json
import subprocess
import sys

import numpy as np
import pytest

import evoforge
from evoforge.api import open_store
from evoforge.errors import ConfigError, EvoforgeError, StoreError
from evoforge.execute import LocalExecutor
from evoforge.problems import BenchmarkDomain
from evoforge.search.domain import register_domain
from evoforge.search.engine import Search, candidate_seed
from evoforge.search.evaluation import Evaluation, Status
from evoforge.search.termination import Termination, parse_budget
from evoforge.store import MemoryRunStore
from evoforge.testing.domains import FaultDomain


def front_values(front):
    return sorted(tuple(round(v, 12) for v in m.objectives.values()) for m in front)


def test_ask_tell_by_hand_matches_run():
    domain = BenchmarkDomain("zdt1", n_var=6)
    term = Termination(max_evaluations=60)
    manual = Search.create(domain, algorithm_options={"pop_size": 10}, termination=term, seed=5)
    while manual.stop_reason() is None:
        for cand in manual.ask():
            manual.tell(cand.key, domain.evaluate(cand.genome, None))  # type: ignore[arg-type]
        manual.advance()
    auto = Search.create(BenchmarkDomain("zdt1", n_var=6), algorithm_options={"pop_size": 10}, termination=term, seed=5)
    assert front_values(auto.run()) == front_values(manual.front())
    assert manual.evaluations_done == 60


def test_budget_is_exact_and_generations_recorded():
    s = Search.create(BenchmarkDomain("zdt2", n_var=5), algorithm_options={"pop_size": 8}, termination=Termination(max_evaluations=30))
    s.run()
    records = s.store.generations()
    assert s.evaluations_done == 30
    assert [r["generation"] for r in records] == list(range(len(records)))
    assert all(len(r["population"]) <= 8 for r in records)
    assert records[-1]["evaluations"] == 30


def test_advance_refuses_missing_evaluations_and_double_tell():
    s = Search.create(BenchmarkDomain("zdt1", n_var=4), algorithm_options={"pop_size": 4}, termination=Termination(max_evaluations=8))
    cands = s.ask()
    with pytest.raises(EvoforgeError, match="still need an evaluation"):
        s.advance()
    s.tell(cands[0].key, Evaluation(Status.OK, {"f1": 0.1, "f2": 0.2}))
    with pytest.raises(EvoforgeError, match="already told"):
        s.tell(cands[0].key, Evaluation(Status.OK, {"f1": 0.1, "f2": 0.2}))


def test_nan_and_missing_objectives_become_failures():
    s = Search.create(BenchmarkDomain("zdt1", n_var=4), algorithm_options={"pop_size": 4}, termination=Termination(max_evaluations=8))
    a, b, *_ = s.ask()
    assert s.tell(a.key, Evaluation(Status.OK, {"f1": float("nan"), "f2": 0.2})).status is Status.FAILED
    stored = s.tell(b.key, Evaluation(Status.OK, {"f1": 0.3}))
    assert stored.status is Status.FAILED and "f2" in stored.reason


class CountingDomain(BenchmarkDomain):
    """Counts evaluate calls, to check that no genome is evaluated twice."""

    calls: list[str] = []

    def evaluate(self, genome, context):
        CountingDomain.calls.append(genome.content_hash)
        return super().evaluate(genome, context)


def test_no_genome_is_evaluated_twice():
    # a tiny discrete space (2 variables, mutation that often returns the same point) forces repeats
    CountingDomain.calls = []
    domain = CountingDomain("zdt1", n_var=2)
    s = Search.create(domain, algorithm_options={"pop_size": 6}, termination=Termination(max_generations=15))
    s._evaluations  # noqa: B018 - engine internal used only to size the check
    for _ in range(15):
        for cand in s.ask():
            genome = cand.genome
            s.tell(cand.key, domain.evaluate(genome, None))  # type: ignore[arg-type]
        s.advance()
    assert len(CountingDomain.calls) == len(set(CountingDomain.calls))


def test_candidate_seed_depends_on_run_seed_and_genome_only():
    assert candidate_seed(1, "abc") == candidate_seed(1, "abc")
    assert candidate_seed(1, "abc") != candidate_seed(2, "abc")
    assert 0 <= candidate_seed(7, "k") < 2**31


def test_parse_budget():
    assert parse_budget("200").max_evaluations == 200
    assert parse_budget("30m").max_seconds == 1800
    assert parse_budget("1.5h").max_seconds == 5400
    assert parse_budget(50).max_evaluations == 50
    with pytest.raises(ConfigError, match="'soon' is not understood"):
        parse_budget("soon")
    with pytest.raises(ConfigError, match="needs a budget"):
        Termination()


def test_stagnation_stops_a_converged_search():
    term = Termination(stagnation_generations=3, stagnation_eps=1e-3, max_generations=200)
    s = Search.create(FaultDomain(["ok"] * 4), algorithm_options={"pop_size": 4}, termination=term)
    s.run()
    assert s.generation + 1 < 200
    assert "stagnated" in s.store.meta("finished")["reason"]


class SlowToFinalize(BenchmarkDomain):
    """A domain whose front members take an hour each to finalize."""

    def finalize_seconds(self, members):
        return 3600.0 * len(members)


@register_domain
class WritesArtifacts(BenchmarkDomain):
    """Every evaluation writes an artifact; ``prune`` says whether the engine may delete those
    of evaluations off the front."""

    name = "test-writes-artifacts"

    def __init__(self, prune: bool) -> None:
        super().__init__("zdt1", n_var=4)
        self.prune = prune

    def config(self):
        return {"prune": self.prune}

    def prunes_artifacts(self) -> bool:
        return self.prune

    def evaluate(self, genome, context):
        evaluation = super().evaluate(genome, context)
        (context.artifact_dir / "model.bin").write_bytes(b"x")
        return Evaluation(evaluation.status, evaluation.objectives, artifacts={"model": f"artifacts/{context.artifact_dir.name}/model.bin"})


@pytest.mark.parametrize("prune", [True, False])
def test_a_domain_that_rebuilds_its_artifacts_keeps_only_the_fronts(tmp_path, prune):
    from evoforge.front import front_keys
    from evoforge.layout import RunLayout

    front = evoforge.optimize(WritesArtifacts(prune), budget=21, pop_size=6, run_dir=tmp_path, workers=0, seed=3)
    with open_store(tmp_path, readonly=True) as store:
        evaluations = store.evaluations()
    kept = {key for key in evaluations if (RunLayout(tmp_path).artifact_dir(key) / "model.bin").exists()}
    assert {m.key for m in front} == set(front_keys(evaluations, front.objectives)[0])
    assert kept == ({m.key for m in front} if prune else set(evaluations))
    assert len(evaluations) == 21 and len(front) < 21  # the last generation was cut short, and pruned too


def test_a_time_budget_keeps_time_for_finalizing_the_front(tmp_path):
    def evaluations(termination, reserve):
        search = Search.create(SlowToFinalize("zdt1", n_var=4), algorithm_options={"pop_size": 4}, termination=termination)
        search.run(reserve_finalize=reserve)
        return search.evaluations_done, search.store.meta("finished")["reason"]

    both = Termination(max_evaluations=12, max_seconds=600)
    assert evaluations(both, reserve=False)[0] == 12
    done, reason = evaluations(both, reserve=True)  # after the first, the front needs an hour: nothing more starts
    assert done == 1 and "kept for the front's final scoring" in reason
    assert evaluations(Termination(max_evaluations=12), reserve=True)[0] == 12  # no time budget: nothing to keep
    front = evoforge.optimize(SlowToFinalize("zdt1", n_var=4), budget="10m", pop_size=4, run_dir=tmp_path)  # the API keeps it
    with open_store(tmp_path, readonly=True) as store:
        assert len(front) == 1 and "kept for" in store.meta("finished")["reason"]


def test_termination_reasons():
    t = Termination(max_evaluations=10, max_seconds=5, max_generations=3, stagnation_generations=2)
    assert "evaluation" in t.reason(evaluations=10, seconds=0, generations=0, hypervolumes=[])
    assert "time" in t.reason(evaluations=0, seconds=6, generations=0, hypervolumes=[])
    assert t.reason(evaluations=0, seconds=3, generations=0, hypervolumes=[]) is None
    assert "3 s, 2 s kept" in t.reason(evaluations=0, seconds=3, generations=0, hypervolumes=[], reserved_s=2)
    assert "generation" in t.reason(evaluations=0, seconds=0, generations=3, hypervolumes=[])
    assert t.reason(evaluations=0, seconds=0, generations=1, hypervolumes=[1.0, 1.5, 2.0]) is None
    assert "stagnated" in t.reason(evaluations=0, seconds=0, generations=1, hypervolumes=[1.0, 2.0, 2.0, 2.0])


def test_stagnation_is_a_relative_gain_under_the_tolerance_and_never_before_anything_feasible():
    t = Termination(stagnation_generations=2)
    assert "under 0.1% in 2 generations" in t.reason(evaluations=0, seconds=0, generations=3, hypervolumes=[0.9, 0.9004, 0.9008])
    assert t.reason(evaluations=0, seconds=0, generations=3, hypervolumes=[0.9, 0.9004, 0.902]) is None  # 0.2%: still gaining
    assert t.reason(evaluations=0, seconds=0, generations=3, hypervolumes=[0.9, 0.9]) is None  # one generation is not two
    assert t.reason(evaluations=0, seconds=0, generations=4, hypervolumes=[0.0, 0.0, 0.0, 0.0]) is None  # nothing feasible yet
    assert "stagnated" in t.reason(evaluations=0, seconds=0, generations=5, hypervolumes=[0.0, 0.0, 0.5, 0.5, 0.5])


def test_the_plateau_counts_generations_without_a_gain_since_something_was_feasible():
    t = Termination(stagnation_generations=3)
    assert t.plateau([]) == 0 and t.plateau([0.5]) == 0
    assert t.plateau([0.5, 0.7, 0.7, 0.7004]) == 2  # 0.06% over two generations, 40% over three
    assert t.plateau([0.0, 0.0, 0.6, 0.6]) == 1  # the generations with nothing feasible do not count
    assert t.plateau([0.6, 0.6, 0.7]) == 0


def test_patience_stops_at_the_first_plateau_of_the_feasible_hypervolume(tmp_path):
    evoforge.optimize(BenchmarkDomain("zdt1", n_var=4), budget=2000, patience=2, pop_size=4, seed=3, run_dir=tmp_path)
    with open_store(tmp_path, readonly=True) as store:
        records, finished = store.generations(), store.meta("finished")
        config = store.config()
    archive = [r["archive_hypervolume"] for r in records]
    gains = [(archive[i] - archive[i - 2]) / archive[i - 2] for i in range(2, len(archive)) if archive[i - 2] > 0]
    assert "stagnated" in finished["reason"] and records[-1]["evaluations"] < 2000
    assert gains[-1] <= 1e-3 and all(g > 1e-3 for g in gains[:-1])  # the archive's curve, not the population's, decides
    assert config["termination"]["stagnation_generations"] == 2
    resumed = evoforge.resume(tmp_path, budget=2000, patience=6)  # a longer patience goes on from where the run stopped
    with open_store(tmp_path, readonly=True) as store:
        assert len(store.generations()) > len(records)
    assert len(resumed) > 0


def test_run_dir_with_a_run_is_not_overwritten(tmp_path):
    evoforge.optimize(BenchmarkDomain("zdt1", n_var=4), budget=8, pop_size=4, run_dir=tmp_path)
    before = (tmp_path / "run.db").read_bytes()
    with pytest.raises(StoreError, match="already holds a run"):
        evoforge.optimize(BenchmarkDomain("zdt1", n_var=4), budget=8, run_dir=tmp_path)
    assert evoforge.load_front(tmp_path).members  # still readable
    assert len((tmp_path / "run.db").read_bytes()) == len(before)


def test_existing_store_refused_by_create():
    store = MemoryRunStore()
    Search.create(BenchmarkDomain("zdt1"), termination=Termination(max_evaluations=4), store=store)
    with pytest.raises(StoreError):
        Search.create(BenchmarkDomain("zdt1"), termination=Termination(max_evaluations=4), store=store)


SCRIPT = """
import json, sys
import evoforge
from evoforge.problems import BenchmarkDomain
front = evoforge.optimize(BenchmarkDomain("zdt3", n_var=8), algorithm=sys.argv[1], pop_size=8,
                          budget=48, seed=11, workers=int(sys.argv[2]))
print(json.dumps(sorted([m.key for m in front])))
"""


@pytest.mark.parametrize("algorithm", ["nsga2", "petra", "random"])
def test_same_seed_same_front_in_fresh_processes_any_worker_count(algorithm):
    runs = [
        subprocess.run([sys.executable, "-c", SCRIPT, algorithm, str(w)], capture_output=True, text=True, check=True)
        for w in (0, 1, 2)
    ]
    fronts = [json.loads(r.stdout.strip().splitlines()[-1]) for r in runs]
    assert fronts[0] == fronts[1] == fronts[2]
    other = evoforge.optimize(BenchmarkDomain("zdt3", n_var=8), algorithm=algorithm, pop_size=8, budget=48, seed=12)
    assert sorted(m.key for m in other) != fronts[0]


def test_local_executor_same_result_as_inline():
    domain = BenchmarkDomain("zdt1", n_var=5)
    kwargs = {"algorithm_options": {"pop_size": 6}, "termination": Termination(max_evaluations=18), "seed": 3}
    inline = Search.create(domain, **kwargs).run()
    with LocalExecutor(2) as ex:
        local = Search.create(BenchmarkDomain("zdt1", n_var=5), **kwargs).run(ex)
    assert front_values(inline) == front_values(local)
    assert np.isfinite([v for m in local for v in m.objectives.values()]).all()


def test_infinite_objectives_are_recorded_as_failures():
    s = Search.create(FaultDomain(["ok", "inf", "nan"]), algorithm_options={"pop_size": 3}, termination=Termination(max_evaluations=3))
    s.run()
    reasons = sorted(e.reason for e in s.store.evaluations().values() if not e.ok)
    assert reasons == ["objective 'f1' is not finite (inf)", "objective 'f1' is not finite (nan)"]


def test_the_hypervolume_of_all_feasible_evaluations_never_drops():
    s = Search.create(BenchmarkDomain("zdt1", n_var=3), algorithm="nsga2", algorithm_options={"pop_size": 6},
                      termination=Termination(max_evaluations=90), seed=2)
    s.run()
    records = s.store.generations()
    archive = [r["archive_hypervolume"] for r in records]
    assert archive[-1] > 0 and all(b >= a for a, b in zip(archive, archive[1:]))  # an archive only grows
    assert all(r["archive_hypervolume"] >= r["hypervolume"] - 1e-12 for r in records)  # the population is part of it
    assert s.summary().archive_hypervolume == archive[-1]
