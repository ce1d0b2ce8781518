"""The ONNX Runtime runtime (and OpenVINO, where it runs the same file): export, reload and quality;
int8 static and dynamic; refusals; no torch.ao quantization on its path."""

from __future__ import annotations

import contextlib
import copy
import logging
import warnings
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")
from torch import nn  # noqa: E402

from evoforge.errors import ConfigError, EvaluationError, UnknownNameError  # noqa: E402
from evoforge.runtimes import RUNTIMES, QuantSettings, get_runtime  # noqa: E402
from evoforge.workload.models import digits_cnn  # noqa: E402
from tests.runtimes.conftest import accuracy as _accuracy  # noqa: E402


def test_unknown_runtime_lists_the_valid_ones() -> None:
    with pytest.raises(UnknownNameError, match="onnxruntime.*torchscript|torchscript.*onnxruntime"):
        get_runtime("tensorrt")
    assert {"onnxruntime", "torchscript"} <= set(RUNTIMES)


def test_float_export_reloads_with_the_models_quality_at_any_batch(
    trained_mlp: nn.Module, digits: tuple[torch.Tensor, ...], tmp_path
) -> None:
    _, _, x_test, y_test = digits
    runtime = get_runtime("onnxruntime")
    path = runtime.export(trained_mlp, x_test[:1], tmp_path / runtime.artifact_name)
    loaded = runtime.load(path, threads=1)
    assert _accuracy(loaded, x_test, y_test) == pytest.approx(_accuracy(trained_mlp, x_test, y_test))
    assert loaded(x_test[:5]).shape == (5, 10)  # exported at batch 1, runs at 5
    assert runtime.size_bytes(path) == path.stat().st_size > 4 * sum(p.numel() for p in trained_mlp.parameters()) * 0.9
    assert "onnxruntime.InferenceSession" in runtime.load_snippet(path)


@pytest.mark.parametrize("mode", [None, "static", "dynamic"])
@pytest.mark.parametrize("draft", [False, True])
def test_artifacts_carry_no_exporter_debug_info(mode: str | None, draft: bool, tmp_path) -> None:
    """torch's exporter records each node's stack trace, with the absolute paths of the source
    files; the artifact a user ships holds none of it, and is smaller for that."""
    import onnx

    model = digits_cnn().eval()
    x = torch.randn(16, 1, 8, 8)
    quant = QuantSettings(mode, calibration=[(x,)]) if mode else None
    path = get_runtime("onnxruntime").export(model, x, tmp_path / "model.onnx", quant=quant, draft=draft)
    proto = onnx.load(str(path))
    assert not any(n.metadata_props or n.doc_string for n in proto.graph.node)
    source = Path(digits_cnn.__code__.co_filename).name.encode()
    assert source not in path.read_bytes()  # "models.py" of evoforge.workload, named by every stack trace


def _exporters_called(monkeypatch: pytest.MonkeyPatch, *, fail_fast_path: bool = False) -> list[bool]:
    """Records the ``dynamo`` flag of every torch.onnx.export call (starting with no graph to
    reuse); optionally makes the TorchScript-based exporter (dynamo=False) fail as it does on
    models it cannot trace."""
    from evoforge.runtimes import onnx_runtime

    monkeypatch.setattr(onnx_runtime, "_UNOPTIMIZED_GRAPHS", OrderedDict())
    calls: list[bool] = []
    real = torch.onnx.export

    def export(*args, **kwargs):
        calls.append(bool(kwargs.get("dynamo")))
        if fail_fast_path and not kwargs.get("dynamo"):
            raise RuntimeError("cannot trace this model")
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", export)
    return calls


