from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import evoforge.compression.training as training  # noqa: E402
from evoforge.compression.genome import TrainingSettings  # noqa: E402
from evoforge.compression.quality import score  # noqa: E402
from evoforge.compression.task import (  # noqa: E402
    BUILTIN_TASKS,
    NPZ_ARRAYS,
    Task,
    baseline_model,
    example_input,
    load_model,
    load_splits,
    metric_of,
)
from evoforge.compression.training import predict  # noqa: E402
from evoforge.datasets import load_dataset  # noqa: E402
from evoforge.errors import ConfigError  # noqa: E402

EXPECTED = {"digits-cnn", "digits-mlp", "mnist1d-cnn", "series-regression", "digits-mobilenet", "digits-2fcnet"}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():  # type: ignore[no-untyped-def]
    """Training on 2 threads of a shared 2-core box is up to 20x slower under load (OpenMP spinning)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def digits():  # type: ignore[no-untyped-def]
    return load_dataset("digits", seed=0)


def _task(**kw: object) -> Task:
    return dataclasses.replace(BUILTIN_TASKS["digits-mlp"], **kw)  # type: ignore[arg-type]


def test_builtin_tasks_validate_and_roundtrip_json() -> None:
    assert set(BUILTIN_TASKS) == EXPECTED
    for task in BUILTIN_TASKS.values():
        task.validate()
        again = Task.from_dict(json.loads(json.dumps(task.to_dict())))
        assert again == task and again.content_hash == task.content_hash
    assert BUILTIN_TASKS["digits-cnn"].content_hash != BUILTIN_TASKS["digits-mlp"].content_hash


def test_from_dict_fills_defaults_and_rejects_unknown_keys() -> None:
    task = Task.from_dict({"name": "t", "model": "digits_mlp", "dataset": "digits", "training": {"lr": 0.002}})
    assert task.training == TrainingSettings(lr=0.002) and task.latency_batch == 64
    with pytest.raises(ConfigError, match="unknown keys.*'epochs'"):
        Task.from_dict({"name": "t", "model": "digits_mlp", "dataset": "digits", "epochs": 3})
    with pytest.raises(ConfigError, match="training has unknown keys"):
        Task.from_dict({"name": "t", "model": "digits_mlp", "dataset": "digits", "training": {"momentum": 0.9}})
    with pytest.raises(ConfigError, match="incomplete"):
        Task.from_dict({"name": "t"})


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"model": "resnet50"}, "not a built-in model.*digits_cnn"),
        ({"task_type": "ranking"}, "task_type='ranking'"),
        ({"dataset": "imagenet"}, "neither a bundled dataset"),
        ({"dataset": "missing.npz"}, "does not exist"),
        ({"metric": "rmse"}, "does not fit a classification"),
        ({"metric": "mymod:auc"}, "needs higher_is_better"),
        ({"higher_is_better": False}, "contradicts"),
        ({"checkpoint": "nope.pt"}, "checkpoint 'nope.pt' does not exist"),
        ({"baseline_epochs": 0}, "baseline_epochs=0"),
        ({"latency_batch": 0}, "latency_batch=0"),
        ({"seed": -1}, "seed=-1"),
        ({"training": TrainingSettings(loss="mse")}, "training.loss='mse' does not fit"),
        ({"training": TrainingSettings(lr=5.0)}, "lr"),
        ({"name": ""}, "empty"),
    ],
)
def test_validate_rejects_bad_values(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _task(**changes).validate()


def test_load_builtin_model_and_example_input(digits) -> None:  # type: ignore[no-untyped-def]
    task = BUILTIN_TASKS["digits-cnn"]
    model = load_model(task, digits)
    x = example_input(task, digits, batch=3)
    assert x.dtype == torch.float32 and x.shape == (3, 1, 8, 8)
    assert model(x).shape == (3, 10)
    assert example_input(task, digits, batch=1000).shape[0] == 1000  # repeats rows past the split size


def _write_module(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / f"{name}.py"
    path.write_text("import torch\nfrom torch import nn\n" + body)
    return path


FACTORIES = """
def good():
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 10))

def three_classes():
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 3))

def raises():
    raise RuntimeError("no weights here")

def not_a_module():
    return 42

def wrong_input():
    return nn.Linear(5, 10)

def my_metric(y_true, y_pred):
    return float((y_true == y_pred).mean())
