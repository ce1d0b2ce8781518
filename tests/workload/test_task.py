from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import evoforge.workload.training as training  # noqa: E402
from evoforge.cli import BUILTIN_TASK_NAMES  # noqa: E402
from evoforge.errors import ConfigError  # noqa: E402
from evoforge.workload.data import flat_arrays  # noqa: E402
from evoforge.workload.datasets import load_dataset  # noqa: E402
from evoforge.workload.metrics import score  # noqa: E402
from evoforge.workload.recipe import TrainingSettings  # noqa: E402
from evoforge.workload.task import (  # noqa: E402
    BUILTIN_TASKS,
    Task,
    baseline_model,
    example_input,
    load_model,
    load_splits,
    materialize,
    metric_of,
    quality,
    verify_files,
    with_data_fingerprint,
)
from evoforge.workload.training import predict  # noqa: E402

EXPECTED = {
    "digits-cnn", "digits-mlp", "mnist1d-cnn", "series-regression", "digits-mobilenet", "digits-2fcnet",
    "resnet18-img32", "mobilenet-img32", "bert-tokens",
}


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
    assert set(BUILTIN_TASK_NAMES) == EXPECTED  # the CLI's help lists them without importing torch
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
        ({"model": 42}, "give a model name"),
        ({"dataset": [1, 2]}, "give a name"),
        ({"evaluate": "m:f"}, "needs higher_is_better"),
        ({"evaluate": "m:f", "metric": "accuracy", "higher_is_better": True}, "cannot name an evaluate"),
        ({"task_type": "ranking"}, "task_type='ranking'"),
        ({"dataset": "imagenet"}, "neither a bundled dataset"),
        ({"metric": "rmse"}, "does not fit a classification"),
        ({"metric": "mymod:auc"}, "needs higher_is_better"),
        ({"higher_is_better": False}, "contradicts"),
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


def test_files_are_checked_when_a_run_takes_them(tmp_path: Path) -> None:
    for changes, message in (({"dataset": "missing.npz"}, "dataset file .*missing.npz.* does not exist"),
                             ({"checkpoint": "nope.pt"}, "checkpoint file .*nope.pt.* does not exist")):
        with pytest.raises(ConfigError, match=message):
            materialize(_task(**changes), tmp_path / "inputs", base=tmp_path)


def test_load_builtin_model_and_example_input(digits) -> None:  # type: ignore[no-untyped-def]
    task = BUILTIN_TASKS["digits-cnn"]
    model = load_model(task, digits)
    x = example_input(digits, batch=3)
    assert x.dtype == torch.float32 and x.shape == (3, 1, 8, 8)
    assert model(x).shape == (3, 10)
    assert example_input(digits, batch=1000).shape[0] == 1000  # repeats rows past the split size


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
        ("userfactories:wrong_input", "fails on inputs"),
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


def test_regression_model_gives_one_value_per_example(tmp_path: Path) -> None:
    series = load_dataset("series", seed=0)
    task = BUILTIN_TASKS["series-regression"]
    assert load_model(task, series)(example_input(series, 4)).shape == (4,)
    path = _write_module(tmp_path, "regressors", "def column():\n    return nn.Sequential(nn.Flatten(), nn.Linear(64, 1))\n"
                                                  "def three():\n    return nn.Sequential(nn.Flatten(), nn.Linear(64, 3))\n")
    assert load_model(dataclasses.replace(task, model=f"{path}:column"), series)(example_input(series, 4)).shape == (4, 1)
    with pytest.raises(ConfigError, match=r"outputs \(2, 3\).*regression task needs"):
        load_model(dataclasses.replace(task, model=f"{path}:three"), series)


def _save_npz(path: Path, splits, **override: np.ndarray) -> Path:  # type: ignore[no-untyped-def]
    arrays = flat_arrays({n: splits.split(n) for n in ("train", "calib", "val", "test")})
    arrays.update(override)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


def test_npz_dataset_loads(tmp_path: Path, digits) -> None:  # type: ignore[no-untyped-def]
    path = _save_npz(tmp_path / "d.npz", digits)
    splits = load_splits(_task(dataset=str(path)))
    assert splits.num_classes == 10 and splits.train.y.dtype == np.int64
    np.testing.assert_array_equal(splits.val.x, digits.val.x)
    assert splits.carved is None


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"y_calib": None}, "x_calib but no y_calib"),
        ({"x_val": "nan"}, "NaN"),
        ({"x_val": "overlap"}, "occur in both calib and val"),
        ({"y_train": "fractional"}, "integer class label"),
        ({"y_test": "short"}, "targets"),
        ({"x_train": None, "y_train": None}, "lacks the train split"),
    ],
)
def test_bad_npz_datasets(override: dict[str, object], message: str, tmp_path: Path, digits) -> None:  # type: ignore[no-untyped-def]
    values = {
        None: None,
        "nan": np.where(np.arange(digits.val.x.size).reshape(digits.val.x.shape) == 5, np.nan, digits.val.x),
        "overlap": np.concatenate([digits.val.x[:-1], digits.calib.x[3:4]]),
        "fractional": digits.train.y + 0.5,
        "short": digits.test.y[:-1],
    }
    path = tmp_path / "bad.npz"
    arrays = flat_arrays({n: digits.split(n) for n in ("train", "calib", "val", "test")})
    arrays.update({key: values[kind] for key, kind in override.items()})  # type: ignore[index]
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
    acc = score(digits.val.y, predict(model, digits.val)[0], "classification")["accuracy"]
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


