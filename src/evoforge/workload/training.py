"""Task losses, optimizers and the minibatch training loop shared by the baseline and every
compression stage.

Data order comes from a `torch.Generator` seeded with ``seed``; layers that draw from the global
RNG while training (dropout) run inside `torch.random.fork_rng` seeded with ``seed``, so the same
seed gives the same weights and the caller's global RNG state is left untouched. Models take
their inputs in any structure (see `evoforge.workload.inputs`).
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from evoforge.errors import ConfigError
from evoforge.hostlock import compute_step
from evoforge.workload.data import Split, Splits, output_batches
from evoforge.workload.inputs import call_model, concat, to_tensors
from evoforge.workload.metrics import IGNORE_LABEL
from evoforge.workload.recipe import CLASSIFICATION_LOSSES, OPTIMIZERS, REGRESSION_LOSSES, TrainingSettings

LossFn = Callable[[Tensor, Tensor], Tensor]

_FOCAL_GAMMA = 2.0
_LABEL_SMOOTHING = 0.1
_SGD_MOMENTUM = 0.9


def _counted(out: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """(N, ..., C) logits and (N, ...) labels -> (M, C) and (M,) over the positions that count."""
    logits, labels = out.reshape(-1, out.shape[-1]), y.reshape(-1)
    keep = labels != IGNORE_LABEL
    return logits[keep], labels[keep]


def _cross_entropy(out: Tensor, y: Tensor, smoothing: float = 0.0) -> Tensor:
    logits, labels = _counted(out, y)
    return F.cross_entropy(logits, labels, label_smoothing=smoothing)


def _focal(out: Tensor, y: Tensor) -> Tensor:
    logits, labels = _counted(out, y)
    log_p = F.log_softmax(logits, dim=-1).gather(1, labels.unsqueeze(1)).squeeze(1)
    return (-((1.0 - log_p.exp()) ** _FOCAL_GAMMA) * log_p).mean()


def _as_target(out: Tensor, y: Tensor) -> Tensor:
    if out.numel() != y.numel():
        raise ConfigError(f"regression output has shape {tuple(out.shape)} but targets {tuple(y.shape)}; give one output per target")
    return out.reshape(y.shape)


def _log_cosh(out: Tensor, y: Tensor) -> Tensor:
    d = _as_target(out, y) - y
    return (d + F.softplus(-2.0 * d) - math.log(2.0)).mean()  # log(cosh(d)) without overflow


_LOSSES: dict[str, LossFn] = {
    "cross_entropy": _cross_entropy,
    "label_smoothing": lambda out, y: _cross_entropy(out, y, _LABEL_SMOOTHING),
    "focal": _focal,
    "mse": lambda out, y: F.mse_loss(_as_target(out, y), y),
    "huber": lambda out, y: F.huber_loss(_as_target(out, y), y, delta=1.0),
    "log_cosh": _log_cosh,
}


def loss_function(name: str, task_type: str) -> LossFn:
    """The task loss ``name`` as ``f(output, target) -> scalar``; raises `ConfigError` when the
    name does not fit ``task_type`` ("classification" or "regression")."""
    valid = {"classification": CLASSIFICATION_LOSSES, "regression": REGRESSION_LOSSES}.get(task_type)
    if valid is None:
        raise ConfigError(f"task type {task_type!r} is not supported; use 'classification' or 'regression'")
    if name not in valid:
        raise ConfigError(f"loss {name!r} does not fit a {task_type} task; choose one of {list(valid)}")
    return _LOSSES[name]


def make_optimizer(params: Iterable[nn.Parameter], settings: TrainingSettings) -> torch.optim.Optimizer:
    """The optimizer named by ``settings.optimizer`` with its lr and weight decay."""
    lr, wd = settings.lr, settings.weight_decay
    if settings.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)
    if settings.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    if settings.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=wd, momentum=_SGD_MOMENTUM)
    if settings.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, weight_decay=wd)
    raise ConfigError(f"unknown optimizer {settings.optimizer!r}; choose one of {list(OPTIMIZERS)}")


@torch.no_grad()
def validation_loss(model: nn.Module, data: Splits, loss: LossFn, *, batch_size: int = 256, device: str = "cpu") -> float:
    """Mean task loss of ``model`` (in eval mode) on the validation split."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for x, y in data.val.batches(batch_size):
        with compute_step():
            total += float(loss(call_model(model, to_tensors(x, device)), y.to(device))) * len(y)
        count += len(y)
    model.train(was_training)
    return total / max(1, count)


_VALIDATION_LOSSES: contextvars.ContextVar[list[float] | None] = contextvars.ContextVar("validation_losses", default=None)


