"""Tiny models and session-scoped trained copies shared by the compression and workload tests."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch
from torch import nn

from evoforge.compression.stages import StageContext, protected_layers
from evoforge.workload.data import Split, Splits
from evoforge.workload.datasets import load_dataset
from evoforge.workload.recipe import TrainingSettings
from evoforge.workload.task import example_input
from evoforge.workload.training import predict, train


class ResCNN(nn.Module):
    """Residual CNN with batch norm for 1x8x8 digits."""

    def __init__(self, width: int = 16, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU())
        self.conv1 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.relu2 = nn.ReLU()
        self.down = nn.Sequential(nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        h = self.relu2(h + self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(h))))))
        return self.fc(self.pool(self.down(h)).flatten(1))


class RegroupCNN(nn.Module):
    """A CNN for 1-channel images whose middle layer's channels are regrouped before the next layer
    reads them: ``shuffle`` (ShuffleNet's view, transpose and reshape), ``flip`` (reversed), or
    ``none``. torch-pruning follows all three without an error."""

    def __init__(self, regroup: str = "shuffle", width: int = 16, classes: int = 10) -> None:
        super().__init__()
        self.regroup = regroup
        self.stem = nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU())
        self.mid = nn.Sequential(nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        self.last = nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU())
        self.fc = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.stem(x))
        if self.regroup == "shuffle":
            n, c, height, width = h.shape
            h = h.view(n, 2, c // 2, height, width).transpose(1, 2).reshape(n, c, height, width)
        elif self.regroup == "flip":
            h = h.flip(1)
        return self.fc(self.last(h).mean((2, 3)))  # type: ignore[no-any-return]


def mlp(inputs: int = 64, hidden: int = 128, classes: int = 10) -> nn.Module:
    return nn.Sequential(
        nn.Flatten(), nn.Linear(inputs, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, classes)
    )


def cnn1d(outputs: int = 1) -> nn.Module:
    return nn.Sequential(
        nn.Conv1d(1, 16, 5, padding=2), nn.ReLU(), nn.Conv1d(16, 32, 5, stride=2, padding=2), nn.ReLU(),
        nn.Conv1d(32, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(32, outputs),
    )


def depthwise_cnn(classes: int = 10) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1, groups=16), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 32, 1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, classes),
    )


@contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on one thread: on a shared 2-core box two OpenMP threads oversubscribe the cores
    and make these tiny models several times slower."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def single_thread() -> Iterator[None]:
    """Use in a module with ``pytestmark = pytest.mark.usefixtures("single_thread")``."""
    with one_thread():
        yield


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def accuracy(model: nn.Module, split: Split) -> float:
    outputs, targets = predict(model, split)
    return float((outputs.argmax(1) == targets).mean())


def make_ctx(model: nn.Module, data: Splits, *, loss: str = "cross_entropy", seed: int = 0, **training: float) -> StageContext:
    example = example_input(data)
    return StageContext(
        data=data, training=TrainingSettings(loss=loss, **training), example_input=example, seed=seed,
        protected=protected_layers(model, example),
    )


@pytest.fixture(scope="session")
def digits() -> Splits:
    return load_dataset("digits")


@pytest.fixture(scope="session")
def series() -> Splits:
    return load_dataset("series")


@pytest.fixture(scope="session")
def _trained_rescnn(digits: Splits) -> nn.Module:
    with one_thread():
        torch.manual_seed(0)
        return train(ResCNN(), digits, TrainingSettings(lr=3e-3), epochs=8, seed=0, patience=None)


@pytest.fixture(scope="session")
def _trained_mlp(digits: Splits) -> nn.Module:
    with one_thread():
        torch.manual_seed(0)
        return train(mlp(), digits, TrainingSettings(lr=3e-3), epochs=8, seed=0, patience=None)


@pytest.fixture(scope="session")
def _trained_cnn1d(series: Splits) -> nn.Module:
    with one_thread():
        torch.manual_seed(0)
        return train(cnn1d(), series, TrainingSettings(loss="mse", lr=3e-3), epochs=8, seed=0, patience=None)


@pytest.fixture
def rescnn(_trained_rescnn: nn.Module) -> nn.Module:
    """A fresh copy of the trained residual CNN (tests may modify it)."""
    return copy.deepcopy(_trained_rescnn)


@pytest.fixture
def trained_mlp(_trained_mlp: nn.Module) -> nn.Module:
    return copy.deepcopy(_trained_mlp)


@pytest.fixture
def trained_cnn1d(_trained_cnn1d: nn.Module) -> nn.Module:
    return copy.deepcopy(_trained_cnn1d)
