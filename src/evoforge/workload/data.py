"""Data splits a run reads in batches, whatever the user holds: numpy arrays, torch tensors,
a map-style dataset (a torch ``Dataset``, a HuggingFace ``datasets.Dataset``, a list) of pairs or
of dicts with a ``labels`` entry, a ``DataLoader``, an ``.npz`` file, or a function returning any
of these.

Every consumer (training, calibration, scoring, timing) reads a `Split` batch by batch, so a
dataset larger than memory streams through its ``Dataset`` and nothing needs the whole set as
one array. Inputs keep their structure (a tensor, a tuple, a dict) and their dtypes, except that
floating-point inputs are used as float32. Targets are int64 class labels (``-100`` marks a
position to ignore, as in per-token labelling) or float32 values.

When only train and test are given, calibration and validation are carved off the train split
(seeded, stratified by class where targets are one label per example); `Splits.carved` records
how, and the run stores that record.
"""

from __future__ import annotations

import abc
import dataclasses
import hashlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from evoforge.errors import ConfigError
from evoforge.hostlock import compute_step
from evoforge.workload.inputs import InputSpec, leaves, rows, structure_map, take_rows, to_arrays, to_tensors
from evoforge.workload.metrics import IGNORE_LABEL

SPLITS = ("train", "calib", "val", "test")

CARVE_FRACTIONS = {"calib": 0.10, "val": 0.15}
"""Shares of the given train split carved off as calibration and validation when they are missing."""

_FINGERPRINT_SAMPLE = 8  # examples from each end of a Dataset split that its fingerprint reads


class Split(abc.ABC):
    """One split of a dataset: examples ``(inputs, target)`` read in batches of torch tensors."""

    @abc.abstractmethod
    def __len__(self) -> int:
        """Number of examples."""

    @abc.abstractmethod
    def batches(self, batch_size: int, order: Sequence[int] | Tensor | None = None) -> Iterator[tuple[Any, Tensor]]:
        """Batches ``(inputs, targets)`` as CPU tensors, in ``order`` (example indices, any number
        of them; default every example in the stored order). The last batch may be smaller."""

    @abc.abstractmethod
    def subset(self, indices: np.ndarray) -> Split:
        """The examples at ``indices`` as a split of the same kind (no copy for Datasets)."""

    def take(self, n: int) -> tuple[Any, Tensor]:
        """The first ``n`` examples as one batch (repeating from the start when the split is smaller)."""
        index = np.resize(np.arange(len(self)), n)
        return next(self.subset(index).batches(n))

    def targets(self) -> np.ndarray:
        """Every target, in order (one pass over the split)."""
        return np.concatenate([y.numpy() for _, y in self.batches(256)])

    def loader(self, batch_size: int) -> torch.utils.data.DataLoader[Any]:
        """A DataLoader over the split in order, yielding ``(inputs, targets)`` batches."""
        return torch.utils.data.DataLoader(_SplitDataset(self), batch_size=batch_size, shuffle=False)

    def fingerprint(self) -> str:
        """A hash of the split's length and contents (all of them for arrays, a sample from each
        end for Datasets), to detect changed data."""
        digest = hashlib.sha256(str(len(self)).encode())
        n = len(self)
        ends = sorted(set(range(min(n, _FINGERPRINT_SAMPLE))) | set(range(max(0, n - _FINGERPRINT_SAMPLE), n)))
        x, y = next(self.subset(np.array(ends)).batches(len(ends)))
        for leaf in [*leaves(x), y]:
            digest.update(np.ascontiguousarray(leaf.numpy()).tobytes())
        return digest.hexdigest()


