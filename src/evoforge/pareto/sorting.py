"""Non-dominated sorting (with constraint-domination), crowding distance and knee point.

All functions take an (n, m) matrix ``F`` in minimization space.
"""

from __future__ import annotations

import numpy as np


def dominates(a: np.ndarray, b: np.ndarray) -> bool:
    """True when ``a`` is no worse than ``b`` everywhere and better somewhere."""
    return bool(np.all(a <= b) and np.any(a < b))


def domination_matrix(F: np.ndarray, cv: np.ndarray | None = None) -> np.ndarray:
    """D[i, j] is True when i constraint-dominates j.

    Deb's rule: a feasible point (cv == 0) dominates an infeasible one; of two infeasible points
    the one with smaller violation dominates; two feasible points compare by Pareto dominance.
    """
    F = np.asarray(F, dtype=float)
    le = np.all(F[:, None, :] <= F[None, :, :], axis=2)
    lt = np.any(F[:, None, :] < F[None, :, :], axis=2)
    D: np.ndarray = le & lt
    if cv is not None:
        cv = np.asarray(cv, dtype=float)
        feas = cv <= 0
        both_feasible = feas[:, None] & feas[None, :]
        by_violation = cv[:, None] < cv[None, :]
        D = np.where(both_feasible, D, by_violation)
    return D


def non_dominated_sort(F: np.ndarray, cv: np.ndarray | None = None) -> list[np.ndarray]:
    """Fronts as arrays of row indices, best first (fast non-dominated sort, Deb et al. 2002)."""
    n = len(F)
    if n == 0:
        return []
    D = domination_matrix(F, cv)
    counts = D.sum(axis=0)  # how many dominate each point
    fronts: list[np.ndarray] = []
    current = np.flatnonzero(counts == 0)
    assigned = np.zeros(n, dtype=bool)
    while current.size:
        fronts.append(current)
        assigned[current] = True
        counts = counts - D[current].sum(axis=0)
        current = np.flatnonzero((counts == 0) & ~assigned)
    return fronts


def first_front_mask(F: np.ndarray) -> np.ndarray:
    """Boolean mask of the non-dominated rows (duplicates of a non-dominated row included);
    fast for large sets."""
    import moocore

    F = np.asarray(F, dtype=float)
    if len(F) == 0:
        return np.zeros(0, dtype=bool)
    finite = np.all(np.isfinite(F), axis=1)
    mask = np.zeros(len(F), dtype=bool)
    if finite.any():
        mask[finite] = moocore.is_nondominated(F[finite], keep_weakly=True)
    else:
        mask[non_dominated_sort(F)[0]] = True
    return mask


def ranks(F: np.ndarray, cv: np.ndarray | None = None) -> np.ndarray:
    """Front index (0 = non-dominated) of every row."""
    out = np.empty(len(F), dtype=int)
    for r, front in enumerate(non_dominated_sort(F, cv)):
        out[front] = r
    return out


def crowding_distance(F: np.ndarray) -> np.ndarray:
    """NSGA-II crowding distance of each row within one front; boundary points get +inf."""
    F = np.asarray(F, dtype=float)
    n, m = F.shape
    if n <= 2:
        return np.full(n, np.inf)
    dist = np.zeros(n)
    for j in range(m):
        order = np.argsort(F[:, j], kind="stable")
        col = F[order, j]
        span = col[-1] - col[0]
        dist[order[0]] = dist[order[-1]] = np.inf
        if span > 0 and np.isfinite(span):
            dist[order[1:-1]] += (col[2:] - col[:-2]) / span
    return dist


def knee_point(F: np.ndarray) -> int:
    """Index of the knee of a front: after scaling each objective to [0, 1] between the front's
    ideal and nadir points, the point farthest below the hyperplane through the extremes
    (sum of scaled values = 1). Ties go to the lowest index."""
    F = np.asarray(F, dtype=float)
    if len(F) == 0:
        raise ValueError("knee_point needs at least one point")
    lo, hi = F.min(axis=0), F.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    scaled = (F - lo) / span
    return int(np.argmin(scaled.sum(axis=1)))
