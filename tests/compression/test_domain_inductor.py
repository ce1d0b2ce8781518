"""A compress run on the Inductor runtime: every int8 mode is in its space, QAT trains through the
domain's trainer at export, and nothing in the run calls torch.ao.quantization."""

import json
import warnings

import pytest

pytest.importorskip("torchao")

from evoforge.compression.domain import CompressDomain  # noqa: E402
from evoforge.compression.genome import PipelineGenome, Stage  # noqa: E402
from evoforge.errors import ConfigError  # noqa: E402
from evoforge.layout import RunLayout  # noqa: E402
from evoforge.machine import native_bf16  # noqa: E402
from evoforge.search.domain import EvalContext  # noqa: E402
from evoforge.workload.task import BUILTIN_TASKS  # noqa: E402


@pytest.fixture(scope="module")
def domain(tmp_path_factory):
    d = CompressDomain(BUILTIN_TASKS["digits-mlp"].to_dict(), latency_repeats=5, runtime="inductor")
    d.attach(RunLayout(tmp_path_factory.mktemp("run")))
    d.prepare()
    d.setup_worker()
    return d


def test_the_baseline_is_a_package_and_every_int8_mode_is_searchable(domain):
    record = json.loads((domain.layout.baseline / "baseline.json").read_text())
    assert domain.artifact == "model.pt2" and (domain.layout.baseline / "model.pt2").exists()
    assert record["runtime"] == "inductor" and set(record["refused"]) == (set() if native_bf16() else {"quantize:bf16"})
    assert record["space"]["quant_modes"] == ["dynamic", "static", "qat", "weight_only"] + (["bf16"] if native_bf16() else [])


def test_qat_trains_at_export_and_no_torch_ao_is_called(domain, tmp_path, monkeypatch):
    import torch.ao.quantization as tq
    from torch.ao.quantization import quantize_fx

    def forbidden(*args, **kwargs):
        raise AssertionError("torch.ao.quantization was called in an inductor run")

    for module, name in [(tq, "quantize_dynamic"), (tq, "prepare"), (tq, "prepare_qat"), (tq, "convert"),
                         (quantize_fx, "prepare_fx"), (quantize_fx, "prepare_qat_fx"), (quantize_fx, "convert_fx")]:
        monkeypatch.setattr(module, name, forbidden)
    trained = []
    original = domain._qat_trainer

    def spy(genome, seed, state):
        train = original(genome, seed, state)

        def run(model, epochs):
            trained.append(epochs)
            return train(model, epochs)

        return run

    monkeypatch.setattr(domain, "_qat_trainer", spy)
    qat = PipelineGenome((Stage.make("quantize", mode="qat", per_channel=True, keep_float_edges=False, epochs=1),), domain.task.training)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ev = domain.evaluate(qat, EvalContext(seed=1, artifact_dir=tmp_path))
    assert ev.ok, ev.reason
    assert trained == [1]
    assert ev.objectives["quality_drop"] < 3.0 and ev.objectives["size_ratio"] < 1.0
    assert ev.metrics["runtime"] == "inductor" and ev.artifacts["model"].endswith("model.pt2")
    assert not [w for w in caught if issubclass(w.category, DeprecationWarning) and "torch.ao" in str(w.message)]


def test_torchscript_refuses_weight_only_by_name(tmp_path):
    from evoforge.compression.domain import split_quant
    from evoforge.runtimes import get_runtime

    genome = PipelineGenome((Stage.make("quantize", mode="weight_only", per_channel=True, keep_float_edges=False, epochs=0),),
                            BUILTIN_TASKS["digits-mlp"].training)
    refusal = "quantize mode 'weight_only' is not available on runtime 'torchscript'; its modes: dynamic, static, qat, bf16"
    with pytest.raises(ConfigError, match=refusal):
        split_quant(genome, get_runtime("torchscript"))
    kept, int8 = split_quant(genome, get_runtime("inductor"))
    assert kept.stages == () and int8 is not None and int8.mode == "weight_only"


@pytest.mark.parametrize("runtime", ["torchscript", "inductor", "openvino"])
def test_bf16_is_applied_at_export_and_torch_ao_int8_in_the_pipeline(runtime):
    import torch

    from evoforge.compression.domain import runtime_quant_modes, split_quant
    from evoforge.runtimes import get_runtime

    training = BUILTIN_TASKS["digits-mlp"].training
    prune = Stage.make("prune", importance="l1", ratio=0.5, steps=1, allocation="uniform", round_to=1, epochs=0)
    bf16 = Stage.make("quantize", mode="bf16", per_channel=True, keep_float_edges=False, epochs=0)
    kept, quant = split_quant(PipelineGenome((prune, bf16), training), get_runtime(runtime))
    assert kept.stages == (prune,) and quant is not None and quant.mode == "bf16"
    assert "bf16" in runtime_quant_modes(get_runtime(runtime))
    static = PipelineGenome((Stage.make("quantize", mode="static", per_channel=True, keep_float_edges=False, epochs=0),), training)
    kept, quant = split_quant(static, get_runtime(runtime), calibration=[(torch.zeros(1, 64),)])
    if runtime == "torchscript":  # torch.ao's static int8 runs in the pipeline
        assert kept == static and quant is None
    else:
        assert kept.stages == () and quant is not None and quant.mode == "static"


def test_compare_runtimes_all_times_the_fp32_baseline_in_inductor_too(tmp_path):
    import torch
    from torch import nn

    from evoforge.runtimes import get_runtime

    domain = CompressDomain(BUILTIN_TASKS["digits-mlp"], runtime="onnxruntime", compare_runtimes="all", latency_repeats=3)
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)).eval()
    example = torch.randn(2, 64)
    ort = get_runtime("onnxruntime")
    path = ort.export(model, example, tmp_path / "model.onnx")
    elsewhere = domain._fp32_elsewhere(model, example, path, ort.load(path, threads=1), (torch.randn(8, 64),))
    assert elsewhere["inductor"]["same_file"] is False and elsewhere["inductor"]["ratio_batch"] > 0
    assert elsewhere["openvino"]["same_file"] is True and elsewhere["torchscript"]["same_file"] is False
