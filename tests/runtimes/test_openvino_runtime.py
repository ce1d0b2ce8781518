"""The OpenVINO runtime: the ONNX file compiled by OpenVINO's CPU plugin in fp32, static int8 from
ONNX Runtime's QDQ graph, refusals, and a compress run deployed to it end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("openvino")
pytest.importorskip("onnxscript")
from torch import nn  # noqa: E402

import evoforge  # noqa: E402
from evoforge.errors import ConfigError  # noqa: E402
from evoforge.runtimes import RUNTIMES, Int8Settings, get_runtime  # noqa: E402
from evoforge.workload.models import digits_cnn  # noqa: E402
from tests.runtimes.conftest import accuracy as _accuracy  # noqa: E402


def test_float_export_runs_in_openvino_with_the_models_numbers_at_any_batch(
    trained_mlp: nn.Module, digits: tuple[torch.Tensor, ...], tmp_path
) -> None:
    _, _, x_test, y_test = digits
    runtime = get_runtime("openvino")
    assert "openvino" in RUNTIMES and runtime.int8_modes == ("static",)
    path = runtime.export(trained_mlp, x_test[:1], tmp_path / runtime.artifact_name)
    loaded = runtime.load(path, threads=1)
    assert type(loaded).__name__ == "OpenVinoModule"
    assert loaded.compiled.get_property("INFERENCE_NUM_THREADS") == 1
    assert loaded.compiled.get_property("ENABLE_CPU_PINNING") is False  # two one-thread workers must not share a core
    assert _accuracy(loaded, x_test, y_test) == pytest.approx(_accuracy(trained_mlp, x_test, y_test))
    with torch.no_grad():  # fp32, not OpenVINO's bf16 default on processors that have bf16
        np.testing.assert_allclose(loaded(x_test[:5]).numpy(), trained_mlp(x_test[:5]).numpy(), atol=1e-5, rtol=1e-4)
    assert "openvino.Core().compile_model" in runtime.load_snippet(path) and "f32" in runtime.load_snippet(path)


@pytest.mark.parametrize("per_channel", [False, True])
def test_static_int8_shrinks_the_file_and_keeps_quality(
    per_channel: bool, trained_mlp: nn.Module, digits: tuple[torch.Tensor, ...], tmp_path
) -> None:
    x_train, _, x_test, y_test = digits
    runtime = get_runtime("openvino")
    float_path = runtime.export(trained_mlp, x_test[:1], tmp_path / "float.onnx")
    calibration = [(x_train[i : i + 64],) for i in range(0, 256, 64)]
    path = runtime.export(trained_mlp, x_test[:8], tmp_path / "int8.onnx", int8=Int8Settings("static", per_channel, calibration))
    assert runtime.size_bytes(path) < 0.4 * runtime.size_bytes(float_path)
    loaded = runtime.load(path, threads=1)
    assert _accuracy(loaded, x_test, y_test) >= _accuracy(trained_mlp, x_test, y_test) - 0.03
    with torch.no_grad():
        assert not torch.equal(loaded(x_test[:8]), trained_mlp(x_test[:8]))  # really int8 arithmetic


def test_dynamic_int8_is_refused_by_name(tmp_path) -> None:
    model, x = digits_cnn().eval(), torch.randn(2, 1, 8, 8)
    with pytest.raises(ConfigError, match="'dynamic' is not available on runtime 'openvino'; its modes: static"):
        get_runtime("openvino").export(model, x, tmp_path / "m.onnx", int8=Int8Settings("dynamic"))
    assert not (tmp_path / "m.onnx").exists()


def test_dict_inputs_become_positional_inputs(tmp_path) -> None:
    class TwoInputs(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(3, 2), nn.Linear(4, 2)

        def forward(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
            return self.a(left) + self.b(right)

    model = TwoInputs().eval()
    batch = {"left": torch.randn(3, 3), "right": torch.randn(3, 4)}
    runtime = get_runtime("openvino")
    loaded = runtime.load(runtime.export(model, batch, tmp_path / "m.onnx"))
    assert loaded.input_names == ["left", "right"]
    with torch.no_grad():
        np.testing.assert_allclose(loaded(batch["left"], batch["right"]).numpy(), model(**batch).numpy(), atol=1e-5)


def test_a_compress_run_deploys_to_openvino_and_its_member_verifies(tmp_path) -> None:
    run_dir = tmp_path / "run"
    front = evoforge.compress("digits-mlp", runtime="openvino", budget=4, pop_size=4, workers=1, seed=0, run_dir=run_dir)
    record = json.loads((run_dir / "baseline" / "baseline.json").read_text())
    assert record["runtime"] == "openvino" and record["space"]["quant_modes"] == ["static"]
    assert (run_dir / "baseline" / "model.openvino.onnx").exists()
    card = evoforge.export_member(run_dir, front[0].id, tmp_path / "out")
    assert card["runtime"] == "openvino" and card["artifact"].endswith("model.openvino.onnx")
    assert "openvino.Core().compile_model" in card["load_with"]
