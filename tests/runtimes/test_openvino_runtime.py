"""The OpenVINO runtime: the ONNX file compiled by OpenVINO's CPU plugin in fp32, refusals, and a
compress run deployed to it end to end. Its static int8 and its dict inputs are tested with ONNX
Runtime's, in test_onnx_runtime.py; its bf16 with the other runtimes', in test_bf16.py."""

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
from evoforge.machine import native_bf16  # noqa: E402
from evoforge.runtimes import RUNTIMES, QuantSettings, get_runtime  # noqa: E402
from tests.runtimes.conftest import accuracy as _accuracy  # noqa: E402


def test_float_export_runs_in_openvino_with_the_models_numbers_at_any_batch(
    trained_mlp: nn.Module, digits: tuple[torch.Tensor, ...], tmp_path
) -> None:
    _, _, x_test, y_test = digits
    runtime = get_runtime("openvino")
    assert "openvino" in RUNTIMES and runtime.quant_modes == ("static", "bf16")
    path = runtime.export(trained_mlp, x_test[:1], tmp_path / runtime.artifact_name)
    loaded = runtime.load(path, threads=1)
    assert type(loaded).__name__ == "OpenVinoModule"
    assert loaded.compiled.get_property("INFERENCE_NUM_THREADS") == 1
    assert loaded.compiled.get_property("ENABLE_CPU_PINNING") is False  # two one-thread workers must not share a core
    assert _accuracy(loaded, x_test, y_test) == pytest.approx(_accuracy(trained_mlp, x_test, y_test))
    with torch.no_grad():  # fp32, not OpenVINO's bf16 default on processors that have bf16
        np.testing.assert_allclose(loaded(x_test[:5]).numpy(), trained_mlp(x_test[:5]).numpy(), atol=1e-5, rtol=1e-4)
    assert "openvino.Core().compile_model" in runtime.load_snippet(path) and "f32" in runtime.load_snippet(path)


def test_dynamic_int8_is_refused_by_name(tmp_path) -> None:
    with pytest.raises(ConfigError, match="'dynamic' is not available on runtime 'openvino'; its modes: static, bf16$"):
        get_runtime("openvino").export(nn.Linear(4, 2), torch.randn(2, 4), tmp_path / "m.onnx", quant=QuantSettings("dynamic"))


def test_without_the_package_the_runtime_is_refused_in_one_line(monkeypatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None if name == "openvino" else real(name, *args))
    with pytest.raises(ConfigError, match=r"^runtime 'openvino' needs the openvino package; install it with pip install"):
        get_runtime("openvino")


def test_a_compress_run_deploys_to_openvino_and_its_member_verifies(tmp_path) -> None:
    run_dir = tmp_path / "run"
    front = evoforge.compress("digits-mlp", runtime="openvino", budget=4, pop_size=4, workers=1, seed=0, run_dir=run_dir)
    record = json.loads((run_dir / "baseline" / "baseline.json").read_text())
    assert record["runtime"] == "openvino" and record["space"]["quant_modes"] == ["static"] + (["bf16"] if native_bf16() else [])
    assert (run_dir / "baseline" / "model.openvino.onnx").exists()
    card = evoforge.export_member(run_dir, front[0].id, tmp_path / "out")
    assert card["runtime"] == "openvino" and card["artifact"].endswith("model.openvino.onnx")
    assert "openvino.Core().compile_model" in card["load_with"]
