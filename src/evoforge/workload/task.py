"""The task: which model, which data, which quality measure, how to train the baseline.

A `Task` may hold the user's own Python objects (an ``nn.Module``, arrays, a ``Dataset``, a
``DataLoader``, an evaluation function). `materialize` turns it into pure data for a run: objects
are written into the run's ``inputs/`` folder and referenced as ``run:inputs/<file>``, relative
paths become absolute, and every referenced file and the data itself get a content hash
(``fingerprints``). Loading verifies those hashes, so a run never silently uses changed inputs.

The loaders turn a task into objects: `load_splits`, `load_model` (fresh: untrained from a
factory, or the stored object), `baseline_model` (the trained reference, cached by content),
`example_input`, `metric_of` and `quality`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from evoforge.errors import ConfigError
from evoforge.registry import Registry
from evoforge.workload.callables import (
    RUN_PREFIX,
    absolute_path,
    absolute_spec,
    file_sha256,
    is_spec,
    load_callable,
    load_object,
    save_object,
    spec_file,
)
from evoforge.workload.data import (
    ArraySplit,
    Split,
    Splits,
    as_split,
    flat_arrays,
    load_npz,
    output_batches,
    split_mapping,
    splits_from_mapping,
)
from evoforge.workload.datasets import DATASETS, load_dataset
from evoforge.workload.inputs import InputSpec, call_model
from evoforge.workload.metrics import METRICS, Metric, score_batches
from evoforge.workload.models import BUILTIN_MODELS
from evoforge.workload.recipe import CLASSIFICATION_LOSSES, REGRESSION_LOSSES, TrainingSettings

TASK_TYPES = ("classification", "regression")
INPUTS_DIR = "inputs"
DEFAULT_METRICS = {"classification": "accuracy", "regression": "rmse"}
CUSTOM_SCORE = "score"
"""Name of the value a user ``evaluate`` function returns when ``metric`` does not name it."""


@dataclasses.dataclass(frozen=True)
class Task:
    """What to compress and how to judge it.

    ``model``: a built-in model name (`BUILTIN_MODELS`, called with the number of classes, or 1
    for regression), ``"pkg.module:function"`` or ``"path/to/file.py:function"`` (called with no
    arguments), or in Python an ``nn.Module`` with its trained weights (used as it is, never
    retrained). ``checkpoint``: an optional ``torch.save``'d state_dict for a factory's model
    (loaded with ``weights_only=True``); without it, a factory's model is trained for
    ``baseline_epochs``.

    ``dataset``: a bundled dataset name (`DATASETS`), an ``.npz`` (``x_train``, ``y_train``,
    ``x_test``, ``y_test``, optionally the ``calib`` and ``val`` pairs; several inputs as
    ``x_<split>.<name>``), ``"pkg.module:function"`` returning the splits, or in Python a mapping
    ``{"train": ..., "test": ..., "calib"?: ..., "val"?: ...}`` whose values are ``(inputs,
    targets)`` arrays or tensors, torch ``Dataset``s or ``DataLoader``s.

    Quality: ``metric`` names a built-in metric of the task type (default accuracy or rmse) or a
    ``"pkg.module:function"`` taking ``(y_true, y_pred)``; ``evaluate`` is a function
    ``(model, data) -> float`` (a spec, or a callable in Python) for tasks where no label metric
    fits: ``data`` is a DataLoader of ``(inputs, targets)`` batches and ``model`` returns the
    output tensor. Custom measures need ``higher_is_better``. ``latency_batch`` is the batch
    size B at which latency and throughput are measured (besides batch 1).
    """

    name: str
    model: Any
    dataset: Any
    task_type: str = "classification"
    metric: str | None = None
    evaluate: Any = None
    higher_is_better: bool | None = None
    checkpoint: str | None = None
    baseline_epochs: int = 20
    batch_size: int = 64
    latency_batch: int = 64
    seed: int = 0
    training: TrainingSettings = TrainingSettings()
    fingerprints: Mapping[str, str] = dataclasses.field(default_factory=dict)

    # ----------------------------------------------------------------- data form
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (a task holding Python objects must be `materialize`d first)."""
        for field in ("model", "dataset", "evaluate"):
            value = getattr(self, field)
            if value is not None and not isinstance(value, str):
                raise ConfigError(f"task {field} is a {type(value).__name__} object; materialize the task into a run first")
        data = dataclasses.asdict(self)
        data["fingerprints"] = dict(self.fingerprints)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Task:
        """Build and `validate` a task from a dict (unknown keys are an error)."""
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - fields)
        if unknown:
            raise ConfigError(f"task has unknown keys {unknown}; valid keys: {', '.join(sorted(fields))}")
        training_data = data.get("training") or {}
        if isinstance(training_data, TrainingSettings):
            training_data = dataclasses.asdict(training_data)
        if not isinstance(training_data, Mapping):
            raise ConfigError(f"task.training must be a mapping of training settings, got {training_data!r}")
        train_fields = {f.name for f in dataclasses.fields(TrainingSettings)}
        bad = sorted(set(training_data) - train_fields)
        if bad:
            raise ConfigError(f"task.training has unknown keys {bad}; valid keys: {', '.join(sorted(train_fields))}")
        try:
            task = cls(**{**data, "training": TrainingSettings(**training_data), "fingerprints": dict(data.get("fingerprints") or {})})
        except TypeError as exc:
            raise ConfigError(f"task is incomplete: {exc}; give at least name, model and dataset") from None
        task.validate()
        return task

    @property
    def content_hash(self) -> str:
        """16 hex digits of sha256 over the canonical JSON of everything but ``name`` (Python
        objects count by their type: their content is fingerprinted separately)."""
        stand_in: dict[str, Any] = {f: f"<{type(getattr(self, f)).__name__}>" for f in ("model", "dataset", "evaluate")
                                    if getattr(self, f) is not None and not isinstance(getattr(self, f), str)}
        payload = {k: v for k, v in dataclasses.replace(self, **stand_in).to_dict().items() if k != "name"}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]

    @property
    def quality_metric(self) -> str:
        """Name of the quality value the search compares (a metric or the evaluate function's)."""
        if self.evaluate is not None:
            return self.metric or CUSTOM_SCORE
        return self.metric or DEFAULT_METRICS[self.task_type]

    def validate(self) -> None:
        """Raise `ConfigError` naming the first bad value and how to fix it.

        Checks types and ranges, that built-in names resolve, and that the metric and training
        loss fit the task type. Does not touch files, import user code or load data.
        """
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"task name {self.name!r} is empty; give the task a name")
        if self.task_type not in TASK_TYPES:
            raise ConfigError(f"task_type={self.task_type!r} is not supported; use one of {list(TASK_TYPES)}")
        if isinstance(self.model, str):
            if ":" not in self.model and self.model not in BUILTIN_MODELS:
                raise ConfigError(
                    f"model {self.model!r} is not a built-in model; use one of {', '.join(sorted(BUILTIN_MODELS))}, "
                    "'pkg.module:function', 'path/to/file.py:function' or (in Python) an nn.Module"
                )
        elif not isinstance(self.model, nn.Module):
            raise ConfigError(f"model is a {type(self.model).__name__}; give a model name, a factory spec or an nn.Module")
        elif self.checkpoint is not None:
            raise ConfigError("a model object carries its own weights; drop the checkpoint")
        if self.checkpoint is not None and not isinstance(self.checkpoint, str):
            raise ConfigError(f"checkpoint {self.checkpoint!r} must be a path to a saved state_dict")
        if isinstance(self.dataset, str):
            if not (self.dataset in DATASETS or self.dataset.endswith(".npz") or ":" in self.dataset):
                raise ConfigError(
                    f"dataset {self.dataset!r} is neither a bundled dataset ({', '.join(sorted(DATASETS))}), "
                    "a .npz path nor 'pkg.module:function'"
                )
        elif not isinstance(self.dataset, Mapping):
            raise ConfigError(
                f"dataset is a {type(self.dataset).__name__}; give a name, a .npz path, 'pkg.module:function' or "
                "(in Python) a mapping of splits such as {'train': loader, 'test': loader}"
            )
        self._validate_quality()
        trains = isinstance(self.model, str) and self.checkpoint is None
        for key, low in (("baseline_epochs", 1 if trains else 0), ("batch_size", 1), ("latency_batch", 1), ("seed", 0)):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"{key}={value!r} is invalid; use an integer >= {low}")
        self.training.validate()
        losses = CLASSIFICATION_LOSSES if self.task_type == "classification" else REGRESSION_LOSSES
        if self.training.loss not in losses:
            raise ConfigError(f"training.loss={self.training.loss!r} does not fit a {self.task_type} task; use one of {list(losses)}")

    def _validate_quality(self) -> None:
        if self.metric is not None and not isinstance(self.metric, str):
            raise ConfigError(f"metric {self.metric!r} must be a string")
        if self.evaluate is not None:
            if not (isinstance(self.evaluate, str) or callable(self.evaluate)):
                raise ConfigError(f"evaluate {self.evaluate!r} must be 'pkg.module:function' or a function (model, data) -> float")
            if self.metric in METRICS or (self.metric and ":" in self.metric):
                raise ConfigError(f"metric {self.metric!r} cannot name an evaluate function's value; use a plain name such as 'bleu'")
            if not isinstance(self.higher_is_better, bool):
                raise ConfigError("an evaluate function needs higher_is_better set to true or false")
            return
        if self.metric is not None and ":" in self.metric:
            if not isinstance(self.higher_is_better, bool):
                raise ConfigError(f"custom metric {self.metric!r} needs higher_is_better set to true or false")
            return
        valid = sorted(n for n, m in METRICS.items() if m.task_type == self.task_type)
        if self.quality_metric not in valid:
            raise ConfigError(
                f"metric {self.metric!r} does not fit a {self.task_type} task; use one of {valid}, 'pkg.module:function' "
                "or an evaluate function"
            )
        if self.higher_is_better is not None and self.higher_is_better != METRICS[self.quality_metric].higher_is_better:
            raise ConfigError(
                f"higher_is_better={self.higher_is_better} contradicts built-in metric {self.quality_metric!r}; leave it unset"
            )


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
    Task("resnet18-img32", "resnet18", "img32", baseline_epochs=15, latency_batch=32, training=TrainingSettings(lr=1e-3)),
    Task("mobilenet-img32", "mobilenet_v1", "img32", baseline_epochs=15, latency_batch=32, training=TrainingSettings(lr=1e-3)),
    Task(
        "bert-tokens", "bert_tokens", "tokens", baseline_epochs=15, latency_batch=32,
        training=TrainingSettings(optimizer="adamw", lr=5e-4, weight_decay=0.01),
    ),
):
    BUILTIN_TASKS.add(_task.name, _task)


