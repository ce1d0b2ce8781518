"""The Pareto front of a run: a query over stored evaluations, not separate state."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from evoforge.errors import ConfigError
from evoforge.genome import Genome, genome_from_json
from evoforge.pareto import Objective, first_front_mask, hypervolume, knee_point, to_min_matrix, violation
from evoforge.search.evaluation import Evaluation

if TYPE_CHECKING:
    import pandas

    from evoforge.store.base import RunStore


@dataclasses.dataclass(frozen=True)
class Member:
    """One front member. ``id`` is its evaluation's 1-based sequence number in the run, stable
    across queries (what ``evoforge export --id`` takes)."""

    id: int
    key: str
    genome: Genome
    evaluation: Evaluation
    feasible: bool

    @property
    def objectives(self) -> dict[str, float]:
        return self.evaluation.objectives


def feasible_hypervolume(
    evaluations: Iterable[Evaluation], objectives: Sequence[Objective], reference: np.ndarray | None
) -> float:
    """Hypervolume of every successful, feasible evaluation (their non-dominated set) against
    ``reference`` (minimization space); 0 without a reference or a feasible evaluation. Against
    a task's fixed reference it compares runs of different algorithms directly."""
    ok = [e.objectives for e in evaluations if e.ok and violation(e.constraints) <= 0]
    if not ok or reference is None:
        return 0.0
    F = to_min_matrix(objectives, ok)
    return hypervolume(F[first_front_mask(F)], reference)


def parse_pick_rule(rule: str) -> tuple[str | None, dict[str, float]]:
    """``(minimize, bounds)`` of a `Front.pick_rule` rule; `ConfigError` names a bad part."""
    minimize: str | None = None
    bounds: dict[str, float] = {}
    for part in (p.strip() for p in rule.split(",")):
        if not part:
            continue
        name, sep, value = (x.strip() for x in part.partition("="))
        if not sep or not name or not value:
            raise ConfigError(f"cannot read {part!r} in pick rule {rule!r}; "
                              "write max_<objective>=v, min_<objective>=v or minimize=<objective>")
        if name == "minimize":
            if minimize is not None:
                raise ConfigError(f"pick rule {rule!r} names minimize twice; keep one")
            minimize = value
            continue
        try:
            bounds[name] = float(value)
        except ValueError:
            raise ConfigError(f"{name}={value!r} in pick rule {rule!r} is not a number") from None
    return minimize, bounds


class Front(Sequence[Member]):
    """Non-dominated feasible members, best first by the first objective. When no evaluation is
    feasible it holds the least-violating ones instead (``feasible`` is then False)."""

    def __init__(self, members: Sequence[Member], objectives: Sequence[Objective], *, feasible: bool) -> None:
        self.members = list(members)
        self.objectives = tuple(objectives)
        self.feasible = feasible

    @classmethod
    def from_evaluations(
        cls,
        evaluations: Mapping[str, Evaluation],
        genomes: Mapping[str, Genome],
        objectives: Sequence[Objective],
    ) -> Front:
        """The front of ``evaluations`` (insertion order defines member ids)."""
        ids = {key: i + 1 for i, key in enumerate(evaluations)}
        ok = [(k, e) for k, e in evaluations.items() if e.ok]
        if not ok:
            return cls([], objectives, feasible=False)
        cv = np.array([violation(e.constraints) for _, e in ok])
        feasible = bool(np.any(cv <= 0))
        pool = [i for i in range(len(ok)) if (cv[i] <= 0 if feasible else cv[i] == cv.min())]
        F = to_min_matrix(objectives, [ok[i][1].objectives for i in pool])
        best = [pool[i] for i in np.flatnonzero(first_front_mask(F))]
        best.sort(key=lambda i: (objectives[0].to_min(ok[i][1].objectives[objectives[0].name]), ids[ok[i][0]]))
        members = [Member(ids[ok[i][0]], ok[i][0], genomes[ok[i][0]], ok[i][1], cv[i] <= 0) for i in best]
        return cls(members, objectives, feasible=feasible)

    @classmethod
    def from_store(cls, store: RunStore, objectives: Sequence[Objective]) -> Front:
        evaluations = store.evaluations()
        keys = [k for k, e in evaluations.items() if e.ok]
        return cls.from_evaluations(evaluations, {k: genome_from_json(store.genome(k)) for k in keys}, objectives)

    def __len__(self) -> int:
        return len(self.members)

    def __iter__(self) -> Iterator[Member]:
        return iter(self.members)

    def __getitem__(self, index: int) -> Member:  # type: ignore[override]
        return self.members[index]

    def by_id(self, member_id: int) -> Member:
        for m in self.members:
            if m.id == member_id:
                return m
        valid = ", ".join(str(m.id) for m in self.members) or "(none)"
        raise ConfigError(f"no front member with id {member_id}; front ids: {valid}")

    def pick(self, minimize: str | None = None, **bounds: float) -> Member:
        """The member minimizing (or, for maximized objectives, maximizing) ``minimize`` among
        those within ``bounds`` (``max_<objective>=v`` / ``min_<objective>=v``); with no
        ``minimize``, the knee point of those members."""
        names = [o.name for o in self.objectives]
        candidates = list(self.members)
        for bound, limit in bounds.items():
            kind, _, name = bound.partition("_")
            if kind not in ("max", "min") or name not in names:
                raise ConfigError(f"unknown bound {bound!r}; use max_<objective> or min_<objective> with objectives {names}")
            sign = 1 if kind == "max" else -1
            candidates = [m for m in candidates if sign * m.objectives[name] <= sign * limit]
        if not candidates:
            raise ConfigError(f"no front member satisfies {bounds}; relax the bounds")
        if minimize is None:
            F = to_min_matrix(self.objectives, [m.objectives for m in candidates])
            return candidates[knee_point(F)]
        if minimize not in names:
            raise ConfigError(f"cannot minimize {minimize!r}; objectives are {names}")
        objective = self.objectives[names.index(minimize)]
        return min(candidates, key=lambda m: (objective.to_min(m.objectives[minimize]), m.id))

    def pick_rule(self, rule: str) -> Member:
        """`pick` from a rule written as text: comma-separated ``max_<objective>=v``,
        ``min_<objective>=v`` and at most one ``minimize=<objective>`` (no ``minimize``: the
        knee point), e.g. ``"max_quality_drop=1,minimize=latency_ratio"``."""
        minimize, bounds = parse_pick_rule(rule)
        return self.pick(minimize, **bounds)

    def to_records(self) -> list[dict[str, Any]]:
        """One flat dict per member: id, key, objectives, constraints and scalar metrics."""
        rows = []
        for m in self.members:
            row: dict[str, Any] = {"id": m.id, "key": m.key}
            row.update(m.evaluation.objectives)
            row.update({f"constraint:{k}": v for k, v in m.evaluation.constraints.items()})
            row.update({k: v for k, v in m.evaluation.metrics.items() if isinstance(v, (int, float, str, bool))})
            rows.append(row)
        return rows

    def to_frame(self) -> pandas.DataFrame:
        """`to_records` as a pandas DataFrame indexed by member id."""
        import pandas

        frame = pandas.DataFrame(self.to_records())
        return frame.set_index("id") if len(frame) else frame
