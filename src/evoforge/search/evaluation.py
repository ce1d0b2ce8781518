"""The result of evaluating one genome: a recorded value, whether it succeeded or not."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from enum import Enum
from typing import Any

from evoforge.pareto import Objective


class Status(str, Enum):
    """Outcome of an evaluation. Only OK results carry usable objective values."""

    OK = "ok"
    FAILED = "failed"  # the evaluator raised, or returned missing / non-finite values
    TIMEOUT = "timeout"  # the evaluation ran past its time limit and its worker was killed
    CRASHED = "crashed"  # the worker process died (segfault, abort, os._exit, lost node)


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """Objective and constraint values (raw, by name; constraint value <= 0 is feasible),
    status with a reason, wall-clock duration, artifact paths (relative to the run directory)
    and free-form JSON metrics."""

    status: Status
    objectives: dict[str, float] = dataclasses.field(default_factory=dict)
    constraints: dict[str, float] = dataclasses.field(default_factory=dict)
    reason: str = ""
    duration_s: float = 0.0
    metrics: dict[str, Any] = dataclasses.field(default_factory=dict)
    artifacts: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status is Status.OK

    @classmethod
    def failure(cls, status: Status, reason: str, duration_s: float = 0.0) -> Evaluation:
        return cls(status=status, reason=reason[:2000], duration_s=duration_s)

    def to_json(self) -> str:
        data = dataclasses.asdict(self)
        data["status"] = self.status.value
        return json.dumps(data, sort_keys=True, default=_json_default)

    @classmethod
    def from_json(cls, text: str) -> Evaluation:
        data = json.loads(text)
        data["status"] = Status(data["status"])
        return cls(**data)

    def checked(self, objectives: Sequence[Objective], constraints: Sequence[str]) -> Evaluation:
        """This evaluation, or a FAILED one when an OK result lacks an objective or constraint
        or holds a non-finite value (NaN/inf are failures, never front members)."""
        if not self.ok:
            return self
        for name, kind, values in [(o.name, "objective", self.objectives) for o in objectives] + [
            (c, "constraint", self.constraints) for c in constraints
        ]:
            value = values.get(name)
            if value is None:
                return dataclasses.replace(self, status=Status.FAILED, reason=f"{kind} {name!r} missing from the result")
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                return dataclasses.replace(self, status=Status.FAILED, reason=f"{kind} {name!r} is not finite ({value!r})")
        return self


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")