# --------------------------------------------------------------------- run inputs
def materialize(task: Task, inputs_dir: Path, *, base: Path | None = None) -> Task:
    """The task as pure data for a run whose ``inputs/`` folder is ``inputs_dir``.

    Python objects are stored there (arrays as ``data.npz``; a model, Datasets and functions with
    cloudpickle) and referenced as ``run:inputs/<file>``; relative paths are made absolute from
    ``base`` (default: the working directory); every referenced file gets a sha256 fingerprint.
    Raises `ConfigError` for a referenced file that does not exist.
    """
    changes: dict[str, Any] = {}
    prints = dict(task.fingerprints)
    if isinstance(task.model, nn.Module):
        prints["model"] = save_object(task.model, inputs_dir / "model.pt")
        changes["model"] = f"{RUN_PREFIX}{INPUTS_DIR}/model.pt"
    elif is_spec(task.model):
        changes["model"] = absolute_spec(task.model, base)
    if task.checkpoint is not None:
        changes["checkpoint"] = absolute_path(task.checkpoint, base)
    if isinstance(task.dataset, Mapping):
        changes["dataset"] = _store_data(task, inputs_dir)
    elif task.dataset.endswith(".npz") and not task.dataset.startswith(RUN_PREFIX):
        changes["dataset"] = absolute_path(task.dataset, base)
    elif is_spec(task.dataset):
        changes["dataset"] = absolute_spec(task.dataset, base)
    if task.evaluate is not None and not isinstance(task.evaluate, str):
        prints["evaluate"] = save_object(task.evaluate, inputs_dir / "evaluate.pt")
        changes["evaluate"] = f"{RUN_PREFIX}{INPUTS_DIR}/evaluate.pt"
    elif isinstance(task.evaluate, str):
        changes["evaluate"] = absolute_spec(task.evaluate, base)
    if task.metric and ":" in task.metric:
        changes["metric"] = absolute_spec(task.metric, base)
    stored = dataclasses.replace(task, **changes)
    for role, path in referenced_files(stored, inputs_dir.parent).items():
        if not path.is_file():
            raise ConfigError(f"{role} file {str(path)!r} does not exist; check the path")
        prints.setdefault(role, file_sha256(path))
    return dataclasses.replace(stored, fingerprints=prints)


