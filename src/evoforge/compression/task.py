"""The user-facing compression task: which model, which data, which metric, how to train the baseline.

A `Task` is pure data (JSON via `Task.to_dict` / `Task.from_dict`). The functions below turn it into
objects: `load_splits`, `load_model` (fresh, untrained), `example_input`, `metric_of` and
`baseline_model` (the trained reference, cached on disk by task content).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.util
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from evoforge.compression.genome import CLASSIFICATION_LOSSES, REGRESSION_LOSSES, TrainingSettings
from evoforge.compression.quality import METRICS, Metric
from evoforge.datasets import DATASETS, Splits, load_dataset
from evoforge.errors import ConfigError
from evoforge.models import BUILTIN_MODELS
from evoforge.registry import Registry

TASK_TYPES = ("classification", "regression")
NPZ_ARRAYS = tuple(f"{a}_{s}" for s in ("train", "calib", "val", "test") for a in ("x", "y"))


@dataclasses.dataclass(frozen=True)
class Task:
    """What to compress and how to judge it.

    ``model`` is a built-in model name (see `evoforge.models.BUILTIN_MODELS`, called with the
    number of classes, or 1 for regression), ``"pkg.module:function"`` or
    ``"path/to/file.py:function"`` (called with no arguments). ``checkpoint`` is an optional
    ``torch.save``'d state_dict for that model (loaded with ``weights_only=True``); without it the
    baseline is trained for ``baseline_epochs``. ``dataset`` is a bundled dataset name or a ``.npz``
    with the arrays in `NPZ_ARRAYS`. ``metric`` is a built-in metric of the task type or
    ``"pkg.module:function"`` taking ``(y_true, y_pred)`` (labels for classification) whose
    direction is given by ``higher_is_better``. ``latency_batch`` is the batch size B at which
    latency and throughput are measured (besides batch 1).
    """

    name: str
    model: str
    dataset: str
    task_type: str = "classification"
    metric: str = "accuracy"
    higher_is_better: bool | None = None
    checkpoint: str | None = None
    baseline_epochs: int = 20
    batch_size: int = 64
    latency_batch: int = 64
    seed: int = 0
    training: TrainingSettings = TrainingSettings()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; `from_dict` inverts it."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Task:
        """Build and `validate` a task from a dict (unknown keys are an error)."""
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - fields)
        if unknown:
            raise ConfigError(f"task has unknown keys {unknown}; valid keys: {', '.join(sorted(fields))}")
        training_data = data.get("training") or {}
        if not isinstance(training_data, dict):
            raise ConfigError(f"task.training must be a mapping of training settings, got {training_data!r}")
        train_fields = {f.name for f in dataclasses.fields(TrainingSettings)}
        bad = sorted(set(training_data) - train_fields)
        if bad:
            raise ConfigError(f"task.training has unknown keys {bad}; valid keys: {', '.join(sorted(train_fields))}")
        try:
            task = cls(**{**data, "training": TrainingSettings(**training_data)})
        except TypeError as exc:
            raise ConfigError(f"task is incomplete: {exc}; give at least name, model and dataset") from None
        task.validate()
        return task

    @property
    def content_hash(self) -> str:
        """16 hex digits of sha256 over the canonical JSON of everything but ``name``."""
        payload = {k: v for k, v in self.to_dict().items() if k != "name"}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]

    def validate(self) -> None:
        """Raise `ConfigError` naming the first bad value and how to fix it.

        Checks types and ranges, that named files exist, that built-in names resolve, and that the
        metric and training loss fit the task type. Does not import user code or load data.
        """
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"task name {self.name!r} is empty; give the task a name")
        if self.task_type not in TASK_TYPES:
            raise ConfigError(f"task_type={self.task_type!r} is not supported; use one of {list(TASK_TYPES)}")
        if not isinstance(self.model, str) or (":" not in self.model and self.model not in BUILTIN_MODELS):
            raise ConfigError(
                f"model {self.model!r} is not a built-in model; use one of {', '.join(sorted(BUILTIN_MODELS))}, "
                "'pkg.module:function' or 'path/to/file.py:function'"
            )
        if self.checkpoint is not None and not Path(self.checkpoint).is_file():
            raise ConfigError(f"checkpoint {self.checkpoint!r} does not exist; give the path of a saved state_dict")
        self._validate_dataset()
        self._validate_metric()
        for key, low in (("baseline_epochs", 0 if self.checkpoint else 1), ("batch_size", 1), ("latency_batch", 1), ("seed", 0)):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"{key}={value!r} is invalid; use an integer >= {low}")
        self.training.validate()
        losses = CLASSIFICATION_LOSSES if self.task_type == "classification" else REGRESSION_LOSSES
        if self.training.loss not in losses:
            raise ConfigError(
                f"training.loss={self.training.loss!r} does not fit a {self.task_type} task; use one of {list(losses)}"
            )

    def _validate_dataset(self) -> None:
        if not isinstance(self.dataset, str):
            raise ConfigError(f"dataset {self.dataset!r} must be a string: a bundled dataset name or a .npz path")
        if self.dataset.endswith(".npz"):
            if not Path(self.dataset).is_file():
                raise ConfigError(f"dataset file {self.dataset!r} does not exist; give the path of an existing .npz")
        elif self.dataset not in DATASETS:
            raise ConfigError(
                f"dataset {self.dataset!r} is neither a bundled dataset ({', '.join(sorted(DATASETS))}) nor a .npz path"
            )

    def _validate_metric(self) -> None:
        if not isinstance(self.metric, str):
            raise ConfigError(f"metric {self.metric!r} must be a string")
        if ":" in self.metric:
            if not isinstance(self.higher_is_better, bool):
                raise ConfigError(f"custom metric {self.metric!r} needs higher_is_better set to true or false")
            return
        valid = sorted(n for n, m in METRICS.items() if m.task_type == self.task_type)
        if self.metric not in valid:
            raise ConfigError(f"metric {self.metric!r} does not fit a {self.task_type} task; use one of {valid} or 'pkg.module:function'")
        if self.higher_is_better is not None and self.higher_is_better != METRICS[self.metric].higher_is_better:
            raise ConfigError(f"higher_is_better={self.higher_is_better} contradicts built-in metric {self.metric!r}; leave it unset")


BUILTIN_TASKS: Registry[Task] = Registry("built-in task")
for _task in (
    Task("digits-cnn", "digits_cnn", "digits", baseline_epochs=10, training=TrainingSettings(lr=3e-3)),
    Task("digits-mlp", "digits_mlp", "digits", baseline_epochs=30, training=TrainingSettings(lr=1e-3)),
    Task("mnist1d-cnn", "mnist1d_cnn", "mnist1d", baseline_epochs=30, training=TrainingSettings(lr=3e-3)),
    Task(
        "series-regression", "series_cnn", "series", task_type="regression", metric="rmse",
        baseline_epochs=30, training=TrainingSettings(lr=3e-3, loss="mse"),
    ),
    Task("digits-mobilenet", "digits_mobilenet", "digits", baseline_epochs=20, training=TrainingSettings(lr=3e-3)),
    Task("digits-2fcnet", "two_fc_net", "digits", baseline_epochs=30, training=TrainingSettings(lr=3e-3)),
):
    BUILTIN_TASKS.add(_task.name, _task)


def load_callable(spec: str, what: str) -> Callable[..., Any]:
    """Resolve ``"pkg.module:function"`` or ``"path/to/file.py:function"`` to the function.

    Raises `ConfigError` when the module does not import or has no such callable.
    """
    module_part, sep, attr = spec.rpartition(":")
    if not sep or not module_part or not attr:
        raise ConfigError(f"{what} {spec!r} is not of the form 'pkg.module:function' or 'path/to/file.py:function'")
    try:
        if module_part.endswith(".py"):
            path = Path(module_part).resolve()
            if not path.is_file():
                raise ConfigError(f"{what} file {module_part!r} does not exist; give an existing .py path")
            mod_name = "_evoforge_user_" + hashlib.sha256(str(path).encode()).hexdigest()[:12]
            module = sys.modules.get(mod_name)
            if module is None:
                file_spec = importlib.util.spec_from_file_location(mod_name, path)
                if file_spec is None or file_spec.loader is None:
                    raise ConfigError(f"{what} file {module_part!r} cannot be loaded as a Python module")
                module = importlib.util.module_from_spec(file_spec)
                sys.modules[mod_name] = module
                try:
                    file_spec.loader.exec_module(module)
                except BaseException:
                    del sys.modules[mod_name]
                    raise
        else:
            module = importlib.import_module(module_part)
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(
            f"{what} module {module_part!r} does not import ({type(exc).__name__}: {exc}); fix the module or the path"
        ) from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ConfigError(f"{what} {spec!r}: module {module_part!r} has no callable {attr!r}; check the function name")
    return fn  # type: ignore[no-any-return]


def metric_of(task: Task) -> Metric:
    """The task's metric: a `METRICS` entry, or the custom function with its declared direction."""
    if ":" not in task.metric:
        return METRICS[task.metric]
    if task.higher_is_better is None:
        raise ConfigError(f"custom metric {task.metric!r} needs higher_is_better set to true or false")
    return Metric(task.metric, task.task_type, task.higher_is_better, load_callable(task.metric, "metric"))


