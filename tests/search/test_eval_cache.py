import dataclasses
import json

import pytest

import evoforge
from evoforge.api import open_store
from evoforge.errors import ConfigError
from evoforge.execute.inline import InlineExecutor
from evoforge.layout import RunLayout
from evoforge.problems import BenchmarkDomain
from evoforge.run import RunSpec
from evoforge.search.engine import Search
from evoforge.search.eval_cache import HIT_METRIC, EvaluationCache, cache_key, filed_identity
from evoforge.search.evaluation import Evaluation, Status
from evoforge.search.fidelity import Fidelity
from evoforge.search.termination import Termination
from evoforge.testing.domains import FidelityDomain


def test_the_key_changes_with_every_input():
    identity = {"domain": "compress", "task": {"name": "digits-cnn", "fingerprints": {"data": "a"}}, "runtime": "onnxruntime"}
    base = cache_key(identity, "g1", 7, {"epochs": 1.0})
    assert cache_key(json.loads(json.dumps(identity)), "g1", 7, {"epochs": 1.0}) == base  # stable across processes
    assert cache_key({**identity, "runtime": "inductor"}, "g1", 7, {"epochs": 1.0}) != base
    assert cache_key({**identity, "task": {"name": "digits-cnn", "fingerprints": {"data": "b"}}}, "g1", 7, {"epochs": 1.0}) != base
    assert cache_key(identity, "g2", 7, {"epochs": 1.0}) != base
    assert cache_key(identity, "g1", 8, {"epochs": 1.0}) != base
    assert cache_key(identity, "g1", 7, {"epochs": 0.5}) != base
    assert cache_key(identity, "g1", 7) != base


def test_entries_carry_their_artifacts_into_the_next_run(tmp_path):
    cache = EvaluationCache(tmp_path / "cache")
    first, second = RunLayout(tmp_path / "a"), RunLayout(tmp_path / "b")
    first.artifact_dir("g").mkdir(parents=True)
    (first.artifact_dir("g") / "model.onnx").write_bytes(b"weights")
    ok = Evaluation(Status.OK, {"f": 1.0}, metrics={"m": 2}, artifacts={"model": first.relative(first.artifact_dir("g") / "model.onnx")})
    assert cache.put("k" * 64, ok, first)
    assert not cache.put("k" * 64, ok, first)  # the first writer keeps the key
    hit = cache.get("k" * 64, second, "g")
    assert hit is not None and hit.objectives == {"f": 1.0} and hit.metrics == {"m": 2, HIT_METRIC: True}
    assert second.resolve(hit.artifacts["model"]).read_bytes() == b"weights"
    assert cache.get("k" * 64, None, "g") is None  # a run without a folder cannot hold the artifacts
    assert not cache.put("f" * 64, Evaluation.failure(Status.TIMEOUT, "slow machine"), first)  # failures stay out
    assert not cache.put("e" * 64, hit, second)  # a hit is not stored again
    assert cache.get("0" * 64, second, "g") is None
    assert not list((tmp_path / "cache").rglob(".*"))  # no staging folder left behind


def test_a_second_run_takes_every_evaluation_from_the_cache(tmp_path):
    cache = tmp_path / "shared"
    options = {"algorithm": "nsga2", "pop_size": 6, "budget": 24, "seed": 3, "eval_cache": str(cache)}
    first = evoforge.optimize(BenchmarkDomain("zdt1", n_var=4), run_dir=tmp_path / "a", **options)
    again = evoforge.optimize(BenchmarkDomain("zdt1", n_var=4), run_dir=tmp_path / "b", **options)
    assert [m.key for m in again] == [m.key for m in first]
    with open_store(tmp_path / "b", readonly=True) as store:
        evaluations = store.evaluations()
        assert store.config()["run"]["eval_cache"] == str(cache)
    assert len(evaluations) == 24 and all(e.metrics.get(HIT_METRIC) for e in evaluations.values())
    other_seed = evoforge.optimize(BenchmarkDomain("zdt1", n_var=4), run_dir=tmp_path / "c", **{**options, "seed": 4})
    with open_store(tmp_path / "c", readonly=True) as store:
        assert not any(e.metrics.get(HIT_METRIC) for e in store.evaluations().values())  # the seed is part of the key
    assert other_seed
    from evoforge.report.text import run_summary

    summary = run_summary(tmp_path / "b")
    assert "evaluation cache: 24 of 24 evaluations were taken from the shared cache" in summary["headline"]


def test_a_cache_path_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="eval_cache .*file is a file; give a folder"):
        RunSpec(eval_cache=str(tmp_path / "file"))
    with pytest.raises(ConfigError, match="eval_cache=''"):
        RunSpec(eval_cache="")


class _TimedOnADriver(BenchmarkDomain):
    """A domain whose cache identity names the driver's machine, as compress's does."""

    def __init__(self, machine: str) -> None:
        super().__init__("zdt1", n_var=4)
        self.machine = machine

    def cache_identity(self):
        return {**super().cache_identity(), "machine": self.machine}


class _WorkerNode(InlineExecutor):
    """Evaluates as a cluster node that is not the driver: its evaluations say they were timed there."""

    def evaluate(self, tasks, stop=None, wanted=None):
        for task, evaluation in super().evaluate(tasks, stop, wanted):
            yield task, dataclasses.replace(evaluation, metrics={**evaluation.metrics, "machine": "node-b"})