def _store_data(task: Task, inputs_dir: Path) -> str:
    given = split_mapping(task.dataset, "dataset")
    splits = {name: as_split(value, task.task_type, f"dataset {name} split") for name, value in given.items()}
    if all(isinstance(s, ArraySplit) for s in splits.values()):
        inputs_dir.mkdir(parents=True, exist_ok=True)
        arrays = flat_arrays(splits)
        np.savez(inputs_dir / "data.npz", **arrays)  # type: ignore[arg-type]
        return f"{RUN_PREFIX}{INPUTS_DIR}/data.npz"
    save_object(splits, inputs_dir / "data.pt")
    return f"{RUN_PREFIX}{INPUTS_DIR}/data.pt"


def referenced_files(task: Task, root: Path | None) -> dict[str, Path]:
    """Role -> path of every file the task references (factory or data ``.py`` files, the
    checkpoint, the dataset file, stored objects)."""
    out: dict[str, Path] = {}
    for role, value in (("model", task.model), ("dataset", task.dataset), ("evaluate", task.evaluate), ("metric", task.metric)):
        if not isinstance(value, str):
            continue
        if value.startswith(RUN_PREFIX):
            out[role] = resolve_ref(value, root)
        elif role == "dataset" and value.endswith(".npz"):
            out[role] = Path(value)
        elif (path := spec_file(value)) is not None:
            out[role] = Path(path)
    if task.checkpoint is not None:
        out["checkpoint"] = Path(task.checkpoint)
    return out


