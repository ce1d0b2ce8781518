"""benchmarks/int8_weight_bits.py: both weight widths of every int8 mode, measured on a trained model."""

import pytest

from tests.benchmarks import benchmark_module

pytestmark = pytest.mark.slow


def test_every_int8_mode_is_measured_at_8_and_7_bits(tmp_path):
    pytest.importorskip("onnxruntime")
    rows = benchmark_module("int8_weight_bits").measure("digits-mlp", tmp_path, batch=8)
    ort = [(r["mode"], r["weight_bits"]) for r in rows if r["runtime"] == "onnxruntime"]
    assert ort == [("fp32", 32), ("static", 8), ("static", 7), ("dynamic", 8), ("dynamic", 7)]
    fp32 = {r["runtime"]: r["accuracy"] for r in rows if r["mode"] == "fp32"}
    for r in rows:
        assert 0.5 < r["accuracy"] <= 1.0  # a trained digits MLP, in every form
        if r["mode"] != "fp32":
            assert r["latency_ratio_batch"] > 0 and r["drop_pt"] == pytest.approx(100 * (fp32[r["runtime"]] - r["accuracy"]))
