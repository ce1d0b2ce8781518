"""Exact hypervolume and exclusive contributions (minimization), backed by moocore."""

from __future__ import annotations

import numpy as np


def _inside(F: np.ndarray, ref: np.ndarray) -> np.ndarray:
    mask: np.ndarray = np.all(np.isfinite(F), axis=1) & np.all(F < ref, axis=1)
    return mask


def hypervolume(F: np.ndarray, ref: np.ndarray) -> float:
    """Volume dominated by the rows of ``F`` and bounded by ``ref``; rows not strictly better
    than ``ref`` in every objective contribute nothing."""
    import moocore

    F = np.asarray(F, dtype=float).reshape(-1, len(ref))
    ref = np.asarray(ref, dtype=float)
    pts = F[_inside(F, ref)]
    if len(pts) == 0:
        return 0.0
    return float(moocore.hypervolume(pts, ref=ref))


def hv_contributions(F: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Exclusive contribution of each row: HV(all) - HV(all without that row).

    Dominated rows, duplicated rows and rows outside ``ref`` get 0 (removing one of them loses nothing).
    """
    import moocore

    F = np.asarray(F, dtype=float).reshape(-1, len(ref))
    ref = np.asarray(ref, dtype=float)
    out = np.zeros(len(F))
    inside = np.flatnonzero(_inside(F, ref))
    if inside.size and len(ref) == 1:  # moocore needs two objectives or more
        values = F[inside, 0]
        best = np.flatnonzero(values == values.min())
        if best.size == 1:
            rest = np.delete(values, best)
            out[inside[best[0]]] = (rest.min() if rest.size else ref[0]) - values[best[0]]
    elif inside.size:
        out[inside] = moocore.hv_contributions(F[inside], ref=ref, ignore_dominated=False)
    return out
