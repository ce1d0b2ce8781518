"""Honest cost measurement: latency against the baseline, artifact size, parameters, MACs.

Latency is only meaningful relative to a baseline timed in the same process and time window:
`measure_latency` alternates candidate and baseline runs under a host-wide `MeasurementLock`, so no
two latency measurements on the host overlap, and reports medians plus the median per-pair ratio.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from evoforge.hostlock import MeasurementLock
from evoforge.runtimes.torchscript import export_model
from evoforge.workload.inputs import call_model, rows, take_rows
from evoforge.workload.training import observe_forward


@dataclasses.dataclass(frozen=True)
class PairTiming:
    """Median latency (ms) of candidate and baseline at one batch size; ``ratio`` is the median of
    per-round candidate/baseline ratios (< 1 means the candidate is faster)."""

    batch: int
    candidate_ms: float
    baseline_ms: float
    ratio: float
    rounds: tuple[float, ...] = ()
    """Every round's candidate/baseline ratio (the spread behind ``ratio``)."""

    @property
    def throughput(self) -> float:
        """Candidate samples per second at this batch size."""
        return 1000.0 * self.batch / self.candidate_ms

    @property
    def baseline_throughput(self) -> float:
        return 1000.0 * self.batch / self.baseline_ms


@dataclasses.dataclass(frozen=True)
class LatencyResult:
    """Latency at batch 1 (``b1``) and at the measurement batch B (``batch``)."""

    b1: PairTiming
    batch: PairTiming

    def to_dict(self) -> dict[str, Any]:
        """Flat JSON-ready numbers (ms, ratios, samples/s) and each round's ratios."""
        return {
            "latency_b1_ms": self.b1.candidate_ms,
            "baseline_latency_b1_ms": self.b1.baseline_ms,
            "latency_ratio_b1": self.b1.ratio,
            "batch": float(self.batch.batch),
            "latency_batch_ms": self.batch.candidate_ms,
            "baseline_latency_batch_ms": self.batch.baseline_ms,
            "latency_ratio_batch": self.batch.ratio,
            "throughput": self.batch.throughput,
            "baseline_throughput": self.batch.baseline_throughput,
            "latency_rounds_b1": [round(r, 5) for r in self.b1.rounds],
            "latency_rounds_batch": [round(r, 5) for r in self.batch.rounds],
        }


Runner = Callable[..., Any]


def measure_latency(
    candidate: nn.Module,
    baseline: nn.Module,
    inputs: Any,
    *,
    repeats: int = 15,
    warmup: int = 3,
    calls: int = 5,
    threads: int | None = None,
    lock_timeout: float | None = None,
) -> LatencyResult:
    """Time ``candidate`` against ``baseline`` at batch 1 (the first row of ``inputs``) and at
    the batch of all of ``inputs`` (any input structure; exported artifacts take a tuple).

    Both models run in eval mode under ``torch.no_grad`` (their training flags are restored
    afterwards), while holding `MeasurementLock`. After ``warmup`` calls of each, ``repeats``
    rounds alternate the two (the order flips every round); a round times ``calls`` calls of each
    model and keeps their median. ``threads`` fixes torch's intra-op threads for the measurement.
    Models and ``inputs`` must be on the same device; CUDA is synchronized around every call.
    """
    if repeats < 1 or calls < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1, calls >= 1, warmup >= 0; got {repeats}, {calls}, {warmup}")
    if rows(inputs) < 1:
        raise ValueError("inputs must hold at least one example")
    modes = (candidate.training, baseline.training)
    old_threads = torch.get_num_threads()
    try:
        candidate.eval()
        baseline.eval()
        if threads is not None:
            torch.set_num_threads(threads)
        with MeasurementLock(timeout=lock_timeout), torch.no_grad():
            b1 = _time_pair(candidate, baseline, take_rows(inputs, slice(0, 1)), repeats, warmup, calls)
            bb = _time_pair(candidate, baseline, inputs, repeats, warmup, calls)
    finally:
        torch.set_num_threads(old_threads)
        candidate.train(modes[0])
        baseline.train(modes[1])
    return LatencyResult(b1=b1, batch=bb)


def _time_pair(candidate: Runner, baseline: Runner, x: Any, repeats: int, warmup: int, calls: int) -> PairTiming:
    from evoforge.workload.inputs import leaves

    sync = torch.cuda.synchronize if leaves(x)[0].is_cuda else None
    for _ in range(warmup):
        call_model(candidate, x)
        call_model(baseline, x)
    cand: list[float] = []
    base: list[float] = []
    for r in range(repeats):
        pair = (candidate, baseline) if r % 2 == 0 else (baseline, candidate)
        first, second = (_median_call(m, x, calls, sync) for m in pair)
        c, b = (first, second) if r % 2 == 0 else (second, first)
        cand.append(c)
        base.append(b)
    ratios = [c / b for c, b in zip(cand, base)]
    return PairTiming(rows(x), statistics.median(cand), statistics.median(base), statistics.median(ratios), tuple(ratios))


def _median_call(model: Runner, x: Any, calls: int, sync: Callable[[], None] | None) -> float:
    times = []
    for _ in range(calls):
        if sync is not None:
            sync()
        start = time.perf_counter_ns()
        call_model(model, x)
        if sync is not None:
            sync()
        times.append((time.perf_counter_ns() - start) / 1e6)
    return statistics.median(times)


def artifact_size_bytes(model: nn.Module, example_input: Any) -> int:
    """Bytes of the deployable TorchScript file written by `export_model` (packed int8 weights count)."""
    with tempfile.TemporaryDirectory(prefix="evoforge-size-") as tmp:
        return export_model(model, example_input, Path(tmp) / "model.pt").stat().st_size


def parameter_count(model: nn.Module) -> int:
    """Number of parameters, including the packed weights and biases of quantized modules."""
    import torch.ao.nn.quantized as nnq

    total = sum(p.numel() for p in model.parameters())
    for module in model.modules():
        if isinstance(module, (nnq.Linear, nnq.Conv1d, nnq.Conv2d, nnq.Conv3d)):  # incl. dynamic and fused
            total += sum(t.numel() for t in module._weight_bias() if t is not None)
    return total


def _mac_layer_types() -> tuple[tuple[type[nn.Module], ...], tuple[type[nn.Module], ...]]:
    import torch.ao.nn.quantized as nnq

    convs: tuple[type[nn.Module], ...] = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nnq.Conv1d, nnq.Conv2d, nnq.Conv3d)
    linears: tuple[type[nn.Module], ...] = (nn.Linear, nnq.Linear)  # nnq.Linear covers dynamic and fused ones
    return convs, linears


def count_macs(model: nn.Module, example_input: Any) -> int:
    """Multiply-accumulates of one forward pass per example (conv and linear layers only).

    Counted with forward hooks, so float, pruned, low-rank and torch.ao quantized / fused
    variants of Conv1d/2d/3d and Linear all count; quantization does not change the count.
    """
    convs, linears = _mac_layer_types()
    total = 0

    def hook(module: nn.Module, args: tuple[Any, ...], out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, convs):
            kernel = math.prod(int(k) for k in module.kernel_size)  # type: ignore[union-attr, misc]
            total += out.numel() * (int(module.in_channels) // int(module.groups)) * kernel  # type: ignore[arg-type]
        else:
            total += out.numel() * int(module.in_features)  # type: ignore[arg-type]

    observe_forward(model, example_input, [m for m in model.modules() if isinstance(m, convs + linears)], hook)
    return total // max(1, rows(example_input))
