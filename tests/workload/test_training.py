from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from evoforge.compression.genome import CLASSIFICATION_LOSSES, OPTIMIZERS, REGRESSION_LOSSES, TrainingSettings
from evoforge.errors import ConfigError
from evoforge.workload.training import examples_per_epoch, loss_function, make_optimizer, predict, train, validation_loss
from tests.support.torch_fixtures import mlp, n_params

pytestmark = pytest.mark.usefixtures("single_thread")


def _weights(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


@pytest.mark.parametrize(("name", "task"), [("mse", "classification"), ("cross_entropy", "regression"), ("focal", "regression")])
def test_loss_that_does_not_fit_the_task_names_the_valid_ones(name: str, task: str) -> None:
    valid = CLASSIFICATION_LOSSES if task == "classification" else REGRESSION_LOSSES
    with pytest.raises(ConfigError, match=valid[0]) as err:
        loss_function(name, task)
    assert name in str(err.value)


def test_classification_losses() -> None:
    out = torch.tensor([[4.0, 0.0, 0.0], [0.0, 0.5, 0.0]])
    y = torch.tensor([0, 1])
    ce = loss_function("cross_entropy", "classification")(out, y)
    focal = loss_function("focal", "classification")(out, y)
    smooth = loss_function("label_smoothing", "classification")(out, y)
    assert ce == pytest.approx(torch.nn.functional.cross_entropy(out, y).item())
    p = torch.softmax(out, 1)[[0, 1], [0, 1]]
    assert focal == pytest.approx(float((-(1 - p) ** 2 * p.log()).mean()), rel=1e-5)
    assert focal < ce < smooth  # focal down-weights easy examples; smoothing penalizes confident ones


def test_regression_losses_match_their_formulas_and_accept_column_outputs() -> None:
    y = torch.tensor([0.0, 1.0, -2.0, 30.0])
    out = torch.zeros(4, 1)
    d = (out.squeeze(1) - y).numpy().astype(np.float64)
    assert loss_function("mse", "regression")(out, y) == pytest.approx(float((d**2).mean()))
    huber = np.where(np.abs(d) < 1, 0.5 * d**2, np.abs(d) - 0.5).mean()
    assert loss_function("huber", "regression")(out, y) == pytest.approx(float(huber))
    log_cosh = np.mean(np.abs(d) + np.log1p(np.exp(-2 * np.abs(d))) - math.log(2))  # stable for d = 30
    assert loss_function("log_cosh", "regression")(out, y) == pytest.approx(float(log_cosh), rel=1e-6)
    with pytest.raises(ConfigError, match="one output per target"):
        loss_function("mse", "regression")(torch.zeros(4, 2), y)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_every_optimizer_lowers_the_validation_loss(name: str, digits) -> None:
    torch.manual_seed(0)
    model = mlp()
    settings = TrainingSettings(optimizer=name, lr=0.1 if name == "sgd" else 3e-3)
    loss = loss_function("cross_entropy", "classification")
    before = validation_loss(model, digits, loss)
    train(model, digits, settings, epochs=2, seed=0)
    assert validation_loss(model, digits, loss) < 0.5 * before
    opt = make_optimizer(list(model.parameters()), TrainingSettings(optimizer=name, lr=5e-3, weight_decay=1e-4))
    assert opt.param_groups[0]["lr"] == 5e-3 and opt.param_groups[0]["weight_decay"] == 1e-4


def test_same_seed_same_weights_and_other_seed_other_weights(digits) -> None:
    def run(seed: int) -> torch.Tensor:
        torch.manual_seed(0)  # same initial weights; the training seed alone decides the data order
        model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.Dropout(0.2), nn.ReLU(), nn.Linear(32, 10))
        return _weights(train(model, digits, TrainingSettings(), epochs=2, seed=seed))

    a, b, c = run(1), run(1), run(2)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    model = mlp()
    state = torch.get_rng_state()
    train(model, digits, TrainingSettings(), epochs=1, seed=5)
    assert torch.equal(torch.get_rng_state(), state)  # the caller's global RNG is untouched


