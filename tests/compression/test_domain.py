"""The PETRA domain on a real (small) task: baseline preparation and evaluation in-process."""

import json

import numpy as np
import pytest

from evoforge.compression.domain import CompressDomain, initial_pipelines
from evoforge.compression.genome import PipelineGenome, Stage
from evoforge.errors import ConfigError, UnknownNameError
from evoforge.layout import RunLayout
from evoforge.search.domain import EvalContext, domain_from_spec, domain_spec
from evoforge.workload.task import BUILTIN_TASKS


@pytest.fixture(scope="module")
def domain(tmp_path_factory):
    d = CompressDomain(BUILTIN_TASKS["digits-mlp"].to_dict(), latency_repeats=5)
    d.attach(RunLayout(tmp_path_factory.mktemp("run")))
    d.prepare()
    d.setup_worker()
    return d


def test_prepare_records_the_baseline(domain):
    record = json.loads((domain.layout.baseline / "baseline.json").read_text())
    assert record["validation"]["accuracy"] > 0.9
    assert record["size_bytes"] == (domain.layout.baseline / "model.pt").stat().st_size
    assert record["refused"] == {} and record["space"]["quant_modes"] == ["dynamic", "static", "qat"]
    assert record["inputs"] == [{"name": "input0", "dtype": "float32", "shape": ["batch", 1, 8, 8]}]
    assert "data" in domain.task.fingerprints  # the data the run started with


def test_baseline_genome_is_neutral(domain, tmp_path):
    ev = domain.evaluate(PipelineGenome(training=domain.task.training), EvalContext(seed=1, artifact_dir=tmp_path))
    assert ev.ok
    assert ev.objectives["quality_drop"] == pytest.approx(0.0)
    assert ev.objectives["size_ratio"] == pytest.approx(1.0, abs=0.05)
    assert 0.3 < ev.objectives["latency_ratio"] < 3.0
    assert ev.constraints["quality_drop_limit"] == pytest.approx(-1.0)
    assert (tmp_path / "model.pt").exists() and ev.artifacts["model"].endswith("model.pt")


def test_int8_pipeline_is_smaller_and_keeps_quality(domain, tmp_path):
    genome = initial_pipelines(PipelineGenome(training=domain.task.training))[1]  # static int8
    ev = domain.evaluate(genome, EvalContext(seed=1, artifact_dir=tmp_path))
    assert ev.ok and ev.objectives["size_ratio"] < 0.6
    assert ev.objectives["quality_drop"] < 3.0
    assert "quantize(static" in ev.metrics["pipeline"]


def test_finalize_scores_artifacts_on_test(domain):
    ev = domain.evaluate(PipelineGenome(training=domain.task.training), EvalContext(seed=1, artifact_dir=domain.layout.artifact_dir("k")))
    final = domain.finalize([("k", ev)])
    assert final["k"]["accuracy"] == pytest.approx(final["baseline"]["accuracy"])


def test_config_round_trip_and_validation(domain):
    rebuilt = domain_from_spec(domain_spec(domain))
    assert isinstance(rebuilt, CompressDomain) and rebuilt.config() == domain.config() and rebuilt.layout is None
    assert "run_dir" not in domain.config() and domain_from_spec(domain_spec(domain, domain.layout)).layout == domain.layout
    with pytest.raises(UnknownNameError, match="valid names: .*size_ratio"):
        CompressDomain(BUILTIN_TASKS["digits-mlp"].to_dict(), objectives=["speed"])
    with pytest.raises(ConfigError, match="max_quality_drop must be >= 0"):
        CompressDomain(BUILTIN_TASKS["digits-mlp"].to_dict(), max_quality_drop=-3)
    regression = CompressDomain(BUILTIN_TASKS["series-regression"].to_dict())
    assert regression.relative_drop and regression.max_quality_drop == 5.0


def test_initial_population_is_seeded_and_valid(domain):
    pop = domain.initial_population(np.random.default_rng(0), 10)
    assert pop[0].stages == () and len(pop) == 10
    assert len({g.content_hash for g in pop}) == 10
    assert all(isinstance(s, Stage) for g in pop for s in g.stages)