@pytest.mark.parametrize("int8", [None, "static"])
def test_a_draft_uses_the_fast_exporter_and_reproduces_the_model(
    int8: str | None, trained_mlp: nn.Module, digits: tuple[torch.Tensor, ...], tmp_path, monkeypatch
) -> None:
    x_train, _, x_test, y_test = digits
    runtime = get_runtime("onnxruntime")
    settings = QuantSettings("static", True, [(x_train[:64],)]) if int8 else None
    full = runtime.export(trained_mlp, x_test[:1], tmp_path / "full.onnx", quant=settings)
    calls = _exporters_called(monkeypatch)
    draft = runtime.export(trained_mlp, x_test[:1], tmp_path / "draft.onnx", quant=settings, draft=True)
    assert calls == [False]
    loaded = runtime.load(draft, threads=1)
    assert loaded(x_test[:5]).shape == (5, 10)
    assert _accuracy(loaded, x_test, y_test) == pytest.approx(_accuracy(runtime.load(full), x_test, y_test), abs=0.01)
    assert runtime.size_bytes(draft) == pytest.approx(runtime.size_bytes(full), rel=0.2)  # same weights, leaner graph


def test_a_draft_falls_back_to_the_dynamo_exporter(trained_mlp: nn.Module, digits, tmp_path, monkeypatch) -> None:
    _, _, x_test, y_test = digits
    runtime = get_runtime("onnxruntime")
    calls = _exporters_called(monkeypatch, fail_fast_path=True)
    path = runtime.export(trained_mlp, x_test[:1], tmp_path / "draft.onnx", draft=True)
    assert calls == [False, True]
    assert _accuracy(runtime.load(path), x_test, y_test) == pytest.approx(_accuracy(trained_mlp, x_test, y_test))


def test_exports_share_one_operator_registry_and_write_the_same_bytes(tmp_path, monkeypatch) -> None:
    from torch.onnx._internal.exporter import _registration

    from evoforge.runtimes import onnx_runtime

    original = _registration.ONNXRegistry.__dict__["from_torchlib"]
    builds: list[object] = []

    def counted(cls, *args, **kwargs):
        builds.append(args)
        return original.__func__(cls, *args, **kwargs)

    monkeypatch.setattr(_registration.ONNXRegistry, "from_torchlib", classmethod(counted))
    monkeypatch.setattr(onnx_runtime, "_TORCHLIB_REGISTRIES", {})
    model, example = digits_cnn().eval(), torch.randn(1, 1, 8, 8)
    runtime = get_runtime("onnxruntime")

    def traced(name):  # an export that traces (no stored graph of this architecture to reuse)
        monkeypatch.setattr(onnx_runtime, "_UNOPTIMIZED_GRAPHS", OrderedDict())
        return runtime.export(model, example, tmp_path / name)

    with monkeypatch.context() as unhooked:
        unhooked.setattr(onnx_runtime, "_torchlib_registry_reused", contextlib.nullcontext)
        plain = traced("plain.onnx")
    assert len(builds) == 1
    first, second = traced("first.onnx"), traced("second.onnx")
    assert len(builds) == 2  # the two exports built one registry between them
    assert first.read_bytes() == second.read_bytes() == plain.read_bytes()
    assert _registration.ONNXRegistry.__dict__["from_torchlib"].__func__ is counted  # the hook is put back


def _perturbed(model: nn.Module, seed: int) -> nn.Module:
    """``model`` with other weights and batch-norm statistics: the same architecture."""
    other = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in other.state_dict().values():
            if tensor.is_floating_point():
                tensor.add_(0.1 * torch.randn(tensor.shape, generator=generator)).abs_()  # abs keeps variances positive
    return other


