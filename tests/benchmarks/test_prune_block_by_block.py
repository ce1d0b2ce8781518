"""The block-by-block pruning benchmark (benchmarks/prune_block_by_block.py) prunes a ShuffleNet,
times it against the fp32 model, and refuses a name torchvision does not have."""

import sys

import pytest

from tests.benchmarks import benchmark_module

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def bench():
    module = benchmark_module("prune_block_by_block")  # (installs the torchvision shim)
    pytest.importorskip("torchvision.models")
    return module


def test_rows_for_the_fp32_model_and_each_setting(bench):
    rows = bench.measure("shufflenet_v2_x0_5", [0.5], [1, 8], rounds=1)
    assert [(r["ratio"], r["round_to"]) for r in rows] == [(0.0, 1), (0.5, 1), (0.5, 8)]
    assert rows[0]["latency_ratio"] == 1.0
    assert all(r["parameters"] < rows[0]["parameters"] and r["median_ms"] > 0 for r in rows[1:])


def test_unknown_architecture_is_refused(bench, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["prune_block_by_block.py", "--architectures", "shufflenet_v2_x0_5,lenet"])
    with pytest.raises(SystemExit, match=r"unknown torchvision models \['lenet'\]"):
        bench.main()