def test_baseline_depends_on_the_task_alone_and_is_shared_by_compress_and_evolve(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, digits  # type: ignore[no-untyped-def]
) -> None:
    task = dataclasses.replace(BUILTIN_TASKS["digits-mlp"], baseline_epochs=1)
    torch.manual_seed(1)
    first = baseline_model(task, digits, tmp_path / "a")
    torch.manual_seed(2)
    torch.rand(1000)  # whatever drew from torch's generator before must not change the initial weights
    with monkeypatch.context() as another_process:
        another_process.setattr(os, "getpid", lambda: 4242)
        second = baseline_model(task, digits, tmp_path / "b")
    for a, b in zip(first.state_dict().values(), second.state_dict().values()):
        torch.testing.assert_close(a, b)
    assert (tmp_path / "a" / "baseline.pt").read_bytes() == (tmp_path / "b" / "baseline.pt").read_bytes()  # files compare too
    calls = []
    monkeypatch.setattr(training, "train", lambda *a, **k: calls.append(k))
    baseline_model(with_data_fingerprint(task, digits), digits, tmp_path / "a")  # compress records the data's fingerprint
    assert calls == []  # the cache that a run without the record wrote is reused


def test_baseline_from_checkpoint(tmp_path: Path, digits) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(3)
    source = load_model(BUILTIN_TASKS["digits-mlp"], digits)
    ckpt = tmp_path / "w.pt"
    torch.save(source.state_dict(), ckpt)
    loaded = baseline_model(_task(checkpoint=str(ckpt), baseline_epochs=0), digits, tmp_path / "cache")  # type: ignore[arg-type]
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
    value = score(splits.val.y, predict(model, splits.val)[0], task.task_type)[metric]
    assert value >= bound if metric == "accuracy" else value <= bound


def test_a_model_object_is_stored_in_the_run_and_used_as_given(tmp_path: Path, digits) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    task = materialize(Task("obj", model, {"train": (digits.train.x, digits.train.y), "test": (digits.test.x, digits.test.y)}),
                       tmp_path / "inputs")
    assert task.model == "run:inputs/model.pt" and task.dataset == "run:inputs/data.npz"
    assert {"model", "dataset"} <= set(task.fingerprints)
    Task.from_dict(task.to_dict())  # pure data now
    splits = load_splits(task, tmp_path)
    assert splits.carved is not None and splits.carved["sizes"]["val"] > 0  # calib and val carved off train
    again = baseline_model(task, splits, tmp_path / "baseline", root=tmp_path)
    for a, b in zip(model.state_dict().values(), again.state_dict().values()):
        torch.testing.assert_close(a, b)  # never retrained
    assert not (tmp_path / "baseline" / "baseline.pt").exists()


def test_changed_input_files_are_refused(tmp_path: Path, digits) -> None:  # type: ignore[no-untyped-def]
    path = _save_npz(tmp_path / "d.npz", digits)
    task = materialize(_task(dataset="d.npz"), tmp_path / "run" / "inputs", base=tmp_path)
    assert task.dataset == str(path) and len(task.fingerprints["dataset"]) == 64
    verify_files(task, tmp_path / "run")
    _save_npz(path, digits, y_test=digits.test.y[::-1].copy())
    with pytest.raises(ConfigError, match="changed since the run started"):
        load_splits(task, tmp_path / "run")
    path.unlink()
    with pytest.raises(ConfigError, match="is missing"):
        verify_files(task, tmp_path / "run")