def resolve_ref(value: str, root: Path | None) -> Path:
    """The path of a ``run:<relative path>`` reference inside the run directory ``root``."""
    if root is None:
        raise ConfigError(f"{value!r} refers to a file inside a run directory; open the run to use it")
    return root / value[len(RUN_PREFIX):]


def verify_files(task: Task, root: Path | None) -> None:
    """Raise `ConfigError` when a file the task references is missing or changed since its
    fingerprint was taken."""
    for role, path in referenced_files(task, root).items():
        expected = task.fingerprints.get(role)
        if expected is None:
            continue
        if not path.is_file():
            raise ConfigError(f"the run's {role} file {str(path)!r} is missing; restore it to use this run")
        if file_sha256(path) != expected:
            raise ConfigError(
                f"the run's {role} file {str(path)!r} changed since the run started; restore the original or start a new run"
            )


# --------------------------------------------------------------------- loaders
def load_splits(task: Task, root: Path | None = None) -> Splits:
    """The task's data, verified against the run's fingerprints when it has them.

    Raises `ConfigError` on missing or changed files, data of the wrong kind, or a data
    fingerprint that differs from the one recorded when the run started.
    """
    verify_files(task, root)
    source = task.dataset
    what = f"dataset {source!r}" if isinstance(source, str) else "dataset"
    if isinstance(source, Mapping):
        splits = splits_from_mapping(source, task_type=task.task_type, seed=task.seed, what=what)
    elif source in DATASETS:
        splits = load_dataset(source, seed=task.seed)
        if splits.task_type != task.task_type:
            raise ConfigError(f"dataset {source!r} is a {splits.task_type} dataset but task_type={task.task_type!r}")
    elif source.startswith(RUN_PREFIX) and source.endswith(".npz"):
        splits = load_npz(str(resolve_ref(source, root)), task_type=task.task_type, seed=task.seed)
    elif source.startswith(RUN_PREFIX):
        stored = load_object(resolve_ref(source, root))
        splits = splits_from_mapping(stored, task_type=task.task_type, seed=task.seed, what="the run's stored dataset")
    elif source.endswith(".npz"):
        splits = load_npz(source, task_type=task.task_type, seed=task.seed)
    else:
        splits = _from_function(source, task)
    expected = task.fingerprints.get("data")
    if expected is not None and splits.fingerprint() != expected:
        raise ConfigError(f"the data of {what} changed since the run started; restore it or start a new run")
    return splits


def _from_function(spec: str, task: Task) -> Splits:
    result = call_dataset_function(spec, allow_splits=True)
    if isinstance(result, Splits):
        return result
    return splits_from_mapping(result, task_type=task.task_type, seed=task.seed, what=f"dataset function {spec!r}")


