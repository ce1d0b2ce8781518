"""Objectives with a direction, baseline normalization, and constraint violation."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np

from evoforge.errors import ConfigError, UnknownNameError

Direction = Literal["minimize", "maximize"]
NormalizeMode = Literal["none", "ratio", "delta", "relative"]


@dataclasses.dataclass(frozen=True)
class Objective:
    """A named objective. ``reference`` is the worst value (in the objective's own units)
    that still counts towards hypervolume; values beyond it contribute nothing."""

    name: str
    direction: Direction = "minimize"
    reference: float | None = None

    def __post_init__(self) -> None:
        if self.direction not in ("minimize", "maximize"):
            raise ConfigError(f"objective {self.name!r} direction {self.direction!r} must be 'minimize' or 'maximize'")

    def to_min(self, value: float) -> float:
        """The value in minimization space (maximized objectives are negated)."""
        return float(value) if self.direction == "minimize" else -float(value)


def objective_names(value: str | Sequence[str], valid: Sequence[str]) -> list[str]:
    """The objectives ``value`` names (names, or one string of comma-separated names), checked:
    at least one, each in ``valid``, none twice. Errors list the valid names."""
    listing = ", ".join(valid)
    if not isinstance(value, (str, Sequence)):
        raise ConfigError(f"objectives must be a list of names, got {value!r}; valid names: {listing}")
    names = [n.strip() for n in value.split(",")] if isinstance(value, str) else list(value)
    if not names:
        raise ConfigError(f"give at least one objective; valid names: {listing}")
    for name in names:
        if name not in valid:
            raise UnknownNameError(f"unknown objective {name!r}; valid names: {listing}")
    repeated = next((n for i, n in enumerate(names) if n in names[:i]), None)
    if repeated is not None:
        raise ConfigError(f"objective {repeated!r} is listed twice; give each objective once")
    return names


def check_limit(name: str, value: object) -> None:
    """Raise `ConfigError` unless ``value`` is None (no constraint) or a finite number >= 0 (a
    constraint's limit, such as a quality drop)."""
    if value is None:
        return
    if not (isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < math.inf):
        raise ConfigError(f"{name} must be a number >= 0 (or None: no constraint), got {value!r}")


def normalize(value: float, baseline: float, mode: NormalizeMode) -> float:
    """Express ``value`` against ``baseline``: ratio v/b, delta v-b, relative (v-b)/|b|."""
    if mode == "none":
        return float(value)
    if mode == "delta":
        return float(value - baseline)
    if baseline == 0:
        raise ConfigError(f"cannot normalize by a baseline of 0 with mode {mode!r}; use mode 'delta' or 'none'")
    if mode == "ratio":
        return float(value / baseline)
    if mode == "relative":
        return float((value - baseline) / abs(baseline))
    raise ConfigError(f"unknown normalization {mode!r}; valid: none, ratio, delta, relative")


def to_min_matrix(objectives: Sequence[Objective], values: Sequence[Mapping[str, float]]) -> np.ndarray:
    """Rows of raw objective dicts -> an (n, m) minimization matrix; missing or NaN -> +inf."""
    out = np.full((len(values), len(objectives)), np.inf)
    for i, row in enumerate(values):
        for j, obj in enumerate(objectives):
            v = row.get(obj.name)
            if v is not None and math.isfinite(v):
                out[i, j] = obj.to_min(v)
    return out


def reference_point(objectives: Sequence[Objective]) -> np.ndarray | None:
    """The hypervolume reference in minimization space, or None if any objective lacks one."""
    if any(o.reference is None for o in objectives):
        return None
    return np.array([o.to_min(o.reference) for o in objectives if o.reference is not None])


def violation(constraints: Mapping[str, float] | Sequence[float]) -> float:
    """Total constraint violation: sum of max(0, c) (c <= 0 is feasible); NaN counts as infinite."""
    vals = constraints.values() if isinstance(constraints, Mapping) else constraints
    total = 0.0
    for c in vals:
        if c is None or math.isnan(c):
            return math.inf
        total += max(0.0, float(c))
    return total
