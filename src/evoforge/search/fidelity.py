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
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from evoforge.errors import ConfigError
from evoforge.pareto import Objective, hv_contributions, non_dominated_sort, to_min_matrix, violation
from evoforge.search.evaluation import Evaluation

PROMOTION_RULES = ("top", "front")
"""``top``: the best ``ceil(n / eta)`` by non-dominated rank, ties broken by hypervolume
contribution. ``front``: of those, only the rung's non-dominated ones (fewer full evaluations
when the screening front is small)."""

SCHEDULES = ("asynchronous", "synchronous")
"""When candidates are promoted: as screenings arrive (the default), or once their rung is complete."""


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

    def ranked(self, keys: Sequence[str], results: Mapping[str, Evaluation], objectives: Sequence[Objective]) -> tuple[list[str], set[str]]:
        """(the OK ones of ``keys``, best first: by non-dominated rank, infeasible after feasible,
        ties broken by hypervolume contribution; those of them on the first front)."""
        ok = [k for k in keys if results[k].ok]
        if not ok:
            return [], set()
        F = to_min_matrix(objectives, [results[k].objectives for k in ok])
        cv = np.array([violation(results[k].constraints) for k in ok])
        fronts = non_dominated_sort(F, cv)
        finite = F[np.all(np.isfinite(F), axis=1)]
        reference = finite.max(axis=0) + 0.1 * np.ptp(finite, axis=0) + 1e-9 if len(finite) else np.ones(F.shape[1])
        order: list[int] = []
        for front in fronts:
            contribution = hv_contributions(F[front], reference)
            order.extend(int(i) for i in front[np.argsort(-contribution, kind="stable")])
        return [ok[i] for i in order], {ok[int(i)] for i in fronts[0]}

    def _chosen(self, keys: Sequence[str], results: Mapping[str, Evaluation], objectives: Sequence[Objective], share: int) -> list[str]:
        """The best ``share`` of ``keys`` by `ranked`, best first (only first-front ones under ``front``)."""
        order, first = self.ranked(keys, results, objectives)
        chosen = order[: max(share, 0)]
        return [k for k in chosen if k in first] if self.promote == "front" else chosen

    def promoted(self, keys: Sequence[str], results: Mapping[str, Evaluation], objectives: Sequence[Objective], count: int) -> list[str]:
        """Which of ``keys`` (all evaluated in ``results`` at one rung) go on, at most ``count``,
        in ``keys`` order. Failed evaluations never do; infeasible ones rank after feasible ones."""
        picked = set(self._chosen(keys, results, objectives, min(count, math.ceil(len(keys) / self.eta))))
        return [k for k in keys if k in picked]

    def promote_more(
        self, keys: Sequence[str], results: Mapping[str, Evaluation], objectives: Sequence[Objective], cap: int,
        already: Sequence[str], complete: bool,
    ) -> list[str]:
        """The asynchronous schedule's next promotions from a rung whose members are ``keys``, of
        which those in ``results`` are screened: while the rung is incomplete, the best
        ``floor(d / eta)`` of the ``d`` done; once ``complete``, the synchronous choice. Returns
        the ones of those not in ``already``, best first, so that ``already`` plus them stays
        within ``cap`` (the rung's share of the generation's full evaluations)."""
        done = [k for k in keys if k in results]
        share = math.ceil(len(keys) / self.eta) if complete else len(done) // self.eta
        taken = set(already)
        new = [k for k in self._chosen(done, results, objectives, min(share, cap)) if k not in taken]
        return new[: max(cap - len(taken), 0)]