def call_dataset_function(spec: str, *, allow_splits: bool = False) -> Mapping[str, Any] | Splits:
    """What the dataset function ``spec`` (``pkg.module:function``) returns: a mapping of splits
    (or, with ``allow_splits``, a `Splits`); anything else, or an exception, is a `ConfigError`."""
    fn = load_callable(spec, "dataset function")
    try:
        result = fn()
    except Exception as exc:
        raise ConfigError(f"dataset function {spec!r} raised {type(exc).__name__}: {exc}; fix the function") from None
    if not isinstance(result, Mapping) and not (allow_splits and isinstance(result, Splits)):
        raise ConfigError(f"dataset function {spec!r} returned {type(result).__name__}; return a mapping of splits")
    return result


def with_data_fingerprint(task: Task, splits: Splits) -> Task:
    """The task with the fingerprint of its loaded data recorded (done once, when a run starts)."""
    return dataclasses.replace(task, fingerprints={**task.fingerprints, "data": splits.fingerprint()})


def num_outputs(task: Task, splits: Splits) -> int:
    """Model outputs the task needs: the number of classes, or 1 for regression."""
    return splits.num_classes if task.task_type == "classification" else 1


def example_input(splits: Splits, batch: int = 1) -> Any:
    """``batch`` validation inputs as tensors in the model's input structure (rows repeat if
    the split is smaller)."""
    return splits.val.take(batch)[0]


def load_model(task: Task, splits: Splits, root: Path | None = None) -> nn.Module:
    """A fresh model: untrained from the task's factory, or the stored model object (a new copy
    each call), checked with one forward pass on two validation examples.

    Raises `ConfigError` when the factory cannot be imported, raises, does not return an
    ``nn.Module``, or when the model's output does not fit the task (``(2, classes)``, or
    ``(2,)`` / ``(2, 1)`` for regression).
    """
    if isinstance(task.model, nn.Module):
        model = task.model
    elif task.model.startswith(RUN_PREFIX):
        verify_files(task, root)
        model = load_object(resolve_ref(task.model, root))
    else:
        args: tuple[int, ...] = ()
        if ":" in task.model:
            factory = load_callable(task.model, "model factory")
        else:
            factory, args = BUILTIN_MODELS[task.model], (num_outputs(task, splits),)
        try:
            model = factory(*args)
        except ConfigError:
            raise
        except Exception as exc:
            raise ConfigError(f"model factory {task.model!r} raised {type(exc).__name__}: {exc}; fix the factory") from None
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model factory {task.model!r} returned {type(model).__name__}, not a torch.nn.Module")
    _check_output(task, model, splits)
    return model


def _check_output(task: Task, model: nn.Module, splits: Splits) -> None:
    x, y = splits.val.take(2)
    name = task.model if isinstance(task.model, str) else type(task.model).__name__
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = call_model(model, x)
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(
            f"model {name!r} fails on inputs {_describe(x)} ({type(exc).__name__}: {exc}); make the model accept the dataset's inputs"
        ) from None
    finally:
        model.train(was_training)
    if task.evaluate is not None:
        return
    shape = tuple(out.shape)
    if task.task_type == "classification":
        ok = len(shape) == y.dim() + 1 and shape[:-1] == tuple(y.shape) and shape[-1] >= splits.num_classes
        need = str((*y.shape, splits.num_classes))
    else:
        ok = shape in ((2,), (2, 1))
        need = "(2,)"
    if not ok:
        raise ConfigError(f"model {name!r} outputs {shape} for inputs {_describe(x)}; a {task.task_type} task needs {need}")


def _describe(x: Any) -> str:
    spec = InputSpec.of(x)
    return str(dict(zip(spec.names, [("batch", *s) for s in spec.shapes]))) if spec.kind != "tensor" else str(("batch", *spec.shapes[0]))


