"""Real-valued variation: simulated binary crossover (SBX) and polynomial mutation (Deb)."""

from __future__ import annotations

import numpy as np


def sbx_crossover(
    a: np.ndarray, b: np.ndarray, lower: np.ndarray, upper: np.ndarray, rng: np.random.Generator,
    *, eta: float = 15.0, prob: float = 0.9, prob_var: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """Two children of parents ``a`` and ``b``; with probability ``1 - prob`` they are copies.
    Each variable is recombined with probability ``prob_var`` (bounded SBX, children swapped
    at random)."""
    c1, c2 = a.astype(float).copy(), b.astype(float).copy()
    if rng.random() > prob:
        return c1, c2
    n = len(a)
    cross = rng.random(n) < prob_var
    u = rng.random(n)
    swap = rng.random(n) < 0.5
    for i in np.flatnonzero(cross):
        y1, y2 = min(a[i], b[i]), max(a[i], b[i])
        if y2 - y1 < 1e-14:
            continue
        lo, hi = lower[i], upper[i]
        x1 = _sbx_child(y1, y2, y1 - lo, u[i], eta, minus=True)
        x2 = _sbx_child(y1, y2, hi - y2, u[i], eta, minus=False)
        x1, x2 = float(np.clip(x1, lo, hi)), float(np.clip(x2, lo, hi))
        if swap[i]:
            x1, x2 = x2, x1
        c1[i], c2[i] = x1, x2
    return c1, c2


def _sbx_child(y1: float, y2: float, room: float, u: float, eta: float, *, minus: bool) -> float:
    beta = 1.0 + 2.0 * room / (y2 - y1)
    alpha = 2.0 - beta ** -(eta + 1.0)
    if u <= 1.0 / alpha:
        betaq = (u * alpha) ** (1.0 / (eta + 1.0))
    else:
        betaq = (1.0 / (2.0 - u * alpha)) ** (1.0 / (eta + 1.0))
    spread = betaq * (y2 - y1)
    return float(0.5 * ((y1 + y2) - spread) if minus else 0.5 * ((y1 + y2) + spread))


def polynomial_mutation(
    x: np.ndarray, lower: np.ndarray, upper: np.ndarray, rng: np.random.Generator,
    *, eta: float = 20.0, prob_var: float | None = None,
) -> np.ndarray:
    """Bounded polynomial mutation; each variable mutates with probability ``prob_var``
    (default min(0.5, 1/n))."""
    y = x.astype(float).copy()
    n = len(x)
    p = min(0.5, 1.0 / n) if prob_var is None else prob_var
    mutate = rng.random(n) < p
    u = rng.random(n)
    power = 1.0 / (eta + 1.0)
    for i in np.flatnonzero(mutate):
        lo, hi = lower[i], upper[i]
        span = hi - lo
        if span <= 0:
            continue
        d1, d2 = (y[i] - lo) / span, (hi - y[i]) / span
        if u[i] < 0.5:
            val = 2.0 * u[i] + (1.0 - 2.0 * u[i]) * (1.0 - d1) ** (eta + 1.0)
            deltaq = val**power - 1.0
        else:
            val = 2.0 * (1.0 - u[i]) + 2.0 * (u[i] - 0.5) * (1.0 - d2) ** (eta + 1.0)
            deltaq = 1.0 - val**power
        y[i] = float(np.clip(y[i] + deltaq * span, lo, hi))
    return y