class ArraySplit(Split):
    """Examples held as numpy arrays: inputs (an array, a tuple or a dict of arrays) and targets."""

    def __init__(self, x: Any, y: np.ndarray) -> None:
        self.x = x
        self.y = y

    def __len__(self) -> int:
        return len(self.y)

    def batches(self, batch_size: int, order: Sequence[int] | Tensor | None = None) -> Iterator[tuple[Any, Tensor]]:
        index = None if order is None else np.asarray(order.numpy() if isinstance(order, Tensor) else order)
        for start in range(0, len(self) if index is None else len(index), batch_size):
            chunk = slice(start, start + batch_size) if index is None else index[start : start + batch_size]
            yield to_tensors(take_rows(self.x, chunk)), torch.as_tensor(self.y[chunk])

    def subset(self, indices: np.ndarray) -> ArraySplit:
        return ArraySplit(take_rows(self.x, indices), self.y[indices])

    def targets(self) -> np.ndarray:
        return self.y

    def fingerprint(self) -> str:
        digest = hashlib.sha256(str(len(self)).encode())
        for leaf in [*leaves(self.x), self.y]:
            digest.update(str(leaf.dtype).encode() + str(leaf.shape).encode())
            digest.update(np.ascontiguousarray(leaf).tobytes())
        return digest.hexdigest()


TARGET_KEYS = ("labels", "label")
"""Where a dict item or batch holds its target, as HuggingFace's datasets and collators name it."""


def _inputs_and_target(batch: Any) -> tuple[Any, Any]:
    """A collated batch as ``(inputs, target)``: a pair as it is, a dict split into the target
    under one of `TARGET_KEYS` and the other entries as named inputs (``model(**inputs)``)."""
    if isinstance(batch, Mapping):
        found = [key for key in TARGET_KEYS if key in batch]
        if len(found) != 1:
            raise ConfigError(
                f"dataset items that are dicts need their target under exactly one of {', '.join(TARGET_KEYS)} "
                f"(as HuggingFace datasets and collators name it); got keys {', '.join(map(str, batch))}"
            )
        inputs = {key: value for key, value in batch.items() if key != found[0]}
        for key, value in inputs.items():
            if not isinstance(value, (Tensor, np.ndarray)):
                raise ConfigError(
                    f"dataset input {key!r} collates to {type(value).__name__}, not a tensor; remove that column "
                    "(datasets: .remove_columns) or give a collate_fn that returns tensors"
                )
        return inputs, batch[found[0]]
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        return batch[0], batch[1]
    raise ConfigError(
        "dataset items must be (inputs, target) pairs or dicts with a labels entry; wrap the dataset so that it returns them"
    )


class DatasetSplit(Split):
    """Examples read one by one from a map-style dataset (a torch ``Dataset``, or any object with
    ``__len__`` and ``__getitem__``, such as a HuggingFace ``datasets.Dataset``) whose items are
    ``(inputs, target)`` pairs or dicts with the target under ``labels`` or ``label``;
    ``indices`` selects and orders them; ``collate_fn`` builds batches (torch's default
    collation when None)."""

    def __init__(self, dataset: Any, indices: np.ndarray | None = None, collate_fn: Any = None) -> None:
        self.dataset = dataset
        self.indices = np.arange(len(dataset)) if indices is None else np.asarray(indices)
        self.collate_fn = collate_fn

    def __len__(self) -> int:
        return len(self.indices)

    def batches(self, batch_size: int, order: Sequence[int] | Tensor | None = None) -> Iterator[tuple[Any, Tensor]]:
        index = self.indices if order is None else self.indices[np.asarray(order)]
        loader = torch.utils.data.DataLoader(
            self.dataset, batch_size=batch_size, sampler=index.tolist(), collate_fn=self.collate_fn, num_workers=0
        )
        first: list[tuple[int, ...]] | None = None
        for batch in loader:
            x, y = _inputs_and_target(batch)
            x = _float32(to_tensors(x))
            shapes = [tuple(leaf.shape[1:]) for leaf in leaves(x)]
            if first is not None and shapes != first:
                raise ConfigError(_ragged("dataset", first, f"{shapes} in a later batch"))
            first = first or shapes
            yield x, torch.as_tensor(y)

    def subset(self, indices: np.ndarray) -> DatasetSplit:
        return DatasetSplit(self.dataset, self.indices[np.asarray(indices)], self.collate_fn)

    def targets(self) -> np.ndarray:
        known = getattr(self.dataset, "targets", None)
        if known is not None and len(known) == len(self.dataset):
            return np.asarray(known)[self.indices]
        return super().targets()


