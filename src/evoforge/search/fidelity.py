"""Multi-fidelity screening: successive halving inside each generation, with promotion by
non-dominated rank (the multi-objective rule of MOASHA, Schmucker et al. 2021).

A generation that will get ``slots`` full evaluations asks the algorithm for
``slots * eta ** (len(rungs) - 1)`` candidates. All of them are evaluated at the first rung's
fraction of full fidelity (a domain decides what a fraction means: compress scales the training
epochs and the validation set); the best ``ceil(n / eta)`` by the promotion rule go on to the
next rung, and so on; the last rung is full fidelity, and only its evaluations reach survival,
the front and every summary.

The ``synchronous`` schedule promotes once a whole rung is screened. The ``asynchronous`` one
promotes as screenings arrive (ASHA, Li et al. 2020): whenever a screening completes, the best
``floor(d / eta)`` of the ``d`` screenings done so far go on, so full evaluations start while the
rung is still being screened; when the rung is complete, the synchronous choice fills what is
left of its promotions. A candidate once promoted stays promoted. Pure data and numpy: no
evaluation happens here.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import numpy as np

from evoforge.errors import ConfigError
from evoforge.pareto import Objective, hv_contributions, non_dominated_sort, to_min_matrix, violation
from evoforge.search.evaluation import Evaluation

PROMOTION_RULES = ("top", "front", "gain")
"""``top``: the best ``ceil(n / eta)`` by non-dominated rank, ties broken by hypervolume
contribution. ``front``: of those, only the rung's non-dominated ones (fewer full evaluations
when the screening front is small). ``gain``: the best by how much hypervolume each would add to
the run's feasible full evaluations, after correcting the screenings by the rung's measured
bias (`PromotionContext`); ties, and runs with no such evaluations yet, fall back to ``top``."""

MIN_CALIBRATION_PAIRS = 3
"""Candidates evaluated both at a rung and in full that a rung's bias correction needs; with
fewer, screenings are taken as they are."""

SCHEDULES = ("asynchronous", "synchronous")
"""When candidates are promoted: as screenings arrive (the default), or once their rung is complete."""


@dataclasses.dataclass(frozen=True)
class PromotionContext:
    """What the ``gain`` rule judges one rung's screenings against: the run's feasible full-fidelity
    points (minimization space, one row each), the hypervolume reference (None: derived from the
    points), and the rung's bias: the median full-minus-screened difference of each objective
    (minimization space) and of each constraint over the candidates evaluated both ways. A
    screening is corrected by adding the bias, so a rung whose short fine-tunes judge quality
    harshly does not count candidates infeasible that full training makes feasible."""

    front: np.ndarray
    reference: np.ndarray | None
    objective_shift: np.ndarray
    constraint_shift: Mapping[str, float]

    @classmethod
    def measure(
        cls, screenings: Mapping[str, Evaluation], full: Mapping[str, Evaluation], objectives: Sequence[Objective],
        reference: np.ndarray | None, exclude: Collection[str] = (),
    ) -> PromotionContext:
        """From one rung's ``screenings`` and the run's ``full`` evaluations, leaving out the
        candidates in ``exclude`` (the current batch, so that the context a generation starts
        with is the one a resumed run rebuilds)."""
        done = {k: e for k, e in full.items() if k not in exclude and e.ok}
        feasible = [e.objectives for e in done.values() if violation(e.constraints) == 0]
        front = to_min_matrix(objectives, feasible) if feasible else np.empty((0, len(objectives)))
        front = front[np.all(np.isfinite(front), axis=1)]
        if len(front):
            front = front[non_dominated_sort(front)[0]]
        pairs = [(s, done[k]) for k, s in screenings.items() if k in done and s.ok]
        shift = np.zeros(len(objectives))
        constraint_shift: dict[str, float] = {}
        if len(pairs) >= MIN_CALIBRATION_PAIRS:
            low = to_min_matrix(objectives, [s.objectives for s, _ in pairs])
            high = to_min_matrix(objectives, [f.objectives for _, f in pairs])
            difference = high - low
            for j in range(len(objectives)):
                column = difference[:, j][np.isfinite(difference[:, j])]
                shift[j] = float(np.median(column)) if len(column) else 0.0
            for name in pairs[0][0].constraints:
                values = [f.constraints[name] - s.constraints[name] for s, f in pairs
                          if name in f.constraints and math.isfinite(f.constraints[name]) and math.isfinite(s.constraints[name])]
                if values:
                    constraint_shift[name] = float(np.median(values))
        return cls(front, reference, shift, constraint_shift)

    def violation(self, evaluation: Evaluation) -> float:
        """A screening's constraint violation once the rung's bias is added to its constraints."""
        return violation({n: c + self.constraint_shift.get(n, 0.0) for n, c in evaluation.constraints.items()})

    def gains(self, F: np.ndarray) -> np.ndarray:
        """How much hypervolume each corrected row of ``F`` (screenings, minimization space) would
        add to the front on its own."""
        shifted = F + self.objective_shift
        finite = np.vstack([self.front, shifted[np.all(np.isfinite(shifted), axis=1)]])
        if self.reference is not None:
            reference = self.reference
        elif len(finite):
            reference = finite.max(axis=0) + 0.1 * np.ptp(finite, axis=0) + 1e-9
        else:
            return np.zeros(len(F))
        out = np.zeros(len(F))
        for i, row in enumerate(shifted):
            if np.all(np.isfinite(row)):
                out[i] = hv_contributions(np.vstack([self.front, row]), reference)[-1]
        return out


@dataclasses.dataclass(frozen=True)
class Fidelity:
    """The rungs (increasing fractions of full fidelity, ending at 1), the reduction factor
    ``eta``, the promotion rule and the promotion schedule."""

    rungs: tuple[float, ...] = (0.25, 1.0)
    eta: int = 3
    promote: str = "top"
    schedule: str = "asynchronous"

    def __post_init__(self) -> None:
        rungs = tuple(float(r) for r in self.rungs)
        object.__setattr__(self, "rungs", rungs)
        if len(rungs) < 2 or rungs[-1] != 1.0 or any(not 0 < r <= 1 for r in rungs) or list(rungs) != sorted(set(rungs)):
            raise ConfigError(f"rungs {list(rungs)} are invalid; give increasing fractions in (0, 1] that end at 1, e.g. 0.25,1")
        if isinstance(self.eta, bool) or not isinstance(self.eta, int) or self.eta < 2:
            raise ConfigError(f"eta={self.eta!r} is invalid; use an integer >= 2 (3 keeps a third at each rung)")
        if self.promote not in PROMOTION_RULES:
            raise ConfigError(f"unknown promotion rule {self.promote!r}; valid: {', '.join(PROMOTION_RULES)}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"unknown promotion schedule {self.schedule!r}; valid: {', '.join(SCHEDULES)}")

    @classmethod
    def parse(
        cls, rungs: str | Sequence[float], eta: int | None = None, promote: str | None = None, schedule: str | None = None
    ) -> Fidelity:
        """From the run settings (``rungs`` as "0.25,1" or a list)."""
        if isinstance(rungs, str):
            try:
                values = tuple(float(r) for r in rungs.split(","))
            except ValueError:
                raise ConfigError(f"rungs {rungs!r} are invalid; give fractions separated by commas, e.g. 0.25,1") from None
        else:
            values = tuple(rungs)
        return cls(values, 3 if eta is None else eta, promote or "top", schedule or "asynchronous")

    @property
    def widening(self) -> int:
        """Candidates screened per full evaluation."""
        return int(self.eta ** (len(self.rungs) - 1))

    def to_dict(self) -> dict[str, Any]:
        return {"rungs": list(self.rungs), "eta": self.eta, "promote": self.promote, "schedule": self.schedule}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Fidelity:
        """Runs stored before schedules existed promoted synchronously."""
        return cls(tuple(data["rungs"]), int(data["eta"]), str(data["promote"]), str(data.get("schedule", "synchronous")))

    @property
    def asynchronous(self) -> bool:
        return self.schedule == "asynchronous"

    def ranked(
        self, keys: Sequence[str], results: Mapping[str, Evaluation], objectives: Sequence[Objective],
        context: PromotionContext | None = None,
    ) -> tuple[list[str], set[str]]:
        """(the OK ones of ``keys``, best first: by non-dominated rank, infeasible after feasible,
        ties broken by hypervolume contribution; those of them on the first front). Under the
        ``gain`` rule with a ``context``, feasibility is judged on the corrected screenings and the
        feasible ones are ordered by their hypervolume gain first."""
        ok = [k for k in keys if results[k].ok]
        if not ok:
            return [], set()
        F = to_min_matrix(objectives, [results[k].objectives for k in ok])
        context = context if self.promote == "gain" else None
        cv = np.array([violation(results[k].constraints) if context is None else context.violation(results[k]) for k in ok])
        fronts = non_dominated_sort(F, cv)
        finite = F[np.all(np.isfinite(F), axis=1)]
        reference = finite.max(axis=0) + 0.1 * np.ptp(finite, axis=0) + 1e-9 if len(finite) else np.ones(F.shape[1])
        order: list[int] = []
        for front in fronts:
            contribution = hv_contributions(F[front], reference)
            order.extend(int(i) for i in front[np.argsort(-contribution, kind="stable")])
        if context is not None and len(context.front):
            gains = context.gains(F)
            order.sort(key=lambda i: (cv[i] > 0, -gains[i] if cv[i] == 0 else 0.0))
        return [ok[i] for i in order], {ok[int(i)] for i in fronts[0]}

    def _chosen(
        self, keys: Sequence[str], results: Mapping[str, Evaluation], objectives: Sequence[Objective], share: int,
        context: PromotionContext | None,
    ) -> list[str]:
        """The best ``share`` of ``keys`` by `ranked`, best first (only first-front ones under ``front``)."""
        order, first = self.ranked(keys, results, objectives, context)
        chosen = order[: max(share, 0)]
        return [k for k in chosen if k in first] if self.promote == "front" else chosen

    def promoted(
        self, keys: Sequence[str], results: Mapping[str, Evaluation], objectives: Sequence[Objective], count: int,
        context: PromotionContext | None = None,
    ) -> list[str]:
        """Which of ``keys`` (all evaluated in ``results`` at one rung) go on, at most ``count``,
        in ``keys`` order. Failed evaluations never do; infeasible ones rank after feasible ones."""
        picked = set(self._chosen(keys, results, objectives, min(count, math.ceil(len(keys) / self.eta)), context))
        return [k for k in keys if k in picked]

    def promote_more(
        self, keys: Sequence[str], results: Mapping[str, Evaluation], objectives: Sequence[Objective], cap: int,
        already: Sequence[str], complete: bool, context: PromotionContext | None = None,
    ) -> list[str]:
        """The asynchronous schedule's next promotions from a rung whose members are ``keys``, of
        which those in ``results`` are screened: while the rung is incomplete, the best
        ``floor(d / eta)`` of the ``d`` done; once ``complete``, the synchronous choice. Returns
        the ones of those not in ``already``, best first, so that ``already`` plus them stays
        within ``cap`` (the rung's share of the generation's full evaluations)."""
        done = [k for k in keys if k in results]
        share = math.ceil(len(keys) / self.eta) if complete else len(done) // self.eta
        taken = set(already)
        new = [k for k in self._chosen(done, results, objectives, min(share, cap), context) if k not in taken]
        return new[: max(cap - len(taken), 0)]
