"""The Inductor runtime: AOTInductor packages that reload with the model's quality at any batch;
torchao int8 (PT2E static, dynamic, QAT; weight-only Linear); refusals; no torch.ao on its path."""

from __future__ import annotations

import warnings
import zipfile
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchao")
from torch import nn  # noqa: E402

from evoforge.errors import ConfigError, EvaluationError  # noqa: E402
from evoforge.runtimes import QuantSettings, get_runtime  # noqa: E402
from evoforge.runtimes.inductor import _capture  # noqa: E402
from evoforge.workload.inputs import InputSpec, ModelAdapter  # noqa: E402
from evoforge.workload.models import digits_cnn  # noqa: E402
from tests.runtimes.conftest import accuracy  # noqa: E402

INT8_MODES = ("dynamic", "static", "qat", "weight_only")


@pytest.fixture(scope="module")
def runtime():
    return get_runtime("inductor")


@pytest.fixture(scope="module")
def float_package(runtime, trained_mlp: nn.Module, digits, tmp_path_factory) -> Path:
    _, _, x_test, _ = digits
    return runtime.export(trained_mlp, x_test[:1], tmp_path_factory.mktemp("inductor") / runtime.artifact_name)


def _int8(mode: str, digits, *, per_channel: bool = True, keep_float_edges: bool = False) -> QuantSettings:
    x_train, y_train, _, _ = digits
    calibration = [(x_train[i : i + 64],) for i in range(0, 256, 64)]

    def train_one_epoch(model: nn.Module) -> None:
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
        model.train()
        for i in range(0, 512, 64):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x_train[i : i + 64]), y_train[i : i + 64]).backward()
            optimizer.step()

    return QuantSettings(mode, per_channel, calibration if mode in ("static", "qat") else (), keep_float_edges,
                        train=train_one_epoch if mode == "qat" else None)


def test_float_package_reloads_with_the_models_quality_at_any_batch(runtime, float_package: Path, trained_mlp, digits) -> None:
    _, _, x_test, y_test = digits
    loaded = runtime.load(float_package, threads=1)
    assert accuracy(loaded, x_test, y_test) == pytest.approx(accuracy(trained_mlp, x_test, y_test))
    assert loaded(x_test[:5]).shape == (5, 10)  # exported at batch 1, runs at 5
    assert runtime.size_bytes(float_package) == float_package.stat().st_size
    assert "aoti_load_package" in runtime.load_snippet(float_package)


def test_the_package_holds_no_generated_sources_and_no_debug_sections(float_package: Path) -> None:
    with zipfile.ZipFile(float_package) as archive:
        names = archive.namelist()
        libraries = [archive.read(n) for n in names if n.endswith(".so")]
    assert not [n for n in names if n.endswith(".cpp")]  # the build's C++ names the host's paths
    assert len(libraries) == 1 and b".debug_info" not in libraries[0] and b".debug_line" not in libraries[0]


@pytest.mark.parametrize("mode", INT8_MODES)
def test_int8_modes_keep_quality_in_a_smaller_package(mode: str, runtime, float_package: Path, trained_mlp, digits, tmp_path) -> None:
    _, _, x_test, y_test = digits
    path = runtime.export(trained_mlp, x_test[:8], tmp_path / runtime.artifact_name, quant=_int8(mode, digits))
    loaded = runtime.load(path, threads=1)
    assert accuracy(loaded, x_test, y_test) >= accuracy(trained_mlp, x_test, y_test) - 0.03
    with torch.no_grad():
        assert not torch.equal(loaded(x_test[:8]), trained_mlp(x_test[:8]))  # really int8 arithmetic
    if mode != "dynamic":  # Inductor's dynamic int8 keeps prepacked weights of about float size
        assert runtime.size_bytes(path) < runtime.size_bytes(float_package)  # int8 weights (the code is ~1.5 MB either way)


def _weights(mode: str, trained_mlp, digits, **options: bool) -> dict[str, int]:
    """Count of per-channel and per-tensor weight dequantizations in the captured int8 program."""
    _, _, x_test, _ = digits
    spec = InputSpec.of(x_test[:4])
    program = _capture(ModelAdapter(trained_mlp, spec).eval(), (x_test[:4],), spec, _int8(mode, digits, **options))
    targets = [str(node.target) for node in program.graph.nodes]
    return {kind: sum(f"dequantize_per_{kind}" in t for t in targets) for kind in ("channel", "tensor")}


def test_per_tensor_weights_and_float_edges_change_the_captured_program(trained_mlp, digits) -> None:
    per_channel = _weights("static", trained_mlp, digits)
    assert per_channel["channel"] == 3  # three Linear weights
    per_tensor = _weights("static", trained_mlp, digits, per_channel=False)
    assert per_tensor["channel"] == 0 and per_tensor["tensor"] > 3
    edges = _weights("static", trained_mlp, digits, keep_float_edges=True)
    assert edges["channel"] == 1  # only the middle Linear is int8


def test_modes_the_runtime_lacks_and_impossible_requests_are_refused(runtime, digits, tmp_path) -> None:
    model, x = digits_cnn().eval(), torch.randn(2, 1, 8, 8)
    with pytest.raises(ConfigError, match="'int4' is not available on runtime 'inductor'; its modes: dynamic, static, qat, weight_only"):
        runtime.export(model, x, tmp_path / "m.pt2", quant=QuantSettings("int4"))
    with pytest.raises(ConfigError, match="qat int8 on runtime 'inductor' needs a trainer or calibration batches"):
        runtime.export(model, x, tmp_path / "m.pt2", quant=QuantSettings("qat"))

    class ConvOnly(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(x).mean((2, 3))

    with pytest.raises(EvaluationError, match="weight_only int8 found no nn.Linear layer to quantize") as info:
        runtime.check_export(ConvOnly(), x, quant=QuantSettings("weight_only"))
    assert "\n" not in str(info.value)
    assert not (tmp_path / "m.pt2").exists()


def test_a_model_torch_export_cannot_capture_fails_with_a_one_line_reason(runtime, tmp_path) -> None:
    class DataDependent(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x[:, :1] if float(x.sum()) > 0 else x[:, 1:]  # control flow on a value

    with pytest.raises(EvaluationError, match="Inductor export of DataDependent failed: ") as info:
        runtime.export(DataDependent(), torch.randn(4, 3), tmp_path / "m.pt2")
    assert "\n" not in str(info.value)


def test_inductor_int8_uses_no_torch_ao_quantization(runtime, trained_mlp, digits, monkeypatch) -> None:
    import torch.ao.quantization as tq
    from torch.ao.quantization import quantize_fx

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("torch.ao.quantization was called on the inductor path")

    for module, name in [(tq, "quantize_dynamic"), (tq, "prepare"), (tq, "prepare_qat"), (tq, "convert"),
                         (quantize_fx, "prepare_fx"), (quantize_fx, "prepare_qat_fx"), (quantize_fx, "convert_fx")]:
        monkeypatch.setattr(module, name, forbidden)
    _, _, x_test, _ = digits
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for mode in INT8_MODES:
            runtime.check_export(trained_mlp, x_test[:4], quant=_int8(mode, digits))
    assert not [w for w in caught if "torch.ao" in str(w.message) or "quantize_per_tensor" in str(w.message)]
