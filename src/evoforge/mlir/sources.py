"""Turn what the user gives (a built-in task, a PyTorch module, an ONNX or MLIR file, a member of
a compress run) into a self-contained program folder inside the run directory
(`evoforge.layout.RunLayout.program`):

    program/original.mlir   the pristine, UID-tagged program
    program/program.json    mode, level, entry, input/output specs, batch size, pinned shapes, the exporter,
                            where the program came from (absolute path and sha256 for files)
    program/data.npz        evaluation inputs (and labels when known), split val / test; a
                            program with several inputs has ``x_<split>.<i>`` per input
    program/params.npz      initial weights (training programs only)

Everything an evaluation needs is read from there, so workers, resumed runs and ``show`` /
``export`` from any directory never go back to the user's files.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from evoforge.errors import ConfigError

TRAIN_TASKS = {"digits-2fcnet-train": "digits-2fcnet"}
"""Built-in training-program tasks -> the compress task whose model and data they use."""


def is_prepared(directory: Path) -> bool:
    return (directory / "original.mlir").exists() and (directory / "program.json").exists() and (directory / "data.npz").exists()


def read_meta(directory: Path) -> dict[str, Any]:
    """``program.json`` of a prepared ``program/`` folder."""
    path = directory / "program.json"
    if not path.exists():
        raise ConfigError(f"no prepared program in {directory}; start the run with evoforge evolve")
    return dict(json.loads(path.read_text()))


def read_prepared(directory: Path) -> Any:
    """The `Program` stored in a prepared ``program/`` folder."""
    from evoforge.mlir.program import Program, TensorSpec

    meta = read_meta(directory)
    return Program(
        text=(directory / "original.mlir").read_text(),
        entry=meta["entry"],
        level=meta["level"],
        inputs=tuple(TensorSpec(tuple(s), d) for s, d in meta["inputs"]),
        outputs=tuple(TensorSpec(tuple(s), d) for s, d in meta["outputs"]),
    )


def split_inputs(data: dict[str, np.ndarray], split: str) -> list[np.ndarray]:
    """The input arrays of ``split`` in program argument order (``x_<split>`` or ``x_<split>.<i>``)."""
    if f"x_{split}" in data:
        return [data[f"x_{split}"]]
    fields = sorted((k for k in data if k.startswith(f"x_{split}.")), key=lambda k: int(k.rpartition(".")[2]))
    if not fields:
        raise ConfigError(f"the program data has no inputs for the {split} split")
    return [data[k] for k in fields]


def _input_arrays(split: str, arrays: list[np.ndarray]) -> dict[str, np.ndarray]:
    if len(arrays) == 1:
        return {f"x_{split}": arrays[0]}
    return {f"x_{split}.{i}": a for i, a in enumerate(arrays)}


def _write(directory: Path, program: Any, meta: dict[str, Any], data: dict[str, np.ndarray], params: list[np.ndarray] | None) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "original.mlir").write_text(program.text)
    meta = {
        **meta,
        "entry": program.entry,
        "level": program.level,
        "inputs": [[list(t.shape), t.dtype] for t in program.inputs],
        "outputs": [[list(t.shape), t.dtype] for t in program.outputs],
    }
    np.savez(directory / "data.npz", **data)  # type: ignore[arg-type]
    if params is not None:
        np.savez(directory / "params.npz", *params)
    (directory / "program.json").write_text(json.dumps(meta, indent=2))


def _batched(x: np.ndarray, batch: int) -> np.ndarray:
    """Rows of ``x`` cut to a whole number of batches (at least one, padding by repetition)."""
    if len(x) < batch:
        x = np.concatenate([x] * (batch // max(1, len(x)) + 1))[:batch]
    return x[: len(x) - len(x) % batch]


@dataclasses.dataclass(frozen=True)
class TorchReference:
    """The PyTorch model a predict program was exported from (taking positional tensors), the
    example batch it was exported at, and the exported program."""

    model: Any
    example: tuple[Any, ...]
    program: Any


def prepare_from_task(task_name: str, directory: Path, baseline_dir: Path, *, level: str, batch_size: int) -> TorchReference | None:
    """A built-in compress task (trained baseline, cached in ``baseline_dir``, exported at
    ``batch_size``), or a built-in training-program task (``digits-2fcnet-train``, no reference)."""
    import torch

    from evoforge.workload import task as tasks

    train_mode = task_name in TRAIN_TASKS
    task = tasks.BUILTIN_TASKS[TRAIN_TASKS.get(task_name, task_name)]
    splits = tasks.load_splits(task)
    with torch.random.fork_rng():
        torch.manual_seed(task.seed)
        if train_mode:
            _prepare_training(task, splits, directory, level=level, batch_size=batch_size)
            return None
        model = tasks.baseline_model(task, splits, baseline_dir).eval()
    return write_predict_program(model, splits, directory, level=level, batch_size=batch_size, source=f"task:{task_name}")


def _split_arrays(split: Any, batch_size: int, spec: Any) -> tuple[list[np.ndarray], np.ndarray]:
    """A split's inputs (in program order) and targets, cut to whole batches."""
    from evoforge.workload.inputs import to_arrays

    x, y = split.take(len(split))
    inputs = [_batched(np.asarray(a), batch_size) for a in spec.flatten(to_arrays(x))]
    return inputs, _batched(y.numpy(), batch_size)