def baseline_model(task: Task, splits: Splits, cache_dir: Path, *, root: Path | None = None, device: str = "cpu") -> nn.Module:
    """The trained reference model, in eval mode.

    A model object is used as given; a factory's model gets its checkpoint, or is trained with
    `evoforge.workload.training.train` (seed ``task.seed``) and cached in
    ``cache_dir/baseline.pt`` under a key of the task's content and data, so a changed task retrains.
    A factory's initial weights are drawn under ``task.seed`` too, so every command that trains
    the same task on the same data (compress, evolve) gets the same baseline and can reuse its cache.
    """
    with torch.random.fork_rng():
        torch.manual_seed(task.seed)
        model = load_model(task, splits, root)
    if not (isinstance(task.model, str) and not task.model.startswith(RUN_PREFIX)):
        return model.to(device).eval()
    if task.checkpoint is not None:
        _load_checkpoint(model, task.checkpoint)
        return model.to(device).eval()
    # the data's recorded fingerprint (compress records it, evolve does not) is the splits' own
    unrecorded = dataclasses.replace(task, fingerprints={k: v for k, v in task.fingerprints.items() if k != "data"})
    key = hashlib.sha256((unrecorded.content_hash + splits.fingerprint()).encode()).hexdigest()[:16]
    earlier_key = hashlib.sha256((task.content_hash + splits.fingerprint()).encode()).hexdigest()[:16]  # runs stored before
    cache = Path(cache_dir) / "baseline.pt"
    if cache.is_file():
        try:
            saved = torch.load(cache, map_location="cpu", weights_only=True)
        except Exception:
            saved = None
        if isinstance(saved, dict) and saved.get("key") in (key, earlier_key):
            model.load_state_dict(saved["state_dict"])
            return model.to(device).eval()
    from evoforge.workload.training import train

    with torch.random.fork_rng():
        torch.manual_seed(task.seed)
        train(model, splits, task.training, epochs=task.baseline_epochs, seed=task.seed, batch_size=task.batch_size, device=device)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(f".{cache.name}.{os.getpid()}.tmp")
    buffer = io.BytesIO()  # not saved to ``tmp`` directly: torch names the archive after its file, pid included
    torch.save({"key": key, "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}}, buffer)
    tmp.write_bytes(buffer.getvalue())
    os.replace(tmp, cache)
    return model.eval()


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


# --------------------------------------------------------------------- quality
def metric_of(task: Task) -> Metric:
    """The task's label metric: a `METRICS` entry, or the custom ``(y_true, y_pred)`` function
    with its declared direction. Tasks with an ``evaluate`` function have none."""
    name = task.quality_metric
    if ":" not in name:
        if name not in METRICS:
            raise ConfigError(f"task {task.name!r} scores with an evaluate function, not a label metric")
        return METRICS[name]
    if task.higher_is_better is None:
        raise ConfigError(f"custom metric {name!r} needs higher_is_better set to true or false")
    return Metric(name, task.task_type, task.higher_is_better, load_callable(name, "metric"))


def quality_direction(task: Task) -> tuple[bool, bool]:
    """(higher is better, values are fractions whose differences count in points)."""
    if task.evaluate is not None:
        return bool(task.higher_is_better), False
    metric = metric_of(task)
    return metric.higher_is_better, metric.percent


def quality(task: Task, model: Any, split: Split, *, root: Path | None = None, device: str = "cpu",
            evaluate: Callable[..., Any] | None = None) -> dict[str, float]:
    """Every quality value of ``model`` on ``split``: the built-in metrics of the task type plus
    a custom metric, or the value of the task's ``evaluate`` function (``evaluate`` may pass
    that function in, already loaded)."""
    if task.evaluate is not None:
        fn = evaluate or load_evaluate(task, root)
        try:
            value = float(fn(model, split.loader(task.batch_size)))
        except Exception as exc:
            raise ConfigError(f"evaluate function raised {type(exc).__name__}: {exc}") from exc
        return {task.quality_metric: value}
    from evoforge.workload.training import eval_mode

    metric = metric_of(task)
    extra = [] if metric.name in METRICS else [metric]
    with eval_mode(model):  # batch by batch: a language model's logits over the split would not fit in memory
        return score_batches(((y, out) for out, y in output_batches(model, split, 256, device)), task.task_type, extra=extra)


def load_evaluate(task: Task, root: Path | None = None) -> Callable[..., Any]:
    """The task's ``evaluate`` function (from its spec or the run's stored object)."""
    value = task.evaluate
    if callable(value):
        return value  # type: ignore[no-any-return]
    if not isinstance(value, str):
        raise ConfigError(f"task {task.name!r} has no evaluate function")
    if value.startswith(RUN_PREFIX):
        verify_files(task, root)
        fn = load_object(resolve_ref(value, root))
        if not callable(fn):
            raise ConfigError("the run's stored evaluate object is not callable")
        return fn  # type: ignore[no-any-return]
    return load_callable(value, "evaluate function")