@contextlib.contextmanager
def record_validation_losses() -> Iterator[list[float]]:
    """Collect the validation loss after every epoch of every `train` call inside the block, in
    order (a compression pipeline's training curve across its stages)."""
    losses: list[float] = []
    token = _VALIDATION_LOSSES.set(losses)
    try:
        yield losses
    finally:
        _VALIDATION_LOSSES.reset(token)


_EXAMPLES_PER_EPOCH: contextvars.ContextVar[float] = contextvars.ContextVar("examples_per_epoch", default=1.0)


@contextlib.contextmanager
def examples_per_epoch(fraction: float) -> Iterator[None]:
    """Every `train` call inside the block visits only ``fraction`` of the train split per epoch
    (a fresh random draw each epoch, at least one batch), keeping its number of epochs: a
    screening's training at a fraction of the cost (`evoforge.compression.domain`)."""
    if not 0.0 < fraction <= 1.0:
        raise ConfigError(f"examples per epoch must be a fraction in (0, 1], got {fraction}")
    token = _EXAMPLES_PER_EPOCH.set(fraction)
    try:
        yield
    finally:
        _EXAMPLES_PER_EPOCH.reset(token)


def train(
    model: nn.Module,
    data: Splits,
    settings: TrainingSettings,
    *,
    epochs: int,
    seed: int,
    batch_size: int = 64,
    extra_loss: Callable[[nn.Module], Tensor] | None = None,
    patience: int | None = 3,
    device: str = "cpu",
) -> nn.Module:
    """Train ``model`` in place for up to ``epochs`` epochs on the train split and return it.

    Each step minimises task loss + ``extra_loss(model)``. After each epoch the validation loss is
    measured; with ``patience`` set, training stops after that many epochs without improvement.
    The weights with the best validation loss are restored at the end (also without early stopping).
    ``epochs == 0`` returns the model unchanged. Inside `examples_per_epoch` an epoch is the first
    part of that epoch's shuffled order.
    """
    if epochs < 0:
        raise ConfigError(f"epochs={epochs} is negative; use 0 or more")
    if batch_size < 1:
        raise ConfigError(f"batch_size={batch_size} is too small; use 1 or more")
    loss = loss_function(settings.loss, data.task_type)
    if epochs == 0:
        return model
    model.to(device)
    n = len(data.train)
    per_epoch = n if (share := _EXAMPLES_PER_EPOCH.get()) >= 1.0 else min(n, max(batch_size, math.ceil(share * n)))
    order_rng = torch.Generator().manual_seed(seed)
    optimizer = make_optimizer([p for p in model.parameters() if p.requires_grad], settings)
    best_loss, best_state, stale = math.inf, copy.deepcopy(model.state_dict()), 0
    devices = [torch.device(device).index or 0] if torch.device(device).type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        for _ in range(epochs):
            model.train()
            order = torch.randperm(n, generator=order_rng)[:per_epoch]
            for x, y in data.train.batches(batch_size, order):
                if len(y) < 2 <= n:  # a lone example breaks batch norm in training mode
                    continue
                with compute_step():
                    optimizer.zero_grad(set_to_none=True)
                    step_loss = loss(call_model(model, to_tensors(x, device)), y.to(device))
                    if extra_loss is not None:
                        step_loss = step_loss + extra_loss(model)
                    step_loss.backward()  # type: ignore[no-untyped-call]
                    optimizer.step()
            val = validation_loss(model, data, loss, device=device)
            if (recorder := _VALIDATION_LOSSES.get()) is not None:
                recorder.append(float(val))
            if val < best_loss:
                best_loss, best_state, stale = val, copy.deepcopy(model.state_dict()), 0
            else:
                stale += 1
                if patience is not None and stale >= patience:
                    break
    model.load_state_dict(best_state)
    model.eval()
    return model


@contextlib.contextmanager
def eval_mode(model: Any) -> Iterator[Any]:
    """``model`` in eval mode while open (where it has one), its training flag restored after."""
    was_training = getattr(model, "training", False)
    if hasattr(model, "eval"):
        model.eval()
    try:
        yield model
    finally:
        if hasattr(model, "train"):
            model.train(was_training)


def predict(model: Any, split: Split, batch_size: int = 256, *, device: str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """Outputs (as float numpy) and targets of ``model`` over ``split``, in eval mode, no gradients."""
    with eval_mode(model):
        outputs, targets = zip(*output_batches(model, split, batch_size, device))
    return concat(list(outputs)), concat(list(targets))


def observe_forward(
    model: nn.Module, example_input: Any, modules: list[nn.Module], hook: Callable[[nn.Module, Any, Any], None]
) -> None:
    """Run ``model`` once on ``example_input`` (any input structure) in eval mode without
    gradients, calling ``hook`` after each of ``modules`` runs; hooks are removed and the
    training flag restored afterwards."""
    handles = [m.register_forward_hook(hook) for m in modules]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            call_model(model, example_input)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