def write_predict_program(model: Any, splits: Any, directory: Path, *, level: str, batch_size: int, source: str) -> TorchReference:
    """Export ``model`` at ``batch_size`` (its inputs as positional arguments, in the data's
    input order) and store it with the labelled validation and test splits."""
    from evoforge.mlir.program import from_module
    from evoforge.workload.inputs import ModelAdapter

    spec = splits.input_spec
    x_val, y_val = _split_arrays(splits.val, batch_size, spec)
    x_test, y_test = _split_arrays(splits.test, batch_size, spec)
    import torch

    example = tuple(torch.as_tensor(a[:batch_size]) for a in x_val)
    adapted = ModelAdapter(model, spec).eval()
    program, export = from_module(adapted, example, level=level)  # type: ignore[arg-type]
    data = {**_input_arrays("val", x_val), "y_val": y_val, **_input_arrays("test", x_test), "y_test": y_test}
    meta = {"mode": "predict", "batch_size": batch_size, "source": source, "input_names": list(spec.names), **export}
    _write(directory, program, meta, data, None)
    return TorchReference(adapted, example, program)


def _prepare_training(task: Any, splits: Any, directory: Path, *, level: str, batch_size: int) -> None:
    from evoforge.mlir.iree_runner import compile_program
    from evoforge.mlir.train_program import export_predict, export_train_step, initial_params
    from evoforge.workload.task import load_model

    model = load_model(task, splits)  # fresh weights: the program trains them
    shape = tuple(splits.input_spec.shapes[0])
    flat = int(np.prod(shape))
    train_program = export_train_step(model, batch_size=batch_size, input_shape=(flat,) if len(shape) > 1 else shape, level=level)  # type: ignore[arg-type]
    predict = export_predict(model, batch_size=batch_size, input_shape=(flat,) if len(shape) > 1 else shape, level=level)  # type: ignore[arg-type]
    predict_vmfb = compile_program(predict.text, input_type=predict.input_type)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "predict.vmfb").write_bytes(predict_vmfb)

    def flat_split(name: str) -> tuple[np.ndarray, np.ndarray]:
        x, y = splits.split(name).take(len(splits.split(name)))
        return x.numpy().reshape(len(y), -1).astype(np.float32), y.numpy().astype(np.int64)

    data = {}
    for name in ("train", "val", "test"):
        data[f"x_{name}"], data[f"y_{name}"] = flat_split(name)
    meta = {"mode": "train", "batch_size": batch_size, "source": f"task:{task.name}-train", "steps": 100}
    _write(directory, train_program, meta, data, initial_params(model))