class _SplitDataset(torch.utils.data.Dataset[Any]):
    def __init__(self, split: Split) -> None:
        self.split = split

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int) -> Any:
        x, y = next(self.split.subset(np.array([i])).batches(1))
        return structure_map(lambda t: t[0], x), y[0]


@dataclasses.dataclass(frozen=True)
class Splits:
    """The four disjoint splits of a task: train, calibration (quantization ranges, gradient
    estimates), validation (what the search sees) and test (final numbers only)."""

    train: Split
    calib: Split
    val: Split
    test: Split
    task_type: str  # "classification" or "regression"
    num_classes: int = 0
    carved: dict[str, Any] | None = None

    def split(self, name: str) -> Split:
        if name not in SPLITS:
            raise ConfigError(f"unknown split {name!r}; valid: {', '.join(SPLITS)}")
        return getattr(self, name)  # type: ignore[no-any-return]

    @property
    def input_spec(self) -> InputSpec:
        """Structure, dtypes and per-example shapes of the inputs."""
        return InputSpec.of(self.val.take(1)[0])

    def fingerprint(self) -> str:
        """One hash over every split's `Split.fingerprint`."""
        return hashlib.sha256("".join(self.split(n).fingerprint() for n in SPLITS).encode()).hexdigest()

    def check(self) -> None:
        """Raise `ConfigError` on an empty split, inputs whose structure or per-example shape
        differs between splits, targets that do not fit the task type, or non-finite values
        (every value of array splits; the first examples of Dataset splits)."""
        spec: InputSpec | None = None
        for name in SPLITS:
            split = self.split(name)
            if len(split) == 0:
                raise ConfigError(f"{name} split is empty; every split needs at least one example")
            x, y = (to_tensors(split.x), torch.as_tensor(split.y)) if isinstance(split, ArraySplit) else split.take(min(len(split), 64))
            this = InputSpec.of(x)
            if not isinstance(split, ArraySplit) and len(split) > 1 and (one := InputSpec.of(split.take(1)[0])).shapes != this.shapes:
                raise ConfigError(_ragged(name, _shapes(one), f"{_shapes(this)} in a batch of {min(len(split), 64)}"))
            if spec is not None and (this.names, this.shapes) != (spec.names, spec.shapes):
                raise ConfigError(
                    f"{name} inputs have shape {_shapes(this)} but train inputs {_shapes(spec)}; use one input structure"
                )
            spec = spec or this
            for leaf in [*leaves(x), y]:
                if leaf.is_floating_point() and not bool(torch.isfinite(leaf).all()):
                    raise ConfigError(f"{name} split contains NaN or infinite values; clean the data first")
            check_targets(y.numpy(), self.task_type, name)


def _ragged(name: str, shapes: Any, other: str) -> str:
    return (f"{name} inputs change shape from batch to batch ({shapes}, then {other}): the exported model takes one "
            "shape per example; pad every batch to one length (padding='max_length')")


def _targets_known(split: Split) -> bool:
    return isinstance(split, ArraySplit) or getattr(getattr(split, "dataset", None), "targets", None) is not None


def _shapes(spec: InputSpec) -> Any:
    return spec.shapes[0] if spec.kind == "tensor" else dict(zip(spec.names, spec.shapes))


def check_targets(y: np.ndarray, task_type: str, where: str) -> None:
    """Classification targets are integer labels >= 0 (or `IGNORE_LABEL`); regression targets are finite numbers."""
    if task_type == "classification":
        ok = y.dtype.kind in "iu" or (y.dtype.kind == "f" and np.all(np.isfinite(y)) and np.all(y == np.round(y)))
        if not ok or np.any((y < 0) & (y != IGNORE_LABEL)):
            raise ConfigError(f"{where} targets must be non-negative integer class labels (or {IGNORE_LABEL} to ignore a position)")
    elif y.dtype.kind not in "fiub" or not np.all(np.isfinite(y)):
        raise ConfigError(f"{where} targets must be finite numbers for a regression task")


