"""Compile-flag tuning: before a run, the original program is compiled with each candidate flag set
that applies to it, checked against the outputs of IREE's defaults, and timed round-robin with
them on one batch; the run then compiles the original and every variant with the fastest set,
judged by the median over rounds of its time over the default's in the same round (a burst of
load slows both calls of a round alike).

A variant's runtime ratio is measured against the original compiled the same way, so tuning does
not flatter the ratios; it makes the whole run, and every member it exports, as fast as IREE can
make this program. The choice goes to ``program/flag_tuning.json``, and the run's stored flags
hold it, so a resumed run compiles exactly as the interrupted one did.

Measured (BENCHMARKS.md, GEVO-ML at the paper's scale): IREE 3.13's llvm-cpu code for
convolutions in their direct form is several times slower than the same convolutions rewritten
as im2col + matmul, on MobileNet-V1 and ResNet-18 at 32x32.
"""

from __future__ import annotations

import dataclasses
import json
import re
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from evoforge.mlir.iree_runner import paired_ratio
from evoforge.registry import Registry

FLAG_TUNING = "flag_tuning.json"
DEFAULT_SET = "default"
"""The name of the run's flags with nothing added (IREE's defaults plus the user's flags)."""
MIN_GAIN = 0.05
"""A candidate set replaces the default only when its paired ratio to it is at most 1 - this."""

_CONVOLUTION = re.compile(r"\b(torch\.aten\.(_)?convolution|torch\.aten\.conv[123]d|linalg\.(depthwise_)?conv_)")


def has_convolution(text: str) -> bool:
    """Whether the MLIR text holds a convolution op (torch or linalg level)."""
    return _CONVOLUTION.search(text) is not None


@dataclasses.dataclass(frozen=True)
class FlagSet:
    """Flags added to the run's own for programs that ``applies`` to (given the MLIR text)."""

    flags: tuple[str, ...]
    applies: Callable[[str], bool]


FLAG_SETS: Registry[FlagSet] = Registry("compile flag set")
FLAG_SETS.add("im2col", FlagSet(("--iree-global-opt-use-im2col-for-convs",), has_convolution))


@dataclasses.dataclass(frozen=True)
class Tuning:
    """The outcome: the chosen set's name and flags (empty for the default), the median
    milliseconds per call of each set that compiled and kept the outputs, each one's paired ratio
    to the default (`ratio_to_default`, see `paired_ratios`), and why the others were left out."""

    chosen: str
    flags: tuple[str, ...]
    ms: dict[str, float]
    rejected: dict[str, str]
    target: str = "llvm-cpu"
    base_flags: tuple[str, ...] = ()
    """What was tuned on top of: a stored tuning is reused only for the same target and flags."""
    ratio_to_default: dict[str, float] = dataclasses.field(default_factory=dict)
    """Empty in tunings stored before it was kept; `speedup` then compares the medians."""

    @property
    def speedup(self) -> float:
        """The default's time over the chosen set's."""
        if self.ratio_to_default:
            return 1 / self.ratio_to_default[self.chosen]
        return self.ms[DEFAULT_SET] / self.ms[self.chosen] if self.ms else 1.0

    def to_dict(self) -> dict[str, Any]:
        return {"chosen": self.chosen, "flags": list(self.flags), "ms": self.ms, "rejected": self.rejected,
                "target": self.target, "base_flags": list(self.base_flags), "ratio_to_default": self.ratio_to_default}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Tuning:
        return cls(str(data["chosen"]), tuple(data["flags"]), dict(data["ms"]), dict(data["rejected"]),
                   str(data["target"]), tuple(data["base_flags"]), dict(data.get("ratio_to_default", {})))


def paired_ratios(times_s: dict[str, Sequence[float]]) -> dict[str, float]:
    """Each set's `paired_ratio` to the default (the lists hold one time per round, in round order)."""
    return {name: paired_ratio(times, times_s[DEFAULT_SET]) for name, times in times_s.items()}


def choose(times_s: dict[str, Sequence[float]], min_gain: float = MIN_GAIN) -> str:
    """The set with the lowest paired ratio to the default (`paired_ratios`) if that ratio is at
    most ``1 - min_gain``; otherwise the default."""
    return _choose_by_ratio(paired_ratios(times_s), min_gain)


