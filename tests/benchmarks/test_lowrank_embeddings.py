"""benchmarks/lowrank_embeddings.py: the low-rank stage with embedding tables dense and factorized."""

import pytest
from torch import nn

from tests.benchmarks import benchmark_module


def test_the_dense_setting_is_the_stage_without_embeddings_and_is_undone():
    from evoforge.compression.stages import lowrank

    bench = benchmark_module("lowrank_embeddings")
    model = nn.Sequential(nn.Embedding(40, 16), nn.Linear(16, 40))
    with bench.embeddings_left_dense():
        assert lowrank.factorize(model) == ["1"]
    assert nn.Embedding in lowrank._FACTORIZABLE and lowrank.factorize(nn.Sequential(nn.Embedding(40, 16))) == ["0"]


@pytest.mark.slow
def test_each_energy_is_measured_with_embeddings_dense_and_factorized(tmp_path):
    pytest.importorskip("onnxruntime")
    result = benchmark_module("lowrank_embeddings").measure("digits-mlp", tmp_path, [0.9], reg_epochs=1, epochs=0)
    rows = result["rows"]
    assert [(r["energy"], r["embeddings"]) for r in rows] == [(0.9, "dense"), (0.9, "factorized")]
    assert rows[0]["params"] == rows[1]["params"] < result["baseline"]["params"]  # no embedding: the same model
    for r in rows:
        assert 0 < r["size_ratio_int8"] < r["size_ratio_fp32"] < 1 and 0.5 < r["static_accuracy"] <= 1