def _float32(x: Any) -> Any:
    return structure_map(lambda t: t.float() if t.is_floating_point() and t.dtype != torch.float32 else t, x)


def _as_array(value: Any, what: str) -> np.ndarray:
    array = value.detach().cpu().numpy() if isinstance(value, Tensor) else np.asarray(value)
    if array.dtype.kind not in "fiub":
        raise ConfigError(f"{what} has dtype {array.dtype}; use numeric arrays or tensors")
    return array.astype(np.float32) if array.dtype.kind == "f" and array.dtype != np.float32 else array


def _as_inputs(x: Any, what: str) -> Any:
    if isinstance(x, Mapping):
        if not x:
            raise ConfigError(f"{what} is an empty dict; give one array per model input")
        return {str(k): _as_array(v, f"{what}[{k!r}]") for k, v in x.items()}
    if isinstance(x, tuple):
        return tuple(_as_array(v, f"{what}[{i}]") for i, v in enumerate(x))
    return _as_array(x, what)


def as_split(value: Any, task_type: str, what: str) -> Split:
    """A `Split` from an ``(inputs, targets)`` pair of arrays / tensors (inputs may be a tuple or
    dict of them), a map-style dataset of ``(inputs, target)`` items or of dicts with a
    ``labels`` entry (`DatasetSplit`), or a ``DataLoader`` (its dataset and collate function are
    used; its batch size and sampler are not)."""
    if isinstance(value, Split):
        return value
    if isinstance(value, torch.utils.data.DataLoader):
        return as_split_dataset(value.dataset, value.collate_fn, what)
    if isinstance(value, torch.utils.data.Dataset):
        return as_split_dataset(value, None, what)
    if isinstance(value, (tuple, list)) and len(value) == 2 and not isinstance(value[1], Mapping):  # (two dict items: a dataset)
        x, y = _as_inputs(value[0], f"{what} inputs"), _as_array(value[1], f"{what} targets")
        if task_type == "classification" and y.dtype.kind == "f":
            check_targets(y, task_type, what)
            y = y.astype(np.int64)
        elif task_type == "classification":
            y = y.astype(np.int64)
        else:
            y = y.astype(np.float32)
        n = {len(leaf) for leaf in leaves(x)}
        if n != {len(y)}:
            raise ConfigError(f"{what} has {sorted(n)} inputs but {len(y)} targets; give one target per example")
        return ArraySplit(x, y)
    if hasattr(value, "__len__") and hasattr(value, "__getitem__") and not isinstance(value, (str, bytes, Mapping, np.ndarray, Tensor)):
        return as_split_dataset(value, None, what)  # a dataset that is no torch Dataset, as HuggingFace's
    raise ConfigError(
        f"{what} is a {type(value).__name__}; give (inputs, targets) arrays or tensors, a torch Dataset or a DataLoader"
    )


def as_split_dataset(dataset: Any, collate_fn: Any, what: str) -> DatasetSplit:
    if isinstance(dataset, torch.utils.data.IterableDataset):
        raise ConfigError(f"{what} is an IterableDataset; give a map-style Dataset (with __len__ and __getitem__)")
    if not hasattr(dataset, "__len__") or not hasattr(dataset, "__getitem__"):
        raise ConfigError(f"{what} is not a map-style Dataset; it needs __len__ and __getitem__")
    from torch.utils.data import default_collate

    return DatasetSplit(dataset, None, None if collate_fn is default_collate else collate_fn)


