"""Bundled and generated datasets, split into train / calibration / validation / test.

Nothing here touches the network: data comes from scikit-learn's bundled files, mnist1d's
procedural generator, or a seeded synthetic generator. Calibration and validation never overlap;
test is held out for final numbers only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from evoforge.registry import Registry
from evoforge.workload.data import ArraySplit, Splits, array_splits

DatasetLoader = Callable[[int], Splits]
DATASETS: Registry[DatasetLoader] = Registry("dataset")

def load_dataset(name: str, *, seed: int = 0) -> Splits:
    """Load a bundled dataset by name (see `DATASETS` for the list); deterministic in ``seed``."""
    return DATASETS[name](seed)


def _standardize(splits: Splits) -> Splits:
    """Inputs scaled by the train split's per-feature mean and standard deviation."""
    train = splits.train
    assert isinstance(train, ArraySplit)
    mean = train.x.mean(axis=0, keepdims=True)
    std = train.x.std(axis=0, keepdims=True) + 1e-6
    scaled: dict[str, Any] = {}
    for name in ("train", "calib", "val", "test"):
        split = splits.split(name)
        assert isinstance(split, ArraySplit)
        scaled[name] = ArraySplit(((split.x - mean) / std).astype(np.float32), split.y)
    return dataclasses.replace(splits, **scaled)


@DATASETS.register("digits")
def _digits(seed: int) -> Splits:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None, :, :]  # (N, 1, 8, 8)
    return array_splits(x, d.target.astype(np.int64), task_type="classification", seed=seed, num_classes=10)


@DATASETS.register("mnist1d")
def _mnist1d(seed: int) -> Splits:
    import mnist1d.data

    args = mnist1d.data.get_dataset_args()
    d = mnist1d.data.make_dataset(args)  # procedural, offline (never call get_dataset: it downloads)
    x = np.concatenate([d["x"], d["x_test"]]).astype(np.float32)[:, None, :]  # (N, 1, 40)
    y = np.concatenate([d["y"], d["y_test"]]).astype(np.int64)
    splits = array_splits(x, y, task_type="classification", seed=seed, num_classes=10)
    return _standardize(splits)


@DATASETS.register("series")
def _series(seed: int) -> Splits:
    """Synthetic 1-D regression: noisy mixtures of two sinusoids; the target is a nonlinear
    function of their hidden frequencies and amplitudes (length 64, 3000 examples)."""
    rng = np.random.default_rng(12345)  # the data itself is fixed; ``seed`` only shuffles the splits
    n, length = 3000, 64
    t = np.linspace(0.0, 1.0, length, dtype=np.float64)
    f1, f2 = rng.uniform(1, 6, n), rng.uniform(6, 14, n)
    a1, a2 = rng.uniform(0.5, 1.5, n), rng.uniform(0.2, 1.0, n)
    phase = rng.uniform(0, 2 * np.pi, (n, 2))
    x = a1[:, None] * np.sin(2 * np.pi * f1[:, None] * t + phase[:, :1]) + a2[:, None] * np.sin(
        2 * np.pi * f2[:, None] * t + phase[:, 1:]
    )
    x += rng.normal(0, 0.1, x.shape)
    y = (a1 * np.log(f1) + 0.5 * a2 * np.sqrt(f2)).astype(np.float32)
    y = (y - y.mean()) / y.std()
    return array_splits(x.astype(np.float32)[:, None, :], y.astype(np.float32), task_type="regression", seed=seed)


def _tabular(loader: Callable[[], tuple[np.ndarray, np.ndarray]], task_type: str, seed: int, num_classes: int) -> Splits:
    x, y = loader()
    y = y.astype(np.int64) if task_type == "classification" else ((y - y.mean()) / y.std()).astype(np.float32)
    return _standardize(array_splits(x.astype(np.float32), y, task_type=task_type, seed=seed, num_classes=num_classes))


@DATASETS.register("breast_cancer")
def _breast_cancer(seed: int) -> Splits:
    from sklearn.datasets import load_breast_cancer

    return _tabular(lambda: load_breast_cancer(return_X_y=True), "classification", seed, 2)


@DATASETS.register("wine")
def _wine(seed: int) -> Splits:
    from sklearn.datasets import load_wine

    return _tabular(lambda: load_wine(return_X_y=True), "classification", seed, 3)


@DATASETS.register("diabetes")
def _diabetes(seed: int) -> Splits:
    from sklearn.datasets import load_diabetes

    return _tabular(lambda: load_diabetes(return_X_y=True), "regression", seed, 0)


@DATASETS.register("img32")
def _img32(seed: int) -> Splits:
    """10 classes of generated 3x32x32 colour digits (see `evoforge.workload.synthetic`), split by
    source-image pool so that no source digit is shared between splits; ``seed`` is unused (the
    data and its split are fixed)."""
    from evoforge.workload.synthetic import colour_digits

    x, y, pool = colour_digits()
    train, calib, val, test = (ArraySplit(x[pool == p], y[pool == p]) for p in range(4))
    return Splits(train, calib, val, test, task_type="classification", num_classes=10)


@DATASETS.register("tokens")
def _tokens(seed: int) -> Splits:
    """Generated token sequences (``input_ids`` + ``attention_mask``, int64) in 4 topic classes
    (see `evoforge.workload.synthetic`); ``seed`` shuffles the splits."""
    from evoforge.workload.synthetic import topic_tokens

    ids, mask, y = topic_tokens()
    return array_splits({"input_ids": ids, "attention_mask": mask}, y, task_type="classification", seed=seed, num_classes=4)