def prepare_from_file(path: Path, directory: Path, *, level: str | None, data: str | None, batch_size: int) -> None:
    """An ``.mlir`` or ``.onnx`` program; ``data`` is an optional ``.npz`` with ``x_val`` (and
    ``y_val``, ``x_test``, ``y_test``); without it, seeded random inputs of the program's input
    shape are used and the error is the deviation from the original program's outputs. Dynamic
    dimensions of an ONNX model's inputs are pinned: the batch to the data's batch (or
    ``batch_size``), the others to the data's shapes. The pinned shapes are recorded."""
    import tempfile

    from evoforge.mlir.program import from_mlir, from_onnx, lowering_problem, pin_onnx_shapes
    from evoforge.workload.callables import file_sha256

    path = path.expanduser().resolve()
    if not path.exists():
        raise ConfigError(f"program file {path} does not exist")
    arrays = _read_data(data)
    pinned: dict[str, list[int]] = {}
    if path.suffix == ".onnx":
        with tempfile.TemporaryDirectory(prefix="evoforge-onnx-") as tmp:
            pinned_path = Path(tmp) / "pinned.onnx"
            pinned = pin_onnx_shapes(path, pinned_path, example_shapes=_example_shapes(arrays), batch_size=batch_size)
            program = from_onnx(pinned_path if pinned else path, level=level or "torch")  # type: ignore[arg-type]
    elif path.suffix == ".mlir":
        program = from_mlir(path, level=level)  # type: ignore[arg-type]
    else:
        raise ConfigError(f"program file {path} must end in .mlir or .onnx")
    problem = lowering_problem(program)
    if problem is not None:
        raise ConfigError(f"IREE cannot compile {path.name}: {problem}; replace that op in the model, or export the model "
                          "another way (a PyTorch module goes through iree-turbine or ONNX, whichever IREE lowers)")
    batch = program.inputs[0].shape[0] if program.inputs[0].shape else 1
    checked = _user_data(arrays, program.inputs, data)
    meta = {"mode": "predict", "batch_size": batch, "source": str(path), "source_sha256": file_sha256(path)}
    if pinned:
        meta["pinned_shapes"] = pinned
    _write(directory, program, meta, checked, None)


def prepare_from_module(module: Any, example_input: Any, directory: Path, *, level: str, data: str | Mapping[str, Any] | None,
                        batch_size: int = 32, seed: int = 0) -> TorchReference:
    """A PyTorch module exported at ``example_input``'s shape (call ``.eval()`` first), or, when
    it is None, at the first ``batch_size`` rows of ``data``'s validation inputs
    (`example_from_data`), by `evoforge.mlir.program.from_module` (the exporter it used is recorded).
    ``data`` is an ``.npz`` path, or the mapping of splits compress takes (arrays, datasets or
    DataLoaders; validation carved off train with ``seed`` when not given), whose inputs the module takes in
    their order or by name (`write_predict_program`)."""
    from evoforge.mlir.program import from_module

    if isinstance(data, Mapping):
        from evoforge.workload.data import splits_from_mapping

        if example_input is not None:
            raise ConfigError("give example_input or data splits, not both: with splits the program is exported at "
                              "the first batch_size rows of the validation split")
        splits = splits_from_mapping(data, task_type="classification", seed=seed, what="data")
        return write_predict_program(module, splits, directory, level=level, batch_size=batch_size, source=type(module).__name__)
    arrays = _read_data(data)
    if example_input is None:
        if arrays is None or data is None:
            raise ConfigError("a torch module needs example_input (a tensor, or a tuple of them, with the batch size "
                              "to compile for) or data (an .npz whose x_val rows give it)")
        example_input = example_from_data(arrays, batch_size, data)
    program, export = from_module(module, example_input, level=level)  # type: ignore[arg-type]
    checked = _user_data(arrays, program.inputs, data)
    batch = program.inputs[0].shape[0] if program.inputs[0].shape else 1
    meta = {"mode": "predict", "batch_size": batch, "source": type(module).__name__, **export}
    _write(directory, program, meta, checked, None)
    return TorchReference(module, example_input if isinstance(example_input, tuple) else (example_input,), program)


def prepare_from_run(spec: str, directory: Path, *, level: str, batch_size: int) -> TorchReference:
    """``RUN:ID``: an evaluated candidate of another run (ids as `evoforge show` prints them),
    rebuilt as a model by that run's own domain (`evoforge.api.member_model`)."""
    from evoforge.api import member_model

    source, _, member_id = spec.rpartition(":")
    if not source or not member_id.isdigit():
        raise ConfigError(f"--from {spec!r} must look like RUN_DIR:ID (a member id from `evoforge show RUN_DIR`)")
    rebuilt = member_model(source, int(member_id))
    return write_predict_program(rebuilt.model, rebuilt.data, directory, level=level, batch_size=batch_size,
                                 source=f"run:{Path(source).resolve()}:{member_id} ({rebuilt.description})")