def _search(domain, cache, executor):
    search = Search.create(domain, algorithm="random", termination=Termination(max_evaluations=8), seed=1)
    search.run(executor, cache=cache)
    return [e.metrics.get(HIT_METRIC, False) for e in search.store.evaluations().values()]


def test_an_evaluation_is_filed_under_the_machine_that_timed_it():
    identity = {"domain": "compress", "machine": "driver"}
    timed = Evaluation(Status.OK, {"f": 1.0}, metrics={"machine": "node-b"})
    assert filed_identity(identity, timed) == {"domain": "compress", "machine": "node-b"}
    assert filed_identity(identity, Evaluation(Status.OK, {"f": 1.0})) is identity  # the evaluation does not say
    assert filed_identity({"domain": "benchmark"}, timed) == {"domain": "benchmark"}  # the identity does not key by machine


class _ClusterOfNodeB(_WorkerNode):
    """A worker node that says where its evaluations run, as the Ray executor does."""

    def timing_machines(self):
        return ["node-b"]


def test_a_driver_never_reuses_timings_from_another_node(tmp_path):
    cache = EvaluationCache(tmp_path / "cache")
    assert not any(_search(_TimedOnADriver("driver"), cache, _WorkerNode()))  # timed on node-b, filed under node-b
    assert not any(_search(_TimedOnADriver("driver"), cache, InlineExecutor()))  # the driver's machine has no entries
    assert all(_search(_TimedOnADriver("node-b"), cache, InlineExecutor()))  # a driver on node-b's machine reuses them


class _NodesCAndD(InlineExecutor):
    """A cluster of two other machines, node-c's the most common."""

    def timing_machines(self):
        return ["node-c", "node-d"]


def test_lookups_go_to_the_machines_the_executor_evaluates_on(tmp_path):
    cache = EvaluationCache(tmp_path / "cache")
    assert not any(_search(_TimedOnADriver("driver"), cache, _ClusterOfNodeB()))  # filed under node-b
    assert all(_search(_TimedOnADriver("driver"), cache, _ClusterOfNodeB()))  # a driver that never evaluates finds them
    assert not any(_search(_TimedOnADriver("node-b"), cache, _NodesCAndD()))  # a cluster of other machines does not


def test_a_cluster_of_several_machines_finds_an_entry_under_any_of_them(tmp_path):
    cache = EvaluationCache(tmp_path / "cache")
    assert not any(_search(_TimedOnADriver("node-d"), cache, InlineExecutor()))  # filed under node-d
    assert all(_search(_TimedOnADriver("driver"), cache, _NodesCAndD()))


class _NodeBJoinsLater(InlineExecutor):
    """A cluster of node-c that node-b joins after the first generation."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def timing_machines(self):
        self.calls += 1
        return ["node-c"] if self.calls == 1 else ["node-c", "node-b"]


def test_a_node_that_joins_during_a_run_is_looked_up_from_the_next_generation(tmp_path):
    cache = EvaluationCache(tmp_path / "cache")
    options = {"algorithm": "random", "algorithm_options": {"pop_size": 4}, "termination": Termination(max_evaluations=8), "seed": 1}
    Search.create(_TimedOnADriver("driver"), **options).run(_WorkerNode(), cache=cache)  # all 8 filed under node-b
    search = Search.create(_TimedOnADriver("driver"), **options)
    executor = _NodeBJoinsLater()
    search.run(executor, cache=cache)
    hits = [e.metrics.get(HIT_METRIC, False) for e in search.store.evaluations().values()]
    assert hits == [False] * 4 + [True] * 4 and executor.calls == 2


class _TwoThreads(InlineExecutor):
    """Evaluates as an executor that gives each evaluation two threads."""

    @property
    def threads_per_evaluation(self) -> int:
        return 2


def test_timings_are_reused_only_at_the_same_thread_count(tmp_path):
    cache = EvaluationCache(tmp_path / "cache")
    assert not any(_search(_TimedOnADriver("driver"), cache, InlineExecutor()))  # one thread each
    assert not any(_search(_TimedOnADriver("driver"), cache, _TwoThreads()))  # a latency timed on 1 thread is not one on 2
    assert all(_search(_TimedOnADriver("driver"), cache, _TwoThreads()))
    assert all(_search(_TimedOnADriver("driver"), cache, InlineExecutor()))


class _Screened(FidelityDomain):
    """The fidelity toy with a cache identity, and a setting that changes its screenings only."""

    def __init__(self, screen_by: str) -> None:
        super().__init__()
        self.screen_by = screen_by

    def cache_identity(self):
        return {"domain": self.name}

    def screening_identity(self):
        return {"screen_by": self.screen_by}


def test_full_evaluations_are_shared_between_runs_that_screen_differently_and_screenings_are_not(tmp_path):
    cache = EvaluationCache(tmp_path / "cache")

    def run(screen_by):
        search = Search.create(_Screened(screen_by), algorithm="nsga2", algorithm_options={"pop_size": 4},
                               termination=Termination(max_evaluations=8), seed=1, fidelity=Fidelity((0.5, 1.0), eta=2))
        search.run(InlineExecutor(), cache=cache)
        return search.store

    run("examples")
    same, other = run("examples"), run("epochs")
    hit = lambda evaluations: [e.metrics.get(HIT_METRIC, False) for e in evaluations]  # noqa: E731
    assert all(hit(same.screenings()[0.5].values())) and all(hit(same.evaluations().values()))
    assert not any(hit(other.screenings()[0.5].values()))  # another screening is another result
    assert all(hit(other.evaluations().values())) and set(other.evaluations()) == set(same.evaluations())
