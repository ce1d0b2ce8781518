"""The ``bf16`` quantize mode in every runtime that has it: the artifact computes in bfloat16
behind float32 edges, keeps the model's accuracy on digits, halves the weights' bytes, and reloads
in that precision without evoforge; ONNX Runtime refuses it."""

from __future__ import annotations

import copy

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from evoforge.errors import ConfigError  # noqa: E402
from evoforge.machine import native_bf16  # noqa: E402
from evoforge.runtimes import QuantSettings, get_runtime  # noqa: E402
from evoforge.workload.inputs import Bf16Model, InputSpec, ModelAdapter  # noqa: E402
from tests.runtimes.conftest import accuracy  # noqa: E402

BF16_RUNTIMES = ("torchscript", "inductor", "openvino")


def test_bf16_model_casts_float_inputs_only_and_returns_float32() -> None:
    class Embed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.table, self.scale = nn.Embedding(10, 4), nn.Linear(4, 2)

        def forward(self, ids: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
            assert ids.dtype == torch.long and weight.dtype == torch.bfloat16
            return self.scale(self.table(ids).mean(1) * weight)

    model = Bf16Model(Embed())
    out = model(torch.randint(0, 10, (3, 5)), torch.rand(3, 1))
    assert out.dtype == torch.float32 and out.shape == (3, 2)
    assert all(p.dtype == torch.bfloat16 for p in model.parameters())


@pytest.mark.parametrize("name", BF16_RUNTIMES)
def test_bf16_artifact_keeps_accuracy_and_computes_in_bf16(name: str, trained_mlp: nn.Module, digits, tmp_path) -> None:
    pytest.importorskip({"inductor": "torchao", "openvino": "openvino", "torchscript": "torch"}[name])
    _, _, x_test, y_test = digits
    runtime = get_runtime(name)
    assert "bf16" in runtime.quant_modes
    fp32 = runtime.export(trained_mlp, x_test[:1], tmp_path / f"fp32-{runtime.artifact_name}")
    path = runtime.export(trained_mlp, x_test[:1], tmp_path / runtime.artifact_name, quant=QuantSettings("bf16"))
    loaded = runtime.load(path, threads=1)
    with torch.no_grad():
        got, want = loaded(x_test[:64]), trained_mlp(x_test[:64])
        bf16_reference = ModelAdapter(copy.deepcopy(trained_mlp), InputSpec.of(x_test)).to(torch.bfloat16)(x_test[:64].bfloat16()).float()
    assert got.dtype == torch.float32 and got.shape == (64, 10)
    drift = float((got - want).abs().max())
    assert 0 < drift < 0.1  # bf16 arithmetic: not the fp32 numbers, close to them
    if name != "openvino":  # PyTorch's own bf16 kernels (OpenVINO's keep float32 accumulators: closer to fp32)
        assert float((got - bf16_reference).abs().max()) < drift + 0.05
    assert accuracy(loaded, x_test, y_test) == pytest.approx(accuracy(trained_mlp, x_test, y_test), abs=0.01)
    assert loaded(x_test[:3]).shape == (3, 10)  # exported at batch 1, runs at 3
    if name != "inductor":  # (its ~1.6 MB of compiled code, whose size moves by tens of kB, dwarfs this MLP's weights)
        weight_bytes = sum(4 * p.numel() for p in trained_mlp.parameters())  # stored in 16 bits (OpenVINO: float16)
        assert runtime.size_bytes(fp32) - runtime.size_bytes(path) > 0.4 * weight_bytes


def test_openvino_bf16_file_says_its_precision_to_a_plain_loader(trained_mlp: nn.Module, digits, tmp_path) -> None:
    openvino = pytest.importorskip("openvino")
    _, _, x_test, _ = digits
    runtime = get_runtime("openvino")
    path = runtime.export(trained_mlp, x_test[:1], tmp_path / runtime.artifact_name, quant=QuantSettings("bf16"))
    assert "'INFERENCE_PRECISION_HINT': 'bf16'" in runtime.load_snippet(path)
    compiled = runtime.load(path).compiled
    # OpenVINO keeps float32 on a processor without bfloat16 arithmetic, whatever the hint says
    expected = openvino.Type.bf16 if native_bf16() else openvino.Type.f32
    assert str(compiled.get_property("INFERENCE_PRECISION_HINT")) == str(expected)
    float_path = runtime.export(trained_mlp, x_test[:1], tmp_path / "fp32.onnx")
    assert "'INFERENCE_PRECISION_HINT': 'f32'" in runtime.load_snippet(float_path)


def test_onnxruntime_refuses_bf16_by_name(tmp_path) -> None:
    pytest.importorskip("onnxruntime")
    with pytest.raises(ConfigError, match="quantize mode 'bf16' is not available on runtime 'onnxruntime'; its modes: dynamic, static"):
        get_runtime("onnxruntime").export(nn.Linear(4, 2), torch.randn(2, 4), tmp_path / "m.onnx", quant=QuantSettings("bf16"))
