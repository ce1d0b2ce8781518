"""Plain fine-tuning stage: ``epochs`` epochs of `train` with the global training settings."""

from __future__ import annotations

from torch import nn

from evoforge.compression.genome import Stage
from evoforge.compression.stages import STAGES, StageContext
from evoforge.workload.training import train


@STAGES.register("finetune")
def finetune(model: nn.Module, stage: Stage, ctx: StageContext) -> nn.Module:
    """Train ``model`` on the task loss (optimizer, lr, weight decay from ``ctx.training``).

    Stages leave plain layers behind (low-rank folds its factors), so the Hoyer and
    orthogonality weights have nothing to act on here.
    """
    return train(
        model, ctx.data, ctx.training, epochs=stage["epochs"], seed=ctx.seed, batch_size=ctx.batch_size, device=ctx.device
    )