def example_from_data(arrays: dict[str, np.ndarray], batch_size: int, path: str) -> Any:
    """The first ``batch_size`` rows of each validation input in ``arrays`` (read from the
    ``.npz`` at ``path``), as torch tensors (float64 read as float32, other dtypes kept): one
    tensor, or a tuple in argument order."""
    import torch

    if "x_val" not in arrays and not any(k.startswith("x_val.") for k in arrays):
        raise ConfigError(f"{path} must hold an array x_val (or x_val.0, x_val.1, ... for several inputs)")
    inputs = split_inputs(arrays, "val")
    if len(inputs[0]) < batch_size:
        raise ConfigError(f"{path}: x_val has {len(inputs[0])} rows, fewer than the batch size {batch_size}; "
                          "give more rows or a smaller batch size")
    rows = [a[:batch_size].astype(np.float32) if a.dtype == np.float64 else a[:batch_size] for a in inputs]
    example = tuple(torch.from_numpy(np.ascontiguousarray(r)) for r in rows)
    return example[0] if len(example) == 1 else example


def _read_data(path: str | None) -> dict[str, np.ndarray] | None:
    if path is None:
        return None
    if not Path(path).is_file():
        raise ConfigError(f"data file {path!r} does not exist; give an .npz with x_val (and y_val, x_test, y_test)")
    with np.load(path, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def _example_shapes(arrays: dict[str, np.ndarray] | None) -> list[tuple[int, ...]] | None:
    """Per-example input shapes of the data (for pinning an ONNX model's dynamic dimensions)."""
    if arrays is None:
        return None
    return [tuple(a.shape[1:]) for a in split_inputs(arrays, "val")]


def _user_data(arrays: dict[str, np.ndarray] | None, inputs: Any, path: str | None) -> dict[str, np.ndarray]:
    batch = inputs[0].shape[0] if inputs[0].shape else 1
    if arrays is None:
        rng = np.random.default_rng(0)
        out: dict[str, np.ndarray] = {}
        for split in ("val", "test"):
            out.update(_input_arrays(split, [_random_input(rng, (4 * batch, *t.shape[1:]), t.dtype) for t in inputs]))
        return out
    if "x_val" not in arrays and not any(k.startswith("x_val.") for k in arrays):
        raise ConfigError(f"{path} must hold an array x_val (and optionally y_val, x_test, y_test)")
    out = {}
    for split in ("val", "test"):
        if f"x_{split}" not in arrays and not any(k.startswith(f"x_{split}.") for k in arrays):
            continue
        xs = split_inputs(arrays, split)
        if len(xs) != len(inputs):
            raise ConfigError(f"{path}: x_{split} gives {len(xs)} inputs, the program takes {len(inputs)}")
        checked = []
        for i, (arr, spec) in enumerate(zip(xs, inputs)):
            if tuple(arr.shape[1:]) != tuple(spec.shape[1:]):
                raise ConfigError(
                    f"{path}: input {i} of x_{split} has rows of shape {arr.shape[1:]}, the program takes {tuple(spec.shape[1:])}"
                )
            if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
                raise ConfigError(f"{path}: x_{split} contains NaN or infinite values; clean the data first")
            checked.append(_batched(arr.astype(spec.dtype), batch))
        out.update(_input_arrays(split, checked))
        if f"y_{split}" in arrays:
            out[f"y_{split}"] = _batched(arrays[f"y_{split}"], batch)
    if "x_test" not in out and "x_test.0" not in out:
        out.update({k.replace("x_val", "x_test", 1): v for k, v in out.items() if k.startswith("x_val")})
    if "y_val" in out:
        out.setdefault("y_test", out["y_val"])
    return out


def _random_input(rng: np.random.Generator, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    if np.dtype(dtype).kind in "iu":  # token ids and the like: small non-negative integers
        return rng.integers(0, 2, shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)
