"""The Pareto front of a run: a query over stored evaluations, not separate state."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
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
    across queries (what ``evoforge export --id`` takes). ``held_out``: the numbers the domain
    measured again when the run ended (`Domain.finalize`: test quality, re-timed ratios), empty
    before that."""

    id: int
    key: str
    genome: Genome
    evaluation: Evaluation
    feasible: bool
    held_out: Mapping[str, float] = dataclasses.field(default_factory=dict)

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


def _finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def front_keys(evaluations: Mapping[str, Evaluation], objectives: Sequence[Objective]) -> tuple[list[str], bool]:
    """The keys of `Front.from_evaluations`'s members, in its order, and whether they are feasible."""
    order = {key: i for i, key in enumerate(evaluations)}
    ok = [(k, e) for k, e in evaluations.items() if e.ok]
    if not ok:
        return [], False
    cv = np.array([violation(e.constraints) for _, e in ok])
    feasible = bool(np.any(cv <= 0))
    pool = [i for i in range(len(ok)) if (cv[i] <= 0 if feasible else cv[i] == cv.min())]
    F = to_min_matrix(objectives, [ok[i][1].objectives for i in pool])
    best = [pool[i] for i in np.flatnonzero(first_front_mask(F))]
    best.sort(key=lambda i: (objectives[0].to_min(ok[i][1].objectives[objectives[0].name]), order[ok[i][0]]))
    return [ok[i][0] for i in best], feasible


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
        held_out: Mapping[str, Mapping[str, float]] | None = None,
    ) -> Front:
        """The front of ``evaluations`` (insertion order defines member ids); ``held_out``: the
        run's end-of-run numbers by evaluation key."""
        ids = {key: i + 1 for i, key in enumerate(evaluations)}
        keys, feasible = front_keys(evaluations, objectives)
        numbers = held_out or {}
        members = [Member(ids[key], key, genomes[key], evaluations[key], violation(evaluations[key].constraints) <= 0,
                          dict(numbers.get(key) or {})) for key in keys]
        return cls(members, objectives, feasible=feasible)

    @classmethod
    def from_store(cls, store: RunStore, objectives: Sequence[Objective]) -> Front:
        evaluations = store.evaluations()
        keys = [k for k, e in evaluations.items() if e.ok]
        genomes = {k: genome_from_json(store.genome(k)) for k in keys}
        return cls.from_evaluations(evaluations, genomes, objectives, store.meta("final", {}) or {})

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
        those within ``bounds`` (``max_<name>=v`` / ``min_<name>=v``); with no ``minimize``, the
        knee point of those members. A name is an objective, or ``test_<objective>`` for the
        value the run measured again when it ended (`Member.held_out`, e.g. compress's re-timed
        ``test_latency_ratio``)."""
        names = self.pick_names()
        candidates = list(self.members)
        for bound, limit in bounds.items():
            kind, _, name = bound.partition("_")
            if kind not in ("max", "min") or name not in names:
                raise ConfigError(f"unknown bound {bound!r}; use max_<name> or min_<name> with names {names}")
            sign = 1 if kind == "max" else -1
            value = self._value_of(name)
            candidates = [m for m in candidates if sign * value(m) <= sign * limit]
        if not candidates:
            raise ConfigError(f"no front member satisfies {bounds}; relax the bounds")
        if minimize is None:
            F = to_min_matrix(self.objectives, [m.objectives for m in candidates])
            return candidates[knee_point(F)]
        if minimize not in names:
            raise ConfigError(f"cannot minimize {minimize!r}; names are {names}")
        value = self._value_of(minimize)
        objective_names = [o.name for o in self.objectives]
        base = minimize if minimize in objective_names else minimize.removeprefix("test_")
        objective = self.objectives[objective_names.index(base)]
        return min(candidates, key=lambda m: (objective.to_min(value(m)), m.id))

    def pick_names(self) -> list[str]:
        """What `pick` can bound and minimize: the objectives, then ``test_<objective>`` for each
        objective that some member's held-out numbers hold."""
        names = [o.name for o in self.objectives]
        return names + [f"test_{n}" for n in names if any(n in m.held_out for m in self.members)]

    def _value_of(self, name: str) -> Callable[[Member], float]:
        """Reads ``name`` (an objective or ``test_<objective>``) off a member; a `ConfigError`
        when a member lacks the held-out value."""
        if not name.startswith("test_") or name in (o.name for o in self.objectives):
            return lambda m: m.objectives[name]
        base = name.removeprefix("test_")
        missing = sorted(m.id for m in self.members if not _finite_number(m.held_out.get(base)))
        if missing:
            raise ConfigError(f"{name} is not known for front members {', '.join(map(str, missing))} (runs stored before it was "
                              f"measured, or a member that failed it); use {base}")
        return lambda m: float(m.held_out[base])

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
