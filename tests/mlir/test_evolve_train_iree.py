"""The exported 2fcNet training step matches torch and trains in IREE."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.iree

B = 16


@pytest.fixture(scope="module")
def setup():
    torch = pytest.importorskip("torch")
    pytest.importorskip("iree.turbine")
    models = pytest.importorskip("evoforge.workload.models")
    from evoforge.mlir import train_program as tp
    from evoforge.mlir.iree_runner import compile_program
    from evoforge.workload.datasets import load_dataset

    torch.manual_seed(0)
    model = models.TwoFCNet(hidden=16)
    step = tp.export_train_step(model, batch_size=B, input_shape=(1, 8, 8), lr=0.1)
    predict = tp.export_predict(model, batch_size=B, input_shape=(1, 8, 8))
    return model, step, compile_program(predict.text, input_type=predict.input_type), load_dataset("digits")


def test_training_step_matches_torch(setup, worker):
    import torch

    from evoforge.mlir import train_program as tp
    from evoforge.mlir.iree_runner import compile_program, run_program

    model, step, _, data = setup
    params = tp.initial_params(model)
    x, y = data.train.x[:B], data.train.y[:B]
    out = run_program(compile_program(step.text, input_type=step.input_type), [[x, y, *params]], worker=worker)[0]
    ref = [p.detach().clone().requires_grad_(True) for p in model.parameters()]
    names = [n for n, _ in model.named_parameters()]
    logits = torch.func.functional_call(model, dict(zip(names, ref)), (torch.from_numpy(x),))
    loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(y))
    grads = torch.autograd.grad(loss, ref)
    for got, p, g in zip(out[:-1], ref, grads):
        np.testing.assert_allclose(got, (p - 0.1 * g).detach().numpy(), atol=1e-6)
    assert abs(float(out[-1]) - loss.item()) < 1e-5


def test_training_then_unmutated_predict(setup, worker):
    from evoforge.mlir import train_program as tp
    from evoforge.mlir.edits import Resize

    model, step, predict_vmfb, data = setup
    kwargs = dict(x_train=data.train.x, y_train=data.train.y, steps=60, x_eval=data.val.x, y_eval=data.val.y,
                  batch_size=B, worker=worker)
    base = tp.train_variant(step, [], predict_vmfb, tp.initial_params(model), **kwargs)
    assert base.failure is None
    assert base.outcome.accuracy > 0.5 and base.outcome.losses[-1] < base.outcome.losses[0]
    # keep one pixel column of the input: training still runs, but learns less
    crippled = tp.train_variant(step, [Resize(value="arg0", dim=3, size=1)], predict_vmfb, tp.initial_params(model), **kwargs)
    assert crippled.failure is None and crippled.outcome.accuracy < base.outcome.accuracy
    broken = tp.train_variant(step, [Resize(value="U100000#0", dim=0, size=1)], predict_vmfb, tp.initial_params(model), **kwargs)
    assert broken.failure is not None and broken.failure.kind == "edit"