def load_splits(task: Task) -> Splits:
    """The task's data: a bundled dataset (split with ``task.seed``) or the arrays of a ``.npz``.

    Raises `ConfigError` when any input row occurs in both calibration and validation and, for a
    ``.npz``, on missing arrays, mismatched shapes, non-finite values or non-integer class labels.
    """
    if not task.dataset.endswith(".npz"):
        splits = load_dataset(task.dataset, seed=task.seed)
        if splits.task_type != task.task_type:
            raise ConfigError(f"dataset {task.dataset!r} is a {splits.task_type} dataset but task_type={task.task_type!r}")
    else:
        splits = _load_npz(task)
    overlap = _shared_rows(splits.x_calib, splits.x_val)
    if overlap:
        raise ConfigError(
            f"dataset {task.dataset!r}: {overlap} input rows occur in both x_calib and x_val; "
            "calibration and validation must not overlap"
        )
    return splits


def _load_npz(task: Task) -> Splits:
    try:
        npz = np.load(task.dataset, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"dataset {task.dataset!r} is not a readable .npz file ({exc})") from None
    with npz:
        missing = [k for k in NPZ_ARRAYS if k not in npz.files]
        if missing:
            raise ConfigError(f"dataset {task.dataset!r} lacks arrays {missing}; save all of {list(NPZ_ARRAYS)}")
        try:
            arrays = {k: npz[k] for k in NPZ_ARRAYS}
        except ValueError:
            raise ConfigError(f"dataset {task.dataset!r} holds object arrays; save plain numeric arrays") from None
    for k, a in arrays.items():
        if a.dtype.kind not in "fiub":
            raise ConfigError(f"dataset array {k} has dtype {a.dtype}; use numeric arrays")
    num_classes = 0
    for k in ("x_train", "x_calib", "x_val", "x_test"):
        arrays[k] = arrays[k].astype(np.float32)
    for k in ("y_train", "y_calib", "y_val", "y_test"):
        y = arrays[k]
        if task.task_type == "classification":
            if y.ndim != 1 or not np.all(np.isfinite(y)) or not np.all(y == np.round(y)) or np.any(y < 0):
                raise ConfigError(f"dataset array {k} must hold one non-negative integer class label per example")
            arrays[k] = y.astype(np.int64)
            num_classes = max(num_classes, int(arrays[k].max(initial=-1)) + 1)
        else:
            arrays[k] = y.astype(np.float32)
    splits = Splits(**arrays, task_type=task.task_type, num_classes=num_classes)
    splits.check()
    return splits


