"""The peers benchmark's harness (benchmarks/_peers.py, benchmarks/peers.py): Optuna's trials draw
from the space the domain's operators draw from, Optuna is told the quality constraint and the
failures, and the rank test separates what the seeds separate."""

from pathlib import Path
from types import ModuleType, SimpleNamespace

import numpy as np
import pytest

from evoforge.compression.genome import REGRESSION_LOSSES
from evoforge.compression.operators import SearchSpace
from evoforge.pareto import Objective
from evoforge.search.algorithms.base import Individual
from evoforge.search.evaluation import Evaluation, Status
from tests.benchmarks import benchmark_module

optuna = pytest.importorskip("optuna")

OBJECTIVES = (Objective("quality_drop"), Objective("latency_ratio"))




@pytest.fixture(scope="module")
def harness() -> ModuleType:
    return benchmark_module("_peers")


@pytest.fixture(scope="module")
def peers() -> ModuleType:
    return benchmark_module("peers")


def test_optuna_trials_draw_only_what_the_space_allows(harness):
    space = SearchSpace(kinds=("finetune", "prune", "quantize"), importances=("l1",), quant_modes=("dynamic",), max_epochs=8)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    genomes = []
    for _ in range(150):
        trial = study.ask()
        genome = harness.genome_from_trial(trial, space, "regression")
        assert harness.genome_from_trial(optuna.trial.FixedTrial(trial.params), space, "regression") == genome  # replayable
        study.tell(trial, 0.0)
        genomes.append(genome)
    assert all(space.allows(g) and len(g.stages) <= harness.MAX_SLOTS for g in genomes)
    assert all(s.kind != "quantize" for g in genomes for s in g.stages[:-1])  # int8 only last
    assert {g.training.loss for g in genomes} == set(REGRESSION_LOSSES)
    stages = [s for g in genomes for s in g.stages]
    assert {s.kind for s in stages} == {"finetune", "prune", "quantize"}
    assert {s["importance"] for s in stages if s.kind == "prune"} == {"l1"}


def test_optuna_is_told_the_constraint_and_the_failures(harness):
    domain = SimpleNamespace(space=SearchSpace(), task=SimpleNamespace(task_type="classification"), objectives=OBJECTIVES)
    algorithm = harness.OptunaTPE(pop_size=2, offspring_size=3)
    offspring = algorithm.initial(domain, np.random.default_rng(0), lambda g: True)
    results = [Evaluation(Status.OK, {"quality_drop": 0.5, "latency_ratio": 0.6}, {"quality_drop_limit": -0.5}),
               Evaluation(Status.OK, {"quality_drop": 3.0, "latency_ratio": 0.2}, {"quality_drop_limit": 2.0}),
               Evaluation.failure(Status.FAILED, "boom")]
    told = list(zip(offspring, [Individual(o.genome, e) for o, e in zip(offspring, results)]))
    survivors = algorithm.select([], told, OBJECTIVES, None)
    trials = algorithm._study.get_trials(deepcopy=False)
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE", "FAIL"]
    assert [t.system_attrs.get("constraints:quality") for t in trials[:2]] == [0.0, 2.0]  # violation: 0 when feasible
    assert trials[1].values == [3.0, 0.2]
    assert [s.evaluation for s in survivors] == results[:2]  # feasible first; the failure does not survive pop_size 2


def test_rank_test_separates_what_the_seeds_separate(peers):
    assert peers.rank_test([1.0, 2.0, 3.0, 4.0, 5.0], [6.0, 7.0, 8.0, 9.0, 10.0]) == pytest.approx(0.0079, abs=1e-4)
    assert peers.rank_test([1.0, 3.0, 5.0], [2.0, 4.0, 6.0]) > 0.5
    assert peers.rank_test([1.0], [2.0, 3.0]) == 1.0  # one seed tells nothing


def _baseline_run(tmp_path: Path, name: str, weight: float) -> Path:
    import torch

    from evoforge.layout import RunLayout

    folder = RunLayout(tmp_path / name).baseline
    folder.mkdir(parents=True)
    torch.save({"key": "k", "state_dict": {"w": torch.full((2,), weight)}}, folder / f"{name}.pt")  # the archive takes the name
    (folder / f"{name}.pt").rename(folder / "baseline.pt")
    (folder / "baseline.json").write_text('{"validation": {"rmse": 0.13}, "test": {"rmse": 0.12}}')
    return tmp_path / name


def test_runs_of_different_baselines_are_not_compared(peers, tmp_path):
    from evoforge.layout import RunLayout

    runs = [_baseline_run(tmp_path, n, w) for n, w in (("a", 1.0), ("b", 1.0), ("c", 2.0))]
    assert (runs[0] / "baseline" / "baseline.pt").read_bytes() != (runs[1] / "baseline" / "baseline.pt").read_bytes()
    first, same, other = (peers.baseline_provenance(RunLayout(run)) for run in runs)
    assert first == same and first["validation"] == {"rmse": 0.13} and first["test"] == {"rmse": 0.12}  # same weights
    assert first["weights_sha256"] != other["weights_sha256"]
    assert peers.shared_baseline({"petra": [{"baseline": first}], "random": [{"baseline": same}]}) == first
    with pytest.raises(SystemExit, match="2 different baselines"):
        peers.shared_baseline({"petra": [{"baseline": first}], "random": [{"baseline": other}]})


def test_runs_timed_on_different_machines_are_not_compared(peers):
    a, b = {"machines": {"A, 2 cores": 60}}, {"machines": {"B, 8 cores": 60}}
    assert peers.shared_machine({"petra": [a], "random": [dict(a), {"machines": {}}]}) == "A, 2 cores"
    assert peers.shared_machine({"petra": [{"machines": {}}]}) is None
    with pytest.raises(SystemExit, match="2 different machines"):
        peers.shared_machine({"petra": [a], "random": [b]})
