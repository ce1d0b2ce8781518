"""Structured channel pruning with torch-pruning's dependency graph (MetaPruner).

Whole channels / neurons are removed and every coupled layer (BN, residual partners, depthwise
convs, the next layer's inputs) is resized with them, so the result is a plain, smaller
``nn.Module``. Layers in ``ctx.protected`` keep their output channels.
"""

from __future__ import annotations

from typing import cast

import torch
import torch_pruning as tp
from torch import Tensor, nn

from evoforge.compression.genome import IMPORTANCES, Stage
from evoforge.compression.stages import STAGES, StageContext
from evoforge.compression.training import LossFn, loss_function, train
from evoforge.errors import ConfigError

_GRAD_EXAMPLES = 256  # calibration examples used to estimate gradients (taylor) per pruning step
_HESSIAN_EXAMPLES = 64  # examples whose squared per-example gradients estimate the Hessian diagonal
_MAX_GLOBAL_RATIO = 0.95  # with global allocation no layer loses more than this share of its channels


class _BNScaleOrL1(tp.importance.Importance):  # type: ignore[misc]  # torch-pruning ships no type hints
    """BN scale factor (network slimming) for groups that hold a batch norm, L1 magnitude for the rest."""

    def __init__(self) -> None:
        self._bn = tp.importance.BNScaleImportance()
        self._l1 = tp.importance.MagnitudeImportance(p=1)

    def __call__(self, group: tp.dependency.Group) -> Tensor | None:
        scores = self._bn(group)
        return cast(Tensor | None, self._l1(group) if scores is None else scores)


def make_importance(name: str) -> tp.importance.Importance:
    """The torch-pruning importance criterion for one of `IMPORTANCES`."""
    factories = {
        "l1": lambda: tp.importance.MagnitudeImportance(p=1),
        "l2": lambda: tp.importance.MagnitudeImportance(p=2),
        "lamp": lambda: tp.importance.LAMPImportance(p=2),
        "taylor": tp.importance.TaylorImportance,
        "hessian": tp.importance.HessianImportance,
        "bn_scale": _BNScaleOrL1,
        "random": tp.importance.RandomImportance,
    }
    if name not in factories:
        raise ConfigError(f"unknown pruning importance {name!r}; choose one of {list(IMPORTANCES)}")
    return factories[name]()


def _accumulate_gradients(model: nn.Module, ctx: StageContext, loss: LossFn, *, squared: bool) -> None:
    """Fill ``p.grad`` from calibration data: summed batch gradients of the task loss, or (``squared``)
    the mean squared per-example gradient, a diagonal Fisher estimate of the Hessian."""
    model.eval()  # gradients only: keep batch-norm statistics untouched
    model.zero_grad(set_to_none=True)
    params = [p for p in model.parameters() if p.requires_grad]
    x = torch.as_tensor(ctx.data.x_calib, device=ctx.device)
    y = torch.as_tensor(ctx.data.y_calib, device=ctx.device)
    if not squared:
        for start in range(0, min(len(x), _GRAD_EXAMPLES), ctx.batch_size):
            loss(model(x[start : start + ctx.batch_size]), y[start : start + ctx.batch_size]).backward()
        return
    n = min(len(x), _HESSIAN_EXAMPLES)
    fisher = [torch.zeros_like(p) for p in params]
    for i in range(n):
        grads = torch.autograd.grad(loss(model(x[i : i + 1]), y[i : i + 1]), params, allow_unused=True)
        for acc, g in zip(fisher, grads):
            if g is not None:
                acc += g.pow(2) / n
    for p, acc in zip(params, fisher):
        p.grad = acc


def _epoch_shares(epochs: int, steps: int) -> list[int]:
    base = epochs // steps
    return [base] * (steps - 1) + [epochs - base * (steps - 1)]


@STAGES.register("prune")
def prune(model: nn.Module, stage: Stage, ctx: StageContext) -> nn.Module:
    """Remove ``ratio`` of the prunable channels in ``steps`` equal increments.

    ``allocation`` "uniform" prunes every layer group by the same ratio, "global" ranks channels
    across layers (no layer loses more than 95%). Channel counts are rounded to ``round_to``.
    Taylor and Hessian criteria get fresh calibration-split gradients before every step. The
    ``epochs`` fine-tuning epochs are shared out after the steps (the remainder after the last one).
    """
    modules = dict(model.named_modules())
    unknown = [name for name in ctx.protected if name not in modules]
    if unknown:
        raise ConfigError(f"protected layers {unknown} are not modules of the model; use names from model.named_modules()")
    loss = loss_function(ctx.training.loss, ctx.data.task_type)
    model.to(ctx.device)
    importance_name, steps = stage["importance"], stage["steps"]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(ctx.seed)  # random importance draws from the global RNG
        pruner = tp.pruner.MetaPruner(
            model,
            ctx.example_input.to(ctx.device),
            importance=make_importance(importance_name),
            global_pruning=stage["allocation"] == "global",
            pruning_ratio=stage["ratio"],
            max_pruning_ratio=_MAX_GLOBAL_RATIO,
            iterative_steps=steps,
            ignored_layers=[modules[name] for name in ctx.protected],
            round_to=None if stage["round_to"] == 1 else stage["round_to"],
        )
        for step, epochs in enumerate(_epoch_shares(stage["epochs"], steps)):
            if importance_name in ("taylor", "hessian"):
                _accumulate_gradients(model, ctx, loss, squared=importance_name == "hessian")
            pruner.step()
            model.zero_grad(set_to_none=True)
            train(
                model, ctx.data, ctx.training, epochs=epochs, seed=ctx.seed + step,
                batch_size=ctx.batch_size, device=ctx.device,
            )
    return model.eval()