def _shared_rows(a: np.ndarray, b: np.ndarray) -> int:
    """Number of rows of ``b`` whose bytes also occur as a row of ``a``."""
    seen = {hashlib.sha256(row.tobytes()).digest() for row in np.ascontiguousarray(a)}
    return sum(hashlib.sha256(row.tobytes()).digest() in seen for row in np.ascontiguousarray(b))


def num_outputs(task: Task, splits: Splits) -> int:
    """Model outputs the task needs: the number of classes, or 1 for regression."""
    return splits.num_classes if task.task_type == "classification" else 1


def example_input(task: Task, splits: Splits, batch: int = 1) -> torch.Tensor:
    """``batch`` validation inputs as a float tensor (rows repeat if the split is smaller)."""
    x = splits.x_val
    rows = np.resize(np.arange(len(x)), batch)
    return torch.as_tensor(np.ascontiguousarray(x[rows]), dtype=torch.float32)


def load_model(task: Task, splits: Splits | None = None) -> nn.Module:
    """A fresh, untrained model from the task's factory, checked with one forward pass.

    Raises `ConfigError` when the factory cannot be imported, raises, does not return an
    ``nn.Module``, or when its output for a batch of 2 is not (2, classes) / (2,) for regression.
    ``splits`` (loaded from the task when omitted) gives the input shape and class count.
    """
    task.validate()
    splits = splits if splits is not None else load_splits(task)
    outputs = num_outputs(task, splits)
    if ":" in task.model:
        factory = load_callable(task.model, "model factory")
        args: tuple[int, ...] = ()
    else:
        factory, args = BUILTIN_MODELS[task.model], (outputs,)
    try:
        model = factory(*args)
    except Exception as exc:
        raise ConfigError(f"model factory {task.model!r} raised {type(exc).__name__}: {exc}; fix the factory") from None
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model factory {task.model!r} returned {type(model).__name__}, not a torch.nn.Module")
    x = example_input(task, splits, batch=2)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(x)
    except Exception as exc:
        raise ConfigError(
            f"model {task.model!r} fails on an input of shape {tuple(x.shape)} ({type(exc).__name__}: {exc}); "
            "make the model accept the dataset's inputs"
        ) from None
    model.train(was_training)
    expected = (2, outputs) if task.task_type == "classification" else (2,)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != expected:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ConfigError(
            f"model {task.model!r} outputs {shape} for input {tuple(x.shape)}; a {task.task_type} task needs {expected}"
        )
    return model