def _choose_by_ratio(ratios: dict[str, float], min_gain: float = MIN_GAIN) -> str:
    best = min(ratios, key=lambda name: (ratios[name], name != DEFAULT_SET))
    return best if ratios[best] <= 1 - min_gain else DEFAULT_SET


def load_tuning(directory: Path) -> Tuning | None:
    path = directory / FLAG_TUNING
    return Tuning.from_dict(json.loads(path.read_text())) if path.exists() else None


def tune_flags(
    program: Any, directory: Path, *, target: str, extra_flags: Sequence[str], driver: str,
    sets: Registry[FlagSet] = FLAG_SETS, repeats: int = 9, compile_timeout_s: float = 300.0, run_timeout_s: float = 120.0,
) -> Tuning:
    """Tune the compile flags of ``program`` (a `Program`) for ``target`` on top of
    ``extra_flags``, or return the tuning stored in ``directory`` for the same target and
    flags. Only ``llvm-cpu``
    is tuned; a program that no set applies to keeps the default without any compile. A set
    whose compile fails, or whose outputs differ from the default's beyond float rounding, is
    rejected with its reason."""
    stored = load_tuning(directory)
    if stored is not None and (stored.target, stored.base_flags) == (target, tuple(extra_flags)):
        return stored
    candidates = {name: s.flags for name, s in sets.items() if target == "llvm-cpu" and s.applies(program.text)}
    if not candidates:
        tuning = Tuning(DEFAULT_SET, (), {}, {}, target, tuple(extra_flags))
    else:
        tuning = _measure(program, target, list(extra_flags), driver, candidates, repeats, compile_timeout_s, run_timeout_s)
    (directory / FLAG_TUNING).write_text(json.dumps(tuning.to_dict(), indent=2))
    return tuning


def _measure(program: Any, target: str, extra_flags: list[str], driver: str, candidates: dict[str, tuple[str, ...]],
             repeats: int, compile_timeout_s: float, run_timeout_s: float) -> Tuning:
    from evoforge.hostlock import MeasurementLock
    from evoforge.mlir.iree_runner import VariantFailure, Worker, compile_program, run_program, time_round_robin

    inputs = _timing_inputs(program)
    vmfbs: dict[str, bytes] = {}
    rejected: dict[str, str] = {}
    with Worker() as worker:
        reference: list[np.ndarray] = []
        for name, flags in {DEFAULT_SET: (), **candidates}.items():
            try:
                vmfb = compile_program(program.text, input_type=program.input_type, target=target,
                                       extra_flags=[*extra_flags, *flags], timeout_s=compile_timeout_s)
                outputs = run_program(vmfb, [inputs], worker=worker, driver=driver, function=program.entry,
                                      timeout_s=run_timeout_s, check_finite=False)[0]
            except VariantFailure as exc:
                if name == DEFAULT_SET:
                    raise
                rejected[name] = str(exc)
                continue
            if name == DEFAULT_SET:
                reference = outputs
            elif not _same_outputs(reference, outputs):
                rejected[name] = "its outputs differ from those of IREE's defaults beyond float rounding"
                continue
            vmfbs[name] = vmfb
        names = list(vmfbs)
        with MeasurementLock():
            times = worker.call(time_round_robin, [vmfbs[n] for n in names], driver, program.entry, inputs, repeats,
                                timeout_s=run_timeout_s * (repeats + 1) * len(names))
    by_name = dict(zip(names, times))
    ratios = paired_ratios(by_name)
    chosen = _choose_by_ratio(ratios)
    return Tuning(chosen, candidates.get(chosen, ()), {n: 1000 * statistics.median(t) for n, t in by_name.items()}, rejected,
                  target, tuple(extra_flags), ratios)


def _timing_inputs(program: Any) -> list[np.ndarray]:
    """One call's inputs from the program's signature: standard normal floats, zero integers
    (a valid index for any gather)."""
    rng = np.random.default_rng(0)
    return [rng.standard_normal(spec.shape).astype(spec.dtype) if np.dtype(spec.dtype).kind == "f"
            else np.zeros(spec.shape, dtype=spec.dtype) for spec in program.inputs]


def _same_outputs(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if x.shape != y.shape:
            return False
        if x.dtype.kind == "f":
            scale = max(float(np.max(np.abs(x))) if x.size else 0.0, 1e-6)
            if not np.allclose(x, y, rtol=1e-3, atol=1e-3 * scale, equal_nan=True):
                return False
        elif not np.array_equal(x, y):
            return False
    return True