def carve(train: Split, task_type: str, seed: int, *, need: Sequence[str]) -> tuple[Split, dict[str, Split], dict[str, Any]]:
    """Split the ``need``ed splits ("calib", "val") off ``train``: `CARVE_FRACTIONS` of it each,
    seeded with ``seed``, stratified by class for one-label-per-example classification.
    Returns the rest of train, the carved splits and the record of how they were made."""
    n = len(train)
    if n < len(need) + 1:
        raise ConfigError(f"the train split has {n} examples; {len(need) + 1} or more are needed to carve off {', '.join(need)}")
    rng = np.random.default_rng(seed)
    targets = train.targets()
    stratified = task_type == "classification" and targets.ndim == 1
    groups = [np.flatnonzero(targets == c) for c in np.unique(targets)] if stratified else [np.arange(n)]
    parts: dict[str, list[np.ndarray]] = {name: [] for name in (*need, "train")}
    for idx in groups:
        idx = rng.permutation(idx)
        start = 0
        for name in need:
            size = int(round(CARVE_FRACTIONS[name] * len(idx)))
            parts[name].append(idx[start : start + size])
            start += size
        parts["train"].append(idx[start:])
    chosen = {name: np.sort(np.concatenate(p)).astype(np.int64) for name, p in parts.items()}
    for name in need:  # tiny or very unbalanced sets: still at least one example each
        if len(chosen[name]) == 0:
            chosen[name], chosen["train"] = chosen["train"][:1], chosen["train"][1:]
    record = {
        "from": "train",
        "seed": seed,
        "stratified": stratified,
        "fractions": {name: CARVE_FRACTIONS[name] for name in need},
        "sizes": {name: int(len(chosen[name])) for name in ("train", *need)},
        "indices_sha256": hashlib.sha256(b"".join(chosen[name].tobytes() for name in ("train", *need))).hexdigest(),
    }
    return train.subset(chosen["train"]), {name: train.subset(chosen[name]) for name in need}, record


def splits_from_mapping(mapping: Mapping[str, Any], *, task_type: str, seed: int, what: str) -> Splits:
    """`Splits` from ``{"train": ..., "test": ..., "calib"?: ..., "val"?: ...}`` (each value as
    `as_split` takes it) or from flat ``x_<split>`` / ``y_<split>`` arrays as an ``.npz`` holds them."""
    mapping = split_mapping(mapping, what)
    given = {name: as_split(mapping[name], task_type, f"{what} {name} split") for name in SPLITS if name in mapping}
    need = [name for name in ("calib", "val") if name not in given]
    carved = None
    if need:
        given["train"], extra, carved = carve(given["train"], task_type, seed, need=need)
        given.update(extra)
    else:
        overlap = shared_examples(given["calib"], given["val"])
        if overlap:
            raise ConfigError(f"{what}: {overlap} examples occur in both calib and val; calibration and validation must not overlap")
    num_classes = 0
    if task_type == "classification":  # from the splits whose targets are known without reading every example
        cheap = [name for name in ("train", "calib") if _targets_known(given[name])]
        num_classes = max(int(given[name].targets().max(initial=-1)) for name in (*cheap, "val")) + 1
    splits = Splits(**given, task_type=task_type, num_classes=num_classes, carved=carved)
    splits.check()
    return splits


def split_mapping(mapping: Mapping[str, Any], what: str) -> dict[str, Any]:
    """``{split: value}`` from either that form or flat ``x_<split>`` / ``y_<split>`` arrays;
    `ConfigError` for unknown splits or a missing train or test split."""
    if any(str(k).startswith(("x_", "y_")) for k in mapping):
        mapping = _flat_arrays(mapping, what)
    unknown = sorted(set(map(str, mapping)) - set(SPLITS))
    if unknown:
        raise ConfigError(f"{what} has unknown splits {unknown}; valid: {', '.join(SPLITS)}")
    missing = [s for s in ("train", "test") if s not in mapping]
    if missing:
        raise ConfigError(f"{what} lacks the {' and '.join(missing)} split; give at least train and test (calib and val are optional)")
    return {str(k): v for k, v in mapping.items()}


def _flat_arrays(arrays: Mapping[str, Any], what: str) -> dict[str, Any]:
    """``x_train`` / ``x_train.<name>`` / ``y_train`` keys -> ``{"train": (inputs, targets)}``."""
    out: dict[str, Any] = {}
    for name in SPLITS:
        y = arrays.get(f"y_{name}")
        fields = {k.partition(".")[2]: v for k, v in arrays.items() if k.startswith(f"x_{name}.")}
        x = arrays.get(f"x_{name}")
        if x is None and fields:
            x = tuple(fields[k] for k in sorted(fields, key=int)) if all(k.isdigit() for k in fields) else fields
        if x is None and y is None:
            continue
        if x is None or y is None:
            raise ConfigError(f"{what} has {'y' if x is None else 'x'}_{name} but no {'x' if x is None else 'y'}_{name}; give both")
        out[name] = (x, y)
    return out


