"""Does an example's prediction depend on the other examples of its batch?

A prediction program compiled for a batch of ``b`` must give each example the output it would
get in any other batch. An edit can break that without changing a single validation prediction:
an ``operand_replace`` that makes a batch-norm vector read the first 512 entries of a
``[32,512,4,4]`` activation makes every example's output depend on example 0's features. A fitness
that scores fixed batches in a fixed order cannot see it, and the variant would give other
outputs on the batches a user deploys it on.

The check runs the first two batches a second time with their examples shuffled across them
(`mixed_batches`; a program evaluated on one batch gets a batch of half its examples, twice) and
measures how far each example's outputs move (`batch_coupling`). Only outputs whose first
dimension is the batch are compared.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

COUPLING_LIMIT = 1e-4
"""A variant whose `batch_coupling` exceeds this is rejected. IREE computes each example of the
built-in programs bit-identically in any batch position (coupling 0); the limit leaves room for a
compiler that tiles the batch dimension and rounds differently at its edges."""
MIXING_SEED = 20261205
"""Seeds the shuffle, so that every variant of a run, and a resumed run, sees the same batches."""


def mixed_batches(batches: Sequence[Sequence[np.ndarray]], seed: int = MIXING_SEED) -> tuple[list[list[np.ndarray]], np.ndarray]:
    """The first two of ``batches`` (lists of positional inputs whose rows are examples) with
    their examples shuffled across them, and ``order``: row ``j`` of the shuffled examples,
    counted across the shuffled batches, is row ``order[j]`` of the originals. Every example
    moves, so each batch has a new example 0 and new batch-mates. With one batch there are no
    others to draw mates from: the shuffled batch holds a random half of its examples twice (in
    new places, example 0 among the dropped or moved), so each kept example loses half its mates."""
    used = list(batches[:2])
    size = len(used[0][0])
    rng = np.random.default_rng(seed)
    if len(used) == 1:
        order = np.resize(rng.permutation(size)[: (size + 1) // 2], size)
        while order[0] == 0:  # (needs size >= 2)
            order = np.resize(rng.permutation(size)[: (size + 1) // 2], size)
    else:
        count = 2 * size
        order = rng.permutation(count)
        while np.any(order == np.arange(count)):  # a derangement: every example moves
            order = rng.permutation(count)
    inputs = [np.concatenate([batch[i] for batch in used])[order] for i in range(len(used[0]))]
    return [[x[k * size : (k + 1) * size] for x in inputs] for k in range(len(used))], order


def batch_coupling(plain: Sequence[Sequence[np.ndarray]], mixed: Sequence[Sequence[np.ndarray]], order: np.ndarray,
                   batch_size: int) -> float | None:
    """The largest change of an output entry between an example's ``plain`` run (outputs of the
    batches `mixed_batches` drew from, in order) and its ``mixed`` run, relative to the largest
    magnitude of that output over the plain run; the largest over the outputs whose first
    dimension is ``batch_size``, or None when no output has one."""
    worst: float | None = None
    for i in range(len(plain[0])):
        if plain[0][i].ndim == 0 or plain[0][i].shape[0] != batch_size:
            continue
        before = np.concatenate([outs[i] for outs in plain[: len(mixed)]]).astype(np.float64)[order]
        after = np.concatenate([outs[i] for outs in mixed]).astype(np.float64)
        scale = float(np.max(np.abs(before))) if before.size else 0.0
        change = float(np.max(np.abs(after - before))) if before.size else 0.0
        relative = change / scale if scale > 0 else (0.0 if change == 0 else float("inf"))
        worst = relative if worst is None else max(worst, relative)
    return worst


def can_check(batch_size: int, output_shapes: Sequence[Sequence[int]]) -> bool:
    """Whether a program at this batch size with these output shapes can be checked: more than
    one example per batch and an output whose first dimension is the batch."""
    return batch_size > 1 and any(len(s) > 0 and s[0] == batch_size for s in output_shapes)