def test_a_model_of_an_exported_architecture_reuses_its_graph_and_writes_the_same_bytes(tmp_path, monkeypatch) -> None:
    from evoforge.runtimes import onnx_runtime

    runtime, example = get_runtime("onnxruntime"), torch.randn(1, 1, 8, 8)
    first, second = digits_cnn().eval(), _perturbed(digits_cnn().eval(), 1)
    calls = _exporters_called(monkeypatch)
    fresh = runtime.export(second, example, tmp_path / "fresh.onnx")  # traced: nothing stored yet
    monkeypatch.setattr(onnx_runtime, "_UNOPTIMIZED_GRAPHS", OrderedDict())
    runtime.export(first, example, tmp_path / "first.onnx")  # traced, and its graph stored
    reused = runtime.export(second, example, tmp_path / "reused.onnx")  # the first's graph with the second's weights
    assert calls == [True, True]  # the third export traced nothing
    assert reused.read_bytes() == fresh.read_bytes() != (tmp_path / "first.onnx").read_bytes()
    x = torch.randn(16, 1, 8, 8)
    with torch.no_grad():
        assert torch.allclose(runtime.load(reused)(x), second(x), atol=1e-5)
    pruned = nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).eval()  # another architecture traces
    runtime.export(pruned, example, tmp_path / "other.onnx")
    assert calls == [True, True, True]


def test_the_stored_graphs_are_bounded_in_count_and_bytes(monkeypatch) -> None:
    from evoforge.runtimes import onnx_runtime

    monkeypatch.setattr(onnx_runtime, "_UNOPTIMIZED_GRAPHS", OrderedDict())
    monkeypatch.setattr(onnx_runtime, "_GRAPH_BYTES_KEPT", 100)
    for i in range(20):
        onnx_runtime._keep_graph(f"k{i}", b"x" * 10)
    assert list(onnx_runtime._UNOPTIMIZED_GRAPHS) == [f"k{i}" for i in range(10, 20)]  # 100 bytes: the last 10
    onnx_runtime._keep_graph("big", b"x" * 101)
    assert "big" not in onnx_runtime._UNOPTIMIZED_GRAPHS and len(onnx_runtime._UNOPTIMIZED_GRAPHS) == 10
    monkeypatch.setattr(onnx_runtime, "_GRAPH_BYTES_KEPT", 10**6)
    for i in range(20, 40):
        onnx_runtime._keep_graph(f"k{i}", b"x")
    assert len(onnx_runtime._UNOPTIMIZED_GRAPHS) == onnx_runtime._GRAPHS_KEPT and "k39" in onnx_runtime._UNOPTIMIZED_GRAPHS


