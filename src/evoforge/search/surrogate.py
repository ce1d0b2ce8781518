"""A density-ratio model of which genome settings lead to good results (the idea of TPE,
Bergstra et al. 2011, with MOTPE's split by non-dominated rank), used to rank candidate
offspring before any of them is evaluated.

Pure numpy over named features (`evoforge.search.domain.Domain.search_features`): a feature
whose values are numbers gets a Parzen density (gaussian kernels plus a uniform prior over the
observed range), any other feature a smoothed frequency table; a candidate's score is the sum
over features of log(l / g), with ``l`` fitted to the good evaluations and ``g`` to the rest.
A feature a genome lacks (a pruning ratio without a pruning stage) contributes nothing; its
absence shows in the categorical features the domain gives (the stage sequence).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from evoforge.pareto import hv_contributions, non_dominated_sort

Features = Mapping[str, float | str]

GOOD_SHARE = 0.25
"""The share of evaluations (at least one) that counts as good."""
BANDWIDTH = 0.15
"""Kernel width as a share of a numeric feature's observed range."""


def good_mask(F: np.ndarray, cv: np.ndarray, share: float = GOOD_SHARE) -> np.ndarray:
    """True for the best ``ceil(share * n)`` rows: whole non-dominated fronts in order (failed
    and infeasible rows rank last), the front that overflows cut by hypervolume contribution."""
    n = len(F)
    want = max(1, math.ceil(share * n))
    good = np.zeros(n, dtype=bool)
    finite = np.all(np.isfinite(F), axis=1)
    for front in non_dominated_sort(F, cv):
        if good.sum() + len(front) <= want:
            good[front] = True
            continue
        room = want - int(good.sum())
        usable = front[finite[front]]
        if room > 0 and len(usable):
            ref = F[finite].max(axis=0) + 1e-9 + 0.1 * np.ptp(F[finite], axis=0)
            order = np.argsort(-hv_contributions(F[usable], ref), kind="stable")
            good[usable[order[:room]]] = True
        break
    return good


class DensityRatio:
    """Fitted once to ``good`` and ``bad`` feature dicts; `score` ranks candidates (higher is
    more like the good ones). Deterministic: no randomness, order-independent per feature."""

    def __init__(self, good: Sequence[Features], bad: Sequence[Features]) -> None:
        self._good = list(good)
        self._bad = list(bad)
        names = sorted({name for f in self._good + self._bad for name in f})
        self._numeric = {n for n in names if all(_is_number(f[n]) for f in self._good + self._bad if n in f)}
        self._names = names

    def score(self, candidate: Features) -> float:
        total = 0.0
        for name in self._names:
            if name not in candidate:
                continue
            value = candidate[name]
            good = [f[name] for f in self._good if name in f]
            bad = [f[name] for f in self._bad if name in f]
            if name in self._numeric and _is_number(value):
                x, good_x, bad_x = float(value), [float(v) for v in good], [float(v) for v in bad]
                lo, hi = min(x, *good_x, *bad_x), max(x, *good_x, *bad_x)
                total += math.log(_parzen(x, good_x, lo, hi)) - math.log(_parzen(x, bad_x, lo, hi))
            else:
                levels = len({str(v) for v in [*good, *bad, value]})
                total += math.log(_frequency(str(value), good, levels)) - math.log(_frequency(str(value), bad, levels))
        return total


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _parzen(x: float, values: Sequence[float], lo: float, hi: float) -> float:
    """Mixture of one gaussian per value and a uniform prior over [lo, hi] (weight 1/(n+1))."""
    span = hi - lo
    if span <= 0:
        return 1.0
    h = BANDWIDTH * span
    n = len(values)
    kernels = sum(math.exp(-0.5 * ((x - v) / h) ** 2) / (h * math.sqrt(2 * math.pi)) for v in values)
    return (kernels + 1.0 / span) / (n + 1)


def _frequency(value: str, values: Sequence[object], levels: int) -> float:
    """Laplace-smoothed share of ``value`` among ``values`` over ``levels`` possible values."""
    return (sum(str(v) == value for v in values) + 1.0) / (len(values) + levels)
