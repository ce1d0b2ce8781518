"""Which machine a latency was measured on.

Latency ratios depend on the processor: int8 kernels in particular run on instruction-set
extensions (VNNI, AMX) that one x86 machine has and the next lacks, so a ratio timed on one
machine says little about another. Every timed evaluation records `machine_name` in its metrics,
runs report when their timings come from more than one machine, and the shared evaluation cache
keys entries by it.
"""

from __future__ import annotations

import functools
import os
import platform
from collections.abc import Iterable, Mapping
from pathlib import Path

MACHINE_METRIC = "machine"
"""The evaluation metric (and cache identity field) that holds `machine_name`."""

KERNEL_FEATURES = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_int8", "amx_bf16", "asimddp", "i8mm", "bf16", "sve")
"""CPU flags that decide which fp32, int8 and bf16 kernels a runtime can use (x86 and Arm)."""


def parse_cpuinfo(text: str) -> tuple[str, tuple[str, ...]]:
    """(model name, the `KERNEL_FEATURES` among its flags) from the text of ``/proc/cpuinfo``;
    ("", ()) for what it does not say."""
    model = ""
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "cpu model") and not model:
            model = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = set(value.split())
    return model, tuple(f for f in KERNEL_FEATURES if f in flags)


def available_cores() -> int:
    """The cores this process may run on (its affinity where the platform tells it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@functools.lru_cache(maxsize=1)
def processor() -> tuple[str, tuple[str, ...]]:
    """This processor's model name and `KERNEL_FEATURES` (from ``/proc/cpuinfo``; ("", ()) off Linux)."""
    try:
        return parse_cpuinfo(Path("/proc/cpuinfo").read_text())
    except OSError:  # not Linux
        return "", ()


BF16_FEATURES = ("avx512_bf16", "amx_bf16", "bf16")
"""Flags of processors with bfloat16 arithmetic (x86 AVX-512 BF16 or AMX, Arm BF16): elsewhere
bf16 is emulated (slower than float32) or ignored by the runtime."""


def native_bf16() -> bool:
    """True when this processor computes in bfloat16 natively (one of `BF16_FEATURES`)."""
    return any(f in BF16_FEATURES for f in processor()[1])


INT8_DOT_FEATURES = ("avx512_vnni", "avx_vnni", "amx_int8")
"""x86 flags of processors with 8-bit dot-product instructions. Without them, the int8 kernels of
ONNX Runtime and OpenVINO multiply uint8 activations by int8 weights with an instruction that adds
pairs of products in 16 bits and saturates (``vpmaddubsw``): on an AVX2-only AMD EPYC the trained
digits-cnn baseline in static int8 fell from 99.63% to 94.80% test accuracy in ONNX Runtime."""


def int8_products_saturate() -> bool:
    """True on x86 processors without any of `INT8_DOT_FEATURES`, where 8-bit weights can overflow
    the 16-bit sums of the int8 kernels (7-bit weights cannot)."""
    x86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")
    return x86 and not any(f in INT8_DOT_FEATURES for f in processor()[1])


@functools.lru_cache(maxsize=1)
def machine_name() -> str:
    """This machine in one line: processor model, architecture, available cores and the kernel
    features it has, e.g. ``Intel(R) Xeon(R) Processor (x86_64), 2 cores, avx512_vnni amx_int8``."""
    model, features = processor()
    model = model or platform.processor() or "unknown processor"
    text = f"{model} ({platform.machine() or 'unknown architecture'}), {available_cores()} cores"
    return f"{text}, {' '.join(features)}" if features else text


def timing_machines(metrics: Iterable[Mapping[str, object]]) -> dict[str, int]:
    """How many of the evaluations with these ``metrics`` were timed on each machine (those that
    do not say are left out), most first."""
    counts: dict[str, int] = {}
    for m in metrics:
        name = m.get(MACHINE_METRIC)
        if isinstance(name, str):
            counts[name] = counts.get(name, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def machines_note(metrics: Iterable[Mapping[str, object]]) -> str | None:
    """One line for a run's headline: the machine its evaluations were timed on, or a warning
    when they come from several (their latencies are then not comparable); None when none say."""
    counts = timing_machines(metrics)
    if not counts:
        return None
    if len(counts) == 1:
        return f"timed on {next(iter(counts))}"
    parts = "; ".join(f"{name}: {n}" for name, n in counts.items())
    return (f"WARNING: latencies were timed on {len(counts)} different machines ({parts}); "
            "ratios from different machines are not comparable, compare members timed on one")