class Scaled(nn.Module):
    """A module whose forward uses a plain float: two of them share every state tensor's shape and
    their repr, yet compute different outputs."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.linear = nn.Linear(64, 10)
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1)) * self.scale


def test_a_reused_graph_that_computes_something_else_is_traced_again(tmp_path, monkeypatch) -> None:
    runtime, example = get_runtime("onnxruntime"), torch.randn(1, 1, 8, 8)
    calls = _exporters_called(monkeypatch)
    runtime.export(Scaled(1.0).eval(), example, tmp_path / "one.onnx")
    tripled = Scaled(3.0).eval()
    tripled.load_state_dict(Scaled(1.0).state_dict())
    path = runtime.export(tripled, example, tmp_path / "three.onnx")
    assert calls == [True, True]  # the stored graph multiplies by 1, so the output check sent it to the tracer
    x = torch.randn(4, 1, 8, 8)
    with torch.no_grad():
        assert torch.allclose(runtime.load(path)(x), tripled(x), atol=1e-5)


@pytest.mark.parametrize(("runtime_name", "mode"), [("onnxruntime", "dynamic"), ("onnxruntime", "static"), ("openvino", "static")])
@pytest.mark.parametrize("per_channel", [False, True])
def test_int8_modes_shrink_the_file_and_keep_quality(
    runtime_name: str, mode: str, per_channel: bool, trained_mlp: nn.Module, digits: tuple[torch.Tensor, ...], tmp_path
) -> None:
    if runtime_name == "openvino":
        pytest.importorskip("openvino")
    x_train, _, x_test, y_test = digits
    runtime = get_runtime(runtime_name)
    float_path = runtime.export(trained_mlp, x_test[:1], tmp_path / "float.onnx")
    calibration = [(x_train[i : i + 64],) for i in range(0, 256, 64)] if mode == "static" else ()
    path = runtime.export(trained_mlp, x_test[:8], tmp_path / "int8.onnx", quant=QuantSettings(mode, per_channel, calibration))
    assert runtime.size_bytes(path) < 0.4 * runtime.size_bytes(float_path)
    loaded = runtime.load(path, threads=1)
    assert _accuracy(loaded, x_test, y_test) >= _accuracy(trained_mlp, x_test, y_test) - 0.03
    with torch.no_grad():
        assert not torch.equal(loaded(x_test[:8]), trained_mlp(x_test[:8]))  # really int8 arithmetic


def test_modes_a_runtime_lacks_are_refused_by_name(tmp_path) -> None:
    model, x = digits_cnn().eval(), torch.randn(2, 1, 8, 8)
    with pytest.raises(ConfigError, match="'qat' is not available on runtime 'onnxruntime'; its modes: dynamic, static"):
        get_runtime("onnxruntime").export(model, x, tmp_path / "m.onnx", quant=QuantSettings("qat"))
    with pytest.raises(ConfigError, match="needs calibration batches"):
        get_runtime("onnxruntime").export(model, x, tmp_path / "m.onnx", quant=QuantSettings("static"))
    with pytest.raises(ConfigError, match="'dynamic' is not available on runtime 'torchscript'"):
        get_runtime("torchscript").export(model, x, tmp_path / "m.pt", quant=QuantSettings("dynamic"))
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize("runtime_name", ["onnxruntime", "openvino"])  # (openvino runs the same file)
def test_dict_inputs_become_named_positional_onnx_inputs(runtime_name: str, tmp_path) -> None:
    if runtime_name == "openvino":
        pytest.importorskip("openvino")

    class TwoInputs(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(3, 2), nn.Linear(4, 2)

        def forward(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
            return self.a(left) + self.b(right)

    model = TwoInputs().eval()
    batch = {"left": torch.randn(3, 3), "right": torch.randn(3, 4)}
    runtime = get_runtime(runtime_name)
    loaded = runtime.load(runtime.export(model, batch, tmp_path / "m.onnx"))
    assert loaded.input_names == ["left", "right"]
    with torch.no_grad():
        np.testing.assert_allclose(loaded(batch["left"], batch["right"]).numpy(), model(**batch).numpy(), atol=1e-5)


def test_a_model_the_exporter_cannot_take_fails_with_a_one_line_reason(tmp_path) -> None:
    class SingularValues(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.linalg.svdvals(x)  # no ONNX function for aten._linalg_svd

    with pytest.raises(EvaluationError, match="ONNX export of SingularValues failed: ConversionError: .*_linalg_svd") as info:
        get_runtime("onnxruntime").export(SingularValues(), torch.randn(4, 3), tmp_path / "m.onnx")
    assert "\n" not in str(info.value)


def test_onnxruntime_int8_uses_no_torch_ao_quantization(
    trained_mlp: nn.Module, digits: tuple[torch.Tensor, ...], tmp_path, monkeypatch
) -> None:
    import torch.ao.quantization as tq
    from torch.ao.quantization import quantize_fx

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("torch.ao.quantization was called on the onnxruntime path")

    entry_points = [(tq, "quantize_dynamic"), (tq, "prepare"), (tq, "convert"), (quantize_fx, "prepare_fx"), (quantize_fx, "convert_fx")]
    for module, name in entry_points:
        monkeypatch.setattr(module, name, forbidden)
    x_train, _, x_test, _ = digits
    runtime = get_runtime("onnxruntime")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for mode in ("dynamic", "static"):
            quant = QuantSettings(mode, True, [(x_train[:64],)] if mode == "static" else ())
            runtime.load(runtime.export(trained_mlp, x_test[:4], tmp_path / f"{mode}.onnx", quant=quant))(x_test[:4])
    assert not [w for w in caught if "torch.ao" in str(w.message) or "quantize_per_tensor" in str(w.message)]


def test_converter_notices_about_skipped_steps_are_not_printed(digits, tmp_path, caplog) -> None:
    """Per-channel static int8 of a model with a LayerNorm: ONNX Runtime's quantizer logs that the
    norm's weight has no channel axis, once per norm and export; those lines are dropped, the
    quantization is unchanged."""
    x_train, _, x_test, _ = digits
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.LayerNorm(32), nn.ReLU(), nn.Linear(32, 10)).eval()
    calibration = [(x_train[i : i + 64],) for i in range(0, 128, 64)]
    runtime = get_runtime("onnxruntime")
    with caplog.at_level(logging.WARNING):
        path = runtime.export(model, x_test[:8], tmp_path / "int8.onnx", quant=QuantSettings("static", True, calibration))
        logging.getLogger().warning("an unrelated warning still passes")
    messages = [r.getMessage() for r in caplog.records]
    assert not [m for m in messages if "out-of-range" in m], messages
    assert "an unrelated warning still passes" in messages
    assert runtime.size_bytes(path) > 0


class _MaskedAttention(nn.Module):
    """One self-attention layer with an additive padding mask and a layer norm, as in BERT. The
    mask adds the float minimum, or with ``infinite`` -inf (what a TorchScript-exported BERT's
    graph holds)."""

    def __init__(self, infinite: bool = False) -> None:
        super().__init__()
        self.qkv = nn.Linear(8, 48)
        self.norm = nn.LayerNorm(16)
        self.head = nn.Linear(16, 3)
        self.infinite = infinite

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(tokens).chunk(3, dim=-1)
        if self.infinite:
            additive = torch.where(mask[:, None, :] > 0, 0.0, float("-inf"))
        else:
            additive = (1.0 - mask[:, None, :]) * torch.finfo(torch.float32).min
        scores = q @ k.transpose(1, 2) / 4.0 + additive
        return self.head(self.norm(torch.softmax(scores, dim=-1) @ v).mean(1))


def test_static_int8_leaves_the_masked_attention_softmax_in_float(tmp_path) -> None:
    """One uint8 range cannot hold an attention mask's float minimum and the scores: quantizing
    the softmax's input took a BERT from 82% to 56%. The softmax and what computes its input stay
    float; the matrix products are still int8."""
    import onnx

    torch.manual_seed(0)
    model = _MaskedAttention().eval()
    tokens, mask = torch.randn(64, 6, 8), (torch.rand(64, 6) > 0.3).float()
    mask[:, 0] = 1.0
    calibration = [(tokens[i : i + 16], mask[i : i + 16]) for i in range(0, 64, 16)]
    runtime = get_runtime("onnxruntime")
    path = runtime.export(model, (tokens[:8], mask[:8]), tmp_path / "int8.onnx", quant=QuantSettings("static", True, calibration))
    graph = onnx.load(str(path)).graph
    producer = {output: node.op_type for node in graph.node for output in node.output}
    fed_int8 = {node.op_type for node in graph.node if any(producer.get(i) == "DequantizeLinear" for i in node.input)}
    assert "MatMul" in fed_int8 or "Gemm" in fed_int8
    assert "Softmax" not in fed_int8, fed_int8
    softmax_input = next(node.input[0] for node in graph.node if node.op_type == "Softmax")
    assert producer[softmax_input] != "DequantizeLinear"
    # the mask arithmetic (a product with the float minimum) stays float: quantized as a weight, that
    # constant dequantized to -inf in one rounding and to a finite value in another
    minimum = {init.name for init in graph.initializer if onnx.numpy_helper.to_array(init).min() <= torch.finfo(torch.float32).min}
    masking = [node for node in graph.node if node.op_type == "Mul" and minimum & set(node.input)]
    assert masking and all(producer.get(i) != "DequantizeLinear" for node in masking for i in node.input)
    consumers = {i: node.op_type for node in graph.node for i in node.input}
    assert all(consumers.get(o) != "QuantizeLinear" for node in masking for o in node.output)
    with torch.no_grad():
        expected, got = model(tokens, mask), runtime.load(path)(tokens, mask)
    assert float((got.argmax(1) == expected.argmax(1)).float().mean()) >= 0.9


@pytest.mark.parametrize("mode", ["static", "dynamic"])
@pytest.mark.parametrize("saturate", [True, False])
def test_int8_weights_take_7_bits_where_the_processors_int8_products_saturate(tmp_path, monkeypatch, saturate, mode) -> None:
    """x86 processors without VNNI add pairs of uint8 x int8 products in 16 bits, which saturate:
    there int8 weights are quantized to 7 bits (ONNX Runtime's reduce_range), elsewhere to 8."""
    import onnx

    from evoforge import machine

    monkeypatch.setattr(machine, "int8_products_saturate", lambda: saturate)
    torch.manual_seed(0)
    model = digits_cnn(10).eval()
    x = torch.randn(32, 1, 8, 8)
    path = get_runtime("onnxruntime").export(model, x[:8], tmp_path / "int8.onnx",
                                             quant=QuantSettings(mode, True, [(x[i : i + 8],) for i in range(0, 32, 8)]))
    weights = [onnx.numpy_helper.to_array(init) for init in onnx.load(str(path)).graph.initializer
               if init.data_type == onnx.TensorProto.INT8 and len(init.dims) >= 2]
    assert weights
    largest = max(int(np.abs(w.astype(np.int32)).max()) for w in weights)
    assert largest <= 64 if saturate else largest == 127


def test_static_int8_of_a_mask_with_infinities_warns_of_nothing_and_keeps_the_outputs(tmp_path) -> None:
    """The calibrator computes a scale for every tensor it saw, also the -inf mask and scores that
    stay float; their NaN zero points are never used, and the numpy warnings about them are not
    printed. A bad scale on a tensor that is quantized would fail the export's output check."""
    torch.manual_seed(0)
    model = _MaskedAttention(infinite=True).eval()
    tokens, mask = torch.randn(64, 6, 8), (torch.rand(64, 6) > 0.3).float()
    mask[:, 0] = 1.0
    calibration = [(tokens[i : i + 16], mask[i : i + 16]) for i in range(0, 64, 16)]
    runtime = get_runtime("onnxruntime")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        path = runtime.export(model, (tokens[:8], mask[:8]), tmp_path / "int8.onnx", draft=True,
                              quant=QuantSettings("static", True, calibration))
    assert not [w for w in caught if issubclass(w.category, RuntimeWarning)], [str(w.message) for w in caught]
    with torch.no_grad():
        expected, got = model(tokens, mask), runtime.load(path)(tokens, mask)
    assert torch.isfinite(got).all()
    assert float((got.argmax(1) == expected.argmax(1)).float().mean()) >= 0.9


def test_an_export_without_torchvision_installed_prints_nothing(tmp_path) -> None:
    """torch's ONNX op registry warns about each torchvision operator when torchvision is missing
    (three lines per export); evoforge's users mostly have no torchvision and should not see them."""
    import os
    import subprocess
    import sys

    code = (
        "import importlib.util, torch\n"
        "from evoforge.runtimes import get_runtime\n"
        "print('TORCHVISION' if importlib.util.find_spec('torchvision') else 'NONE')\n"
        f"get_runtime('onnxruntime').export(torch.nn.Linear(4, 2), torch.randn(2, 4), {str(tmp_path / 'm.onnx')!r})\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # as a user runs it: no test shim, no torchvision
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    if out.stdout.startswith("TORCHVISION"):
        pytest.skip("torchvision is installed in this environment")
    assert "torchvision" not in out.stderr, out.stderr
