"""When a search stops: evaluations, wall-clock time, generations, or hypervolume stagnation,
whichever comes first."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from typing import Any

from evoforge.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Termination:
    """Stop criteria; at least one of them must be set. Stagnation means no relative gain
    above ``stagnation_eps`` in the hypervolume of all feasible evaluations over the last
    ``stagnation_generations`` generations (the default 0.1%: on digits-cnn petra's archive keeps
    gaining a few hundredths of a percent per generation long after its front has settled)."""

    max_evaluations: int | None = None
    max_seconds: float | None = None
    max_generations: int | None = None
    stagnation_generations: int | None = None
    stagnation_eps: float = 1e-3

    def __post_init__(self) -> None:
        if not any(v is not None for v in (self.max_evaluations, self.max_seconds, self.max_generations, self.stagnation_generations)):
            raise ConfigError("a search needs a budget: set max_evaluations, max_seconds, max_generations or stagnation_generations")
        for name in ("max_evaluations", "max_seconds", "max_generations", "stagnation_generations"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(f"{name} must be positive, got {value}")
        if not 0 <= self.stagnation_eps < 1:
            raise ConfigError(f"stagnation_eps must be a relative gain in [0, 1), got {self.stagnation_eps}")

    def reason(self, *, evaluations: int, seconds: float, generations: int, hypervolumes: Sequence[float],
               reserved_s: float = 0.0) -> str | None:
        """Why the search should stop now, or None to go on; ``hypervolumes`` holds the feasible
        hypervolume after each generation, and ``reserved_s`` of the time budget are kept for
        work after the search."""
        if self.max_evaluations is not None and evaluations >= self.max_evaluations:
            return f"evaluation budget reached ({evaluations})"
        if self.max_seconds is not None and seconds + reserved_s >= self.max_seconds:
            kept = f", {reserved_s:.0f} s kept for the front's final scoring" if reserved_s >= 0.5 else ""
            return f"time budget reached ({seconds:.0f} s{kept})"
        if self.max_generations is not None and generations >= self.max_generations:
            return f"generation limit reached ({generations})"
        k = self.stagnation_generations
        if k is not None and self.plateau(hypervolumes) >= k:
            return f"hypervolume stagnated: gained under {self.stagnation_eps:.1%} in {k} generations"
        return None

    def plateau(self, hypervolumes: Sequence[float]) -> int:
        """For how many generations the last of ``hypervolumes`` (one per generation) has gained
        at most ``stagnation_eps`` (relative) on the earlier ones; generations before the first
        feasible evaluation (hypervolume 0) never count."""
        length = 0
        for back in range(1, len(hypervolumes)):
            old = hypervolumes[-back - 1]
            if old <= 0 or (hypervolumes[-1] - old) / old > self.stagnation_eps:
                break
            length = back
        return length

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}


def parse_budget(text: str | int | float) -> Termination:
    """'200' -> 200 evaluations; '90s', '30m', '2h' -> wall-clock seconds."""
    if isinstance(text, (int, float)):
        return Termination(max_evaluations=int(text))
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", str(text))
    if not match:
        raise ConfigError(f"budget {text!r} is not understood; use an evaluation count like 200 or a time like 90s, 30m, 2h")
    value, unit = float(match.group(1)), match.group(2)
    if unit:
        return Termination(max_seconds=value * _UNITS[unit])
    return Termination(max_evaluations=int(value))