def baseline_model(task: Task, splits: Splits, cache_dir: Path, *, device: str = "cpu") -> nn.Module:
    """The trained reference model, in eval mode.

    With a checkpoint: the fresh model with that state_dict loaded. Otherwise trained with
    `evoforge.compression.training.train` (seed ``task.seed``) and cached in ``cache_dir/baseline.pt``
    under a key of the task's content hash and the training data, so a changed task retrains.
    """
    model = load_model(task, splits)
    if task.checkpoint is not None:
        _load_checkpoint(model, task.checkpoint)
        return model.to(device).eval()
    key = _cache_key(task, splits)
    cache = Path(cache_dir) / "baseline.pt"
    if cache.is_file():
        try:
            saved = torch.load(cache, map_location="cpu", weights_only=True)
        except Exception:
            saved = None
        if isinstance(saved, dict) and saved.get("key") == key:
            model.load_state_dict(saved["state_dict"])
            return model.to(device).eval()
    from evoforge.compression.training import train

    train(model, splits, task.training, epochs=task.baseline_epochs, seed=task.seed, batch_size=task.batch_size, device=device)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(f".{cache.name}.{os.getpid()}.tmp")
    torch.save({"key": key, "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}}, tmp)
    os.replace(tmp, cache)
    return model.eval()


def _cache_key(task: Task, splits: Splits) -> str:
    h = hashlib.sha256(task.content_hash.encode())
    for a in (splits.x_train, splits.y_train, splits.x_val, splits.y_val):
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def _load_checkpoint(model: nn.Module, path: str) -> None:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ConfigError(f"checkpoint {path!r} is not a state_dict readable with weights_only=True ({type(exc).__name__})") from None
    if not isinstance(state, dict):
        raise ConfigError(f"checkpoint {path!r} holds a {type(state).__name__}; save model.state_dict() instead")
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise ConfigError(f"checkpoint {path!r} does not fit model: {' '.join(first[:2])[:300]}") from None