def test_user_evaluate_function_scores_instead_of_a_metric(tmp_path: Path, digits) -> None:  # type: ignore[no-untyped-def]
    seen = {}

    def top_class_share(model, data):  # type: ignore[no-untyped-def]
        seen["batches"] = sum(1 for _ in data)
        preds = torch.cat([model(x).argmax(1) for x, _ in data])
        return float((preds == 0).float().mean())

    task = _task(evaluate=top_class_share, metric="zeros", higher_is_better=False)
    assert task.quality_metric == "zeros"
    model = load_model(BUILTIN_TASKS["digits-mlp"], digits)
    values = quality(task, model, digits.val)
    assert set(values) == {"zeros"} and 0.0 <= values["zeros"] <= 1.0 and seen["batches"] == -(-len(digits.val) // 64)
    stored = materialize(task, tmp_path / "inputs")
    assert stored.evaluate == "run:inputs/evaluate.pt"
    assert quality(stored, model, digits.val, root=tmp_path) == values


def test_per_position_labels_with_ignored_positions() -> None:
    """Token tagging: outputs (N, L, classes), labels (N, L) with -100 where nothing counts."""
    from evoforge.workload.data import splits_from_mapping
    from evoforge.workload.training import train as fit

    rng = np.random.default_rng(0)
    ids = rng.integers(0, 20, (300, 8)).astype(np.int64)
    tags = (ids % 3).astype(np.int64)
    tags[:, 6:] = -100  # padding positions
    splits = splits_from_mapping({"train": (ids, tags), "test": (ids[:60], tags[:60])}, task_type="classification", seed=0,
                                 what="data")
    model = torch.nn.Sequential(torch.nn.Embedding(20, 16), torch.nn.Linear(16, 3))
    task = Task("tagger", model, {"train": (ids, tags), "test": (ids[:60], tags[:60])})
    assert load_model(task, splits) is model  # (N, L, 3) outputs fit (N, L) labels
    fit(model, splits, TrainingSettings(lr=1e-2), epochs=15, seed=0)
    assert quality(task, model, splits.test)["accuracy"] > 0.9  # scored on the counted positions only


def test_a_language_models_logits_are_scored_batch_by_batch_never_held_for_the_whole_split() -> None:
    import tracemalloc

    from evoforge.workload.data import splits_from_mapping

    vocab, length, n = 2000, 32, 768  # 196 MB of float32 logits over the split, 65 MB per batch of 256
    ids = np.random.default_rng(0).integers(0, vocab, (n, length)).astype(np.int64)
    splits = splits_from_mapping({"train": (ids, ids), "test": (ids, ids)}, task_type="classification", seed=0, what="data")

    class Echo(torch.nn.Module):
        """Logits that predict each position's own token, except position 0."""
        def forward(self, x):  # type: ignore[no-untyped-def]
            logits = torch.nn.functional.one_hot(x, vocab).float()
            logits[:, 0] = torch.roll(logits[:, 0], 1, dims=-1)
            return logits

    task = Task("lm", Echo(), {"train": (ids, ids), "test": (ids, ids)})
    tracemalloc.start()
    try:
        values = quality(task, Echo(), splits.test)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert values["accuracy"] == pytest.approx((length - 1) / length)
    assert peak < 40e6, f"{peak / 1e6:.0f} MB traced: the split's logits were kept"


@pytest.mark.parametrize("name", ["img32", "tokens"])
def test_generated_datasets_for_the_real_architectures(name: str) -> None:
    splits = load_dataset(name)
    again = load_dataset(name)
    assert splits.fingerprint() == again.fingerprint()  # deterministic
    if name == "img32":
        assert splits.input_spec.shapes == ((3, 32, 32),) and splits.num_classes == 10
        assert (len(splits.train), len(splits.calib), len(splits.val), len(splits.test)) == (7200, 1200, 1800, 1800)
        assert set(np.bincount(splits.test.y)) == {180}  # balanced
    else:
        spec = splits.input_spec
        assert spec.names == ("input_ids", "attention_mask") and spec.dtypes == ("int64", "int64") and splits.num_classes == 4
        ids = splits.train.x["input_ids"]
        assert ids.max() < 1000 and (ids[:, 0] == 1).all()  # within the vocabulary, [CLS] first


def test_a_data_function_returns_the_splits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "mydata.py").write_text(
        "import numpy as np\n"
        "def splits():\n"
        "    rng = np.random.default_rng(0)\n"
        "    x = rng.normal(size=(200, 1, 8, 8)).astype(np.float32)\n"
        "    return {'train': (x[:150], np.arange(150) % 10), 'test': (x[150:], np.arange(50) % 10)}\n"
        "def broken():\n"
        "    return [1, 2]\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    splits = load_splits(_task(dataset="mydata:splits"))
    assert len(splits.test) == 50 and splits.carved is not None and splits.num_classes == 10
    stored = materialize(_task(dataset=f"{tmp_path / 'mydata.py'}:splits"), tmp_path / "run" / "inputs")
    assert "dataset" in stored.fingerprints  # the function's file is fingerprinted
    with pytest.raises(ConfigError, match="returned list; return a mapping of splits"):
        load_splits(_task(dataset="mydata:broken"))


def test_flat_arrays_given_in_python_are_stored_as_npz(tmp_path: Path, digits) -> None:  # type: ignore[no-untyped-def]
    arrays = {"x_train": digits.train.x, "y_train": digits.train.y, "x_test": digits.test.x, "y_test": digits.test.y}
    task = materialize(_task(dataset=arrays), tmp_path / "inputs")
    assert task.dataset == "run:inputs/data.npz"
    splits = load_splits(task, tmp_path)
    np.testing.assert_array_equal(splits.test.x, digits.test.x)
