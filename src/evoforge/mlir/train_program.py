"""Training-step and predict programs for GEVO-ML's training workload (2fcNet on digits).

The training step (forward, cross-entropy loss, backward via ``torch.func.grad``, SGD update
with the learning rate baked in as a program constant) is traced with ``make_fx`` and exported
with ``iree.turbine.aot.export``; its signature is ``main(x, y, *params) -> (*new_params, loss)``
with parameters in ``model.named_parameters()`` order. The predict program is
``main(x, *params) -> logits``. A variant of the training step is scored by running S steps
from fixed initial parameters in a fixed data order, then measuring accuracy with the
*unmutated* predict program (GEVO-ML's protocol).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from evoforge.mlir.iree_runner import Failure, VariantFailure, Worker, compile_program, default_driver
from evoforge.mlir.program import Level, Program, from_torch

if TYPE_CHECKING:
    import torch

    from evoforge.mlir.edits import Edit


def initial_params(model: torch.nn.Module) -> list[np.ndarray]:
    """The model's parameters as float32 arrays, in the programs' argument order."""
    return [p.detach().cpu().numpy().astype(np.float32).copy() for _, p in model.named_parameters()]


def _traced(fn: Any, example: tuple[Any, ...]) -> Any:
    from torch.fx.experimental.proxy_tensor import make_fx

    return make_fx(fn)(*example)


def export_train_step(
    model: torch.nn.Module, *, batch_size: int, input_shape: Sequence[int], lr: float = 0.1, level: Level = "torch"
) -> Program:
    """Export one SGD step of ``model`` (classification, cross-entropy, int64 labels)."""
    import torch
    from torch.func import functional_call, grad

    names = [n for n, _ in model.named_parameters()]

    def loss_fn(params: dict[str, Any], x: Any, y: Any) -> Any:
        return torch.nn.functional.cross_entropy(functional_call(model, params, (x,)), y)

    def step(x: Any, y: Any, *ps: Any) -> tuple[Any, ...]:
        params = dict(zip(names, ps))
        grads = grad(loss_fn)(params, x, y)
        loss = loss_fn(params, x, y)
        return tuple(params[n] - lr * grads[n] for n in names) + (loss,)

    x = torch.zeros(batch_size, *input_shape)
    y = torch.zeros(batch_size, dtype=torch.int64)
    ps = tuple(p.detach().clone() for p in model.parameters())
    return from_torch(_traced(step, (x, y, *ps)), (x, y, *ps), level=level)


def export_predict(model: torch.nn.Module, *, batch_size: int, input_shape: Sequence[int], level: Level = "torch") -> Program:
    """Export ``main(x, *params) -> logits`` of ``model`` with the parameters as inputs."""
    import torch
    from torch.func import functional_call

    names = [n for n, _ in model.named_parameters()]

    def predict(x: Any, *ps: Any) -> Any:
        return functional_call(model, dict(zip(names, ps)), (x,))

    x = torch.zeros(batch_size, *input_shape)
    ps = tuple(p.detach().clone() for p in model.parameters())
    return from_torch(_traced(predict, (x, *ps)), (x, *ps), level=level)


@dataclasses.dataclass(frozen=True)
class TrainOutcome:
    """Result of `train_and_score`: final accuracy on the evaluation data, wall seconds of the
    S training steps, per-step losses and the final parameters."""

    accuracy: float
    train_s: float
    losses: list[float]
    params: list[np.ndarray]


def train_and_score(
    train_vmfb: bytes, predict_vmfb: bytes, driver: str, params: Sequence[np.ndarray],
    x_train: np.ndarray, y_train: np.ndarray, steps: int, x_eval: np.ndarray, y_eval: np.ndarray, batch_size: int,
) -> TrainOutcome:
    """(In a worker.) Run ``steps`` training steps over consecutive ``batch_size`` batches of the
    training data (wrapping around), then compute accuracy on the evaluation data with the
    predict program (last batch zero-padded). Both programs were exported for ``batch_size``."""
    from evoforge.mlir.iree_runner import _load, _to_host

    step = _load(train_vmfb, driver, "main")
    predict = _load(predict_vmfb, driver, "main")
    b = batch_size
    n_batches = len(x_train) // b
    ps = [np.asarray(p) for p in params]
    losses = []
    t0 = time.perf_counter()
    for i in range(steps):
        j = i % n_batches
        out = _to_host(step(x_train[j * b:(j + 1) * b], y_train[j * b:(j + 1) * b], *ps))
        ps, loss = out[:-1], out[-1]
        losses.append(float(loss))
    train_s = time.perf_counter() - t0
    correct = 0
    for k in range(0, len(x_eval), b):
        xb = x_eval[k:k + b]
        pad = b - len(xb)
        if pad:
            xb = np.concatenate([xb, np.zeros((pad, *xb.shape[1:]), xb.dtype)])
        logits = _to_host(predict(xb, *ps))[0][: b - pad]
        correct += int((logits.argmax(-1) == y_eval[k:k + b]).sum())
    return TrainOutcome(accuracy=correct / len(x_eval), train_s=train_s, losses=losses, params=ps)


@dataclasses.dataclass(frozen=True)
class TrainVariantResult:
    """`train_variant` outcome: ``outcome`` on success, else ``failure``."""

    outcome: TrainOutcome | None
    failure: Failure | None


def train_variant(
    program: Program, edits: Sequence[Edit], predict_vmfb: bytes, params: Sequence[np.ndarray], *,
    x_train: np.ndarray, y_train: np.ndarray, steps: int, x_eval: np.ndarray, y_eval: np.ndarray,
    batch_size: int, worker: Worker, target: str = "llvm-cpu", extra_flags: Sequence[str] = (), compile_timeout_s: float = 120.0,
    run_timeout_s: float = 120.0,
) -> TrainVariantResult:
    """Replay ``edits`` on the training-step ``program``, compile, train and score in
    ``worker``. Non-finite final parameters count as a ``nonfinite`` failure."""
    from evoforge.mlir.edits import EditError
    from evoforge.mlir.mutate import apply_edits

    try:
        text = apply_edits(program, edits)
        vmfb = compile_program(text, input_type=program.input_type, target=target, extra_flags=extra_flags,
                               timeout_s=compile_timeout_s)
        outcome: TrainOutcome = worker.call(
            train_and_score, vmfb, predict_vmfb, default_driver(target), list(params),
            x_train, y_train, steps, x_eval, y_eval, batch_size, timeout_s=run_timeout_s)
    except EditError as exc:
        return TrainVariantResult(None, Failure("edit", str(exc)))
    except VariantFailure as exc:
        return TrainVariantResult(None, exc.failure)
    if not all(np.all(np.isfinite(p)) for p in outcome.params):
        return TrainVariantResult(None, Failure("nonfinite", "training produced NaN or infinite parameters"))
    return TrainVariantResult(outcome, None)