def test_best_weights_are_restored(digits) -> None:
    settings = TrainingSettings(optimizer="sgd", lr=0.5)  # noisy enough to make validation loss go up and down
    loss = loss_function("cross_entropy", "classification")
    losses = []
    for epochs in (1, 2, 3, 4):
        torch.manual_seed(0)
        losses.append(validation_loss(train(mlp(), digits, settings, epochs=epochs, seed=0, patience=None), digits, loss))
    assert losses == sorted(losses, reverse=True)  # best-of-k can only improve with k


def test_patience_stops_training_and_extra_loss_is_added(digits) -> None:
    calls = []

    def extra(model: nn.Module) -> torch.Tensor:
        calls.append(1)
        return sum(p.pow(2).sum() for p in model.parameters()) * 0.0

    settings = TrainingSettings(optimizer="sgd", lr=1e-12)  # no progress after the first epoch
    train(mlp(), digits, settings, epochs=20, seed=0, batch_size=100, patience=3, extra_loss=extra)
    steps = math.ceil(len(digits.train.x) / 100)
    assert len(calls) == 4 * steps  # epoch 1 sets the best, epochs 2-4 are stale

    torch.manual_seed(0)
    model = mlp()
    norm = _weights(model).norm()
    train(model, digits, TrainingSettings(), epochs=2, seed=0, extra_loss=lambda m: 10 * sum(p.pow(2).sum() for p in m.parameters()))
    assert _weights(model).norm() < 0.7 * norm


def test_zero_epochs_leave_the_model_alone_and_predict_is_batched(digits) -> None:
    model = mlp()
    before = _weights(model).clone()
    assert train(model, digits, TrainingSettings(), epochs=0, seed=0) is model
    assert torch.equal(before, _weights(model))
    out, targets = predict(model.train(), digits.test, batch_size=7)
    assert out.shape == (len(digits.test), 10) and out.dtype == np.float32
    np.testing.assert_array_equal(targets, digits.test.y)
    assert model.training  # mode restored
    np.testing.assert_allclose(out, predict(model, digits.test)[0], rtol=1e-5, atol=1e-6)
    with pytest.raises(ConfigError, match="epochs"):
        train(model, digits, TrainingSettings(), epochs=-1, seed=0)
    assert n_params(model) == 64 * 128 + 128 + 128 * 128 + 128 + 128 * 10 + 10


def test_examples_per_epoch_shortens_every_epoch_and_keeps_the_epochs(digits) -> None:
    seen: list[int] = []

    def count(model: nn.Module) -> torch.Tensor:
        seen.append(1)
        return torch.zeros(())

    n = len(digits.train.x)
    settings = TrainingSettings(optimizer="sgd", lr=1e-12)  # stale after the first epoch: patience decides the epochs
    with examples_per_epoch(0.25):
        train(mlp(), digits, settings, epochs=20, seed=0, batch_size=50, patience=3, extra_loss=count)
    assert len(seen) == 4 * math.ceil(math.ceil(0.25 * n) / 50)  # 4 epochs, each a quarter of the split
    seen.clear()
    train(mlp(), digits, settings, epochs=20, seed=0, batch_size=50, patience=3, extra_loss=count)
    assert len(seen) == 4 * math.ceil(n / 50)  # the block is over: whole epochs again
    seen.clear()
    with examples_per_epoch(1e-6):
        train(mlp(), digits, settings, epochs=1, seed=0, batch_size=50, extra_loss=count)
    assert len(seen) == 1  # at least one batch
    with pytest.raises(ConfigError, match=r"examples per epoch must be a fraction in \(0, 1\], got 1.5"), examples_per_epoch(1.5):
        pass


def test_a_shorter_order_gives_exactly_those_examples(digits) -> None:
    order = torch.tensor([5, 3, 9])
    batches = list(digits.train.batches(2, order))
    assert [len(y) for _, y in batches] == [2, 1]
    np.testing.assert_array_equal(torch.cat([y for _, y in batches]).numpy(), digits.train.y[[5, 3, 9]])
