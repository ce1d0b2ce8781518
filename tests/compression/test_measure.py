from __future__ import annotations

import copy

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from evoforge.compression.measure import (  # noqa: E402
    LatencyResult,
    artifact_size_bytes,
    count_macs,
    measure_latency,
    parameter_count,
)
from evoforge.workload.models import TwoFCNet, digits_cnn, digits_mlp  # noqa: E402


def _mlp(hidden: int) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(256, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 10)).eval()


def test_identical_models_have_ratio_near_one() -> None:
    model = _mlp(256)
    result = measure_latency(model, copy.deepcopy(model), torch.randn(64, 256), repeats=9, warmup=2, calls=5, threads=1)
    assert isinstance(result, LatencyResult)
    assert result.b1.batch == 1 and result.batch.batch == 64
    assert 0.6 < result.b1.ratio < 1.6
    assert 0.6 < result.batch.ratio < 1.6
    assert result.batch.throughput == pytest.approx(64_000 / result.batch.candidate_ms)
    flat = result.to_dict()
    assert flat["latency_ratio_batch"] == result.batch.ratio and flat["batch"] == 64


def test_wider_model_is_measured_slower() -> None:
    small, wide = _mlp(128), _mlp(512)  # ~4x wider hidden layers, ~10x the MACs
    result = measure_latency(wide, small, torch.randn(64, 256), repeats=7, warmup=2, calls=3, threads=1)
    assert result.batch.ratio > 1.5
    assert result.batch.candidate_ms > result.batch.baseline_ms


def test_measure_restores_modes_and_threads() -> None:
    cand, base = _mlp(32).train(), _mlp(32).eval()
    threads = torch.get_num_threads()
    measure_latency(cand, base, torch.randn(4, 256), repeats=1, warmup=0, calls=1, threads=1)
    assert cand.training and not base.training
    assert torch.get_num_threads() == threads


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        measure_latency(_mlp(8), _mlp(8), torch.randn(4, 256), repeats=0)
    with pytest.raises(ValueError):
        measure_latency(_mlp(8), _mlp(8), torch.randn(0, 256))


def test_parameter_count_includes_packed_int8() -> None:
    mlp = digits_mlp().eval()
    expected = sum(p.numel() for p in mlp.parameters())
    assert parameter_count(mlp) == expected
    quantized = torch.ao.quantization.quantize_dynamic(copy.deepcopy(mlp), {nn.Linear}, dtype=torch.qint8)
    assert sum(p.numel() for p in quantized.parameters()) == 0
    assert parameter_count(quantized) == expected


def test_macs_of_linear_and_conv() -> None:
    net = TwoFCNet(10, in_features=64, hidden=128)
    assert count_macs(net, torch.randn(1, 1, 8, 8)) == 64 * 128 + 128 * 10
    assert count_macs(net, torch.randn(5, 1, 8, 8)) == 64 * 128 + 128 * 10  # per example
    conv = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1, groups=8))
    assert count_macs(conv, torch.randn(1, 3, 8, 8)) == 64 * 8 * 3 * 9 + 64 * 8 * 9


def test_macs_unchanged_by_quantization_and_reduced_by_lowrank() -> None:
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    x = torch.randn(1, 1, 8, 8)
    cnn = digits_cnn().eval()
    prepared = prepare_fx(copy.deepcopy(cnn), get_default_qconfig_mapping("x86"), (x,))
    prepared(torch.randn(16, 1, 8, 8))
    quantized = convert_fx(prepared)
    assert count_macs(quantized, x) == count_macs(cnn, x) > 0
    assert parameter_count(quantized) > 0.9 * parameter_count(cnn)  # BN folded, weights packed
    mlp = digits_mlp().eval()
    lowrank = copy.deepcopy(mlp)
    lowrank.net[1] = nn.Sequential(nn.Linear(64, 8, bias=False), nn.Linear(8, 128))
    assert count_macs(lowrank, x) == count_macs(mlp, x) - 64 * 128 + 64 * 8 + 8 * 128


def test_artifact_size_counts_int8() -> None:
    mlp = digits_mlp().eval()
    x = torch.randn(1, 1, 8, 8)
    fp32 = artifact_size_bytes(mlp, x)
    assert fp32 > 4 * parameter_count(mlp)
    int8 = artifact_size_bytes(torch.ao.quantization.quantize_dynamic(mlp, {nn.Linear}, dtype=torch.qint8), x)
    assert int8 < fp32 / 2