"""


def test_user_factories_by_module_and_by_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, digits) -> None:  # type: ignore[no-untyped-def]
    path = _write_module(tmp_path, "userfactories", FACTORIES)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert isinstance(load_model(_task(model="userfactories:good"), digits), torch.nn.Sequential)
    assert isinstance(load_model(_task(model=f"{path}:good"), digits), torch.nn.Sequential)
    metric = metric_of(_task(metric=f"{path}:my_metric", higher_is_better=True))
    assert metric.higher_is_better and metric.fn(np.array([1, 2]), np.array([1, 1])) == 0.5


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("no_such_module_xyz:good", "does not import.*ModuleNotFoundError"),
        ("userfactories:missing", "no callable 'missing'"),
        ("userfactories:raises", "raised RuntimeError: no weights here"),
        ("userfactories:not_a_module", "returned int"),
        ("userfactories:wrong_input", "fails on an input of shape"),
        ("userfactories:three_classes", r"outputs \(2, 3\).*needs \(2, 10\)"),
        ("broken:good", "does not import.*SyntaxError"),
        ("nofile.py:good", "does not exist"),
    ],
)
def test_bad_factories_give_config_errors(
    model: str, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, digits  # type: ignore[no-untyped-def]
) -> None:
    _write_module(tmp_path, "userfactories", FACTORIES)
    (tmp_path / "broken.py").write_text("def good(:\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match=message):
        load_model(_task(model=model), digits)


def test_regression_model_must_squeeze(digits) -> None:  # type: ignore[no-untyped-def]
    series = load_dataset("series", seed=0)
    task = BUILTIN_TASKS["series-regression"]
    assert load_model(task, series)(example_input(task, series, 4)).shape == (4,)
    with pytest.raises(ConfigError, match="regression task needs"):
        load_model(dataclasses.replace(task, model="mnist1d_cnn"), dataclasses.replace(series, x_val=series.x_val[:, :, :40]))


def _save_npz(path: Path, splits, **override: np.ndarray) -> Path:  # type: ignore[no-untyped-def]
    arrays = {k: getattr(splits, k) for k in NPZ_ARRAYS}
    arrays.update(override)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


def test_npz_dataset_loads(tmp_path: Path, digits) -> None:  # type: ignore[no-untyped-def]
    path = _save_npz(tmp_path / "d.npz", digits)
    splits = load_splits(_task(dataset=str(path)))
    assert splits.num_classes == 10 and splits.y_train.dtype == np.int64
    np.testing.assert_array_equal(splits.x_val, digits.x_val)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"y_calib": None}, r"lacks arrays \['y_calib'\]"),
        ({"x_val": "nan"}, "NaN"),
        ({"x_val": "overlap"}, "occur in both x_calib and x_val"),
        ({"y_train": "fractional"}, "integer class label"),
        ({"y_test": "short"}, "labels"),
    ],
)
def test_bad_npz_datasets(override: dict[str, object], message: str, tmp_path: Path, digits) -> None:  # type: ignore[no-untyped-def]
    (key, kind), = override.items()
    value = {
        None: None,
        "nan": np.where(np.arange(digits.x_val.size).reshape(digits.x_val.shape) == 5, np.nan, digits.x_val),
        "overlap": np.concatenate([digits.x_val[:-1], digits.x_calib[3:4]]),
        "fractional": digits.y_train + 0.5,
        "short": digits.y_test[:-1],
    }[kind]  # type: ignore[index]
    path = tmp_path / "bad.npz"
    arrays = {k: getattr(digits, k) for k in NPZ_ARRAYS}
    arrays[key] = value
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    with pytest.raises(ConfigError, match=message):
        load_splits(_task(dataset=str(path)))


def test_dataset_task_type_mismatch() -> None:
    with pytest.raises(ConfigError, match="regression dataset"):
        load_splits(_task(dataset="series"))


def test_baseline_trains_caches_and_retrains_on_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, digits  # type: ignore[no-untyped-def]
) -> None:
    task = BUILTIN_TASKS["digits-cnn"]
    start = time.perf_counter()
    model = baseline_model(task, digits, tmp_path)
    elapsed = time.perf_counter() - start
    acc = score(digits.y_val, predict(model, digits.x_val), "classification")["accuracy"]
    assert acc >= 0.9, f"digits-cnn baseline accuracy {acc:.3f} after {elapsed:.1f} s"
    assert (tmp_path / "baseline.pt").is_file() and not model.training

    calls = []
    real_train = training.train
    monkeypatch.setattr(training, "train", lambda *a, **k: calls.append(k) or real_train(*a, **k))
    cached = baseline_model(task, digits, tmp_path)
    assert calls == []  # loaded from cache
    for a, b in zip(model.state_dict().values(), cached.state_dict().values()):
        torch.testing.assert_close(a, b)
    baseline_model(dataclasses.replace(task, baseline_epochs=1), digits, tmp_path)
    assert len(calls) == 1 and calls[0]["epochs"] == 1  # changed task -> retrained


def test_baseline_from_checkpoint(tmp_path: Path, digits) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(3)
    source = load_model(BUILTIN_TASKS["digits-mlp"], digits)
    ckpt = tmp_path / "w.pt"
    torch.save(source.state_dict(), ckpt)
    loaded = baseline_model(_task(checkpoint=str(ckpt), baseline_epochs=0), digits, tmp_path / "cache")
    for a, b in zip(source.state_dict().values(), loaded.state_dict().values()):
        torch.testing.assert_close(a, b)
    assert not (tmp_path / "cache" / "baseline.pt").exists()
    torch.save(load_model(BUILTIN_TASKS["digits-2fcnet"], digits).state_dict(), ckpt)
    with pytest.raises(ConfigError, match="does not fit model"):
        baseline_model(_task(checkpoint=str(ckpt)), digits, tmp_path)
    torch.save({"model": torch.nn.Linear(2, 2)}, ckpt)  # pickled module: refused by weights_only
    with pytest.raises(ConfigError, match="weights_only"):
        baseline_model(_task(checkpoint=str(ckpt)), digits, tmp_path)


SANE = {  # task -> (metric, bound on validation)
    "digits-mlp": ("accuracy", 0.93),
    "digits-2fcnet": ("accuracy", 0.93),
    "digits-mobilenet": ("accuracy", 0.93),
    "mnist1d-cnn": ("accuracy", 0.85),
    "series-regression": ("rmse", 0.35),
}


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n == "mnist1d-cnn" else n for n in sorted(SANE)]
)
def test_builtin_baselines_reach_sane_quality(name: str, tmp_path: Path) -> None:
    task = BUILTIN_TASKS[name]
    splits = load_splits(task)
    model = baseline_model(task, splits, tmp_path)
    metric, bound = SANE[name]
    value = score(splits.y_val, predict(model, splits.x_val), task.task_type)[metric]
    assert value >= bound if metric == "accuracy" else value <= bound