def flat_arrays(splits: Mapping[str, Split]) -> dict[str, np.ndarray]:
    """The inverse of `_flat_arrays` for array splits: what `np.savez` writes for them."""
    out: dict[str, np.ndarray] = {}
    for name in SPLITS:
        split = splits.get(name)
        if split is None:
            continue
        if not isinstance(split, ArraySplit):
            raise ConfigError("only array splits can be saved as .npz")
        spec = InputSpec.of(split.x)
        if spec.kind == "tensor":
            out[f"x_{name}"] = split.x
        else:
            for field, value in zip(spec.names if spec.kind == "dict" else map(str, range(len(spec.names))), leaves(split.x)):
                out[f"x_{name}.{field}"] = value
        out[f"y_{name}"] = split.y
    return out


def load_npz(path: str, *, task_type: str, seed: int) -> Splits:
    """`Splits` from an ``.npz`` of ``x_train``, ``y_train``, ``x_test``, ``y_test`` (and
    optionally the calib and val pairs); several inputs as ``x_<split>.<name>`` arrays."""
    if not Path(path).is_file():
        raise ConfigError(f"dataset file {path!r} does not exist; give the path of an existing .npz")
    try:
        npz = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"dataset {path!r} is not a readable .npz file ({exc})") from None
    with npz:
        try:
            arrays = {k: npz[k] for k in npz.files}
        except ValueError:
            raise ConfigError(f"dataset {path!r} holds object arrays; save plain numeric arrays") from None
    return splits_from_mapping(arrays, task_type=task_type, seed=seed, what=f"dataset {path!r}")


def shared_examples(a: Split, b: Split) -> int:
    """Number of examples of ``b`` whose input bytes also occur in ``a`` (streamed, hashes only)."""
    seen = set(_example_hashes(a))
    return sum(h in seen for h in _example_hashes(b))


def _example_hashes(split: Split) -> Iterator[bytes]:
    for x, _ in split.batches(256):
        arrays = [np.ascontiguousarray(leaf.numpy()) for leaf in leaves(x)]
        for i in range(rows(x)):
            yield hashlib.sha256(b"".join(a[i].tobytes() for a in arrays)).digest()


def array_splits(x: Any, y: np.ndarray, *, task_type: str, seed: int, num_classes: int = 0,
                 fractions: tuple[float, float, float, float] = (0.6, 0.1, 0.15, 0.15)) -> Splits:
    """Shuffle (stratified for classification) and cut arrays into the four splits."""
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[], [], [], []]
    groups = [np.flatnonzero(y == c) for c in np.unique(y)] if task_type == "classification" else [np.arange(len(y))]
    for idx in groups:
        idx = rng.permutation(idx)
        cuts = np.round(np.cumsum(fractions)[:-1] * len(idx)).astype(int)
        for part, chunk in zip(parts, np.split(idx, cuts)):
            part.append(chunk)
    order = [rng.permutation(np.concatenate(p)) for p in parts]
    tr, ca, va, te = (ArraySplit(take_rows(x, o), y[o]) for o in order)
    return Splits(tr, ca, va, te, task_type=task_type, num_classes=num_classes)


def output_batches(model: Any, split: Split, batch_size: int, device: str = "cpu") -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Model outputs and targets over ``split`` in order, batch by batch, without gradients, as
    numpy arrays."""
    from evoforge.workload.inputs import call_model

    with torch.no_grad():
        for x, y in split.batches(batch_size):
            with compute_step():
                out = call_model(model, to_tensors(x, device)).float().cpu().numpy()
            yield out, y.numpy()


__all__ = [
    "ArraySplit", "DatasetSplit", "IGNORE_LABEL", "SPLITS", "Split", "Splits", "array_splits", "as_split", "carve",
    "flat_arrays", "load_npz", "output_batches", "shared_examples", "splits_from_mapping", "to_arrays",
]
