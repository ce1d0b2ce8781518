"""Turn what the user gives (a built-in task, a PyTorch module, an ONNX or MLIR file, a member of
a compress run) into a self-contained program directory inside the run directory:

    <run>/program/original.mlir   the pristine, UID-tagged program
    <run>/program/program.json    mode, level, entry, input/output specs, batch size, training setup
    <run>/program/data.npz        evaluation inputs (and labels when known), split val / test
    <run>/program/params.npz      initial weights (training programs only)

Everything an evaluation needs is read from there, so workers and resumed runs never re-export.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from evoforge.errors import ConfigError

PROGRAM_DIR = "program"
TRAIN_TASKS = {"digits-2fcnet-train": "digits-2fcnet"}
"""Built-in training-program tasks -> the compress task whose model and data they use."""


def program_dir(run_dir: Path) -> Path:
    return run_dir / PROGRAM_DIR


def is_prepared(run_dir: Path) -> bool:
    d = program_dir(run_dir)
    return (d / "original.mlir").exists() and (d / "program.json").exists() and (d / "data.npz").exists()


def _write(run_dir: Path, program: Any, meta: dict[str, Any], data: dict[str, np.ndarray], params: list[np.ndarray] | None) -> None:
    d = program_dir(run_dir)
    d.mkdir(parents=True, exist_ok=True)
    (d / "original.mlir").write_text(program.text)
    meta = {
        **meta,
        "entry": program.entry,
        "level": program.level,
        "inputs": [[list(t.shape), t.dtype] for t in program.inputs],
        "outputs": [[list(t.shape), t.dtype] for t in program.outputs],
    }
    np.savez(d / "data.npz", **data)  # type: ignore[arg-type]
    if params is not None:
        np.savez(d / "params.npz", *params)
    (d / "program.json").write_text(json.dumps(meta, indent=2))


def _batched(x: np.ndarray, batch: int) -> np.ndarray:
    """Rows of ``x`` cut to a whole number of batches (at least one, padding by repetition)."""
    if len(x) < batch:
        x = np.concatenate([x] * (batch // max(1, len(x)) + 1))[:batch]
    return x[: len(x) - len(x) % batch]


def prepare_from_task(task_name: str, run_dir: Path, *, level: str, batch_size: int) -> None:
    """A built-in compress task (trained baseline, exported at ``batch_size``), or a built-in
    training-program task (``digits-2fcnet-train``)."""
    import torch

    from evoforge.compression import task as tasks

    train_mode = task_name in TRAIN_TASKS
    task = tasks.BUILTIN_TASKS[TRAIN_TASKS.get(task_name, task_name)]
    splits = tasks.load_splits(task)
    with torch.random.fork_rng():
        torch.manual_seed(task.seed)
        if train_mode:
            _prepare_training(task, splits, run_dir, level=level, batch_size=batch_size)
            return
        model = tasks.baseline_model(task, splits, run_dir / "baseline").eval()
    _write_predict_program(model, splits, run_dir, level=level, batch_size=batch_size, source=f"task:{task_name}")


def _write_predict_program(model: Any, splits: Any, run_dir: Path, *, level: str, batch_size: int, source: str) -> None:
    """Export ``model`` at ``batch_size`` and store it with the labelled validation and test splits."""
    import torch

    from evoforge.mlir.program import from_torch

    example = torch.as_tensor(_batched(splits.x_val, batch_size)[:batch_size])
    program = from_torch(model, example, level=level)  # type: ignore[arg-type]
    data = {
        "x_val": _batched(splits.x_val, batch_size), "y_val": _batched(splits.y_val, batch_size),
        "x_test": _batched(splits.x_test, batch_size), "y_test": _batched(splits.y_test, batch_size),
    }
    _write(run_dir, program, {"mode": "predict", "batch_size": batch_size, "source": source}, data, None)


def _prepare_training(task: Any, splits: Any, run_dir: Path, *, level: str, batch_size: int) -> None:
    from evoforge.compression.task import load_model
    from evoforge.mlir.iree_runner import compile_program
    from evoforge.mlir.train_program import export_predict, export_train_step, initial_params

    model = load_model(task, splits)  # fresh weights: the program trains them
    shape = tuple(splits.input_shape)
    flat = int(np.prod(shape))
    train_program = export_train_step(model, batch_size=batch_size, input_shape=(flat,) if len(shape) > 1 else shape, level=level)  # type: ignore[arg-type]
    predict = export_predict(model, batch_size=batch_size, input_shape=(flat,) if len(shape) > 1 else shape, level=level)  # type: ignore[arg-type]
    predict_vmfb = compile_program(predict.text, input_type=predict.input_type)
    (program_dir(run_dir)).mkdir(parents=True, exist_ok=True)
    (program_dir(run_dir) / "predict.vmfb").write_bytes(predict_vmfb)

    def flat_rows(x: np.ndarray) -> np.ndarray:
        return x.reshape(len(x), -1).astype(np.float32)

    data = {
        "x_train": flat_rows(splits.x_train), "y_train": splits.y_train.astype(np.int64),
        "x_val": flat_rows(splits.x_val), "y_val": splits.y_val.astype(np.int64),
        "x_test": flat_rows(splits.x_test), "y_test": splits.y_test.astype(np.int64),
    }
    meta = {"mode": "train", "batch_size": batch_size, "source": f"task:{task.name}-train", "steps": 100}
    _write(run_dir, train_program, meta, data, initial_params(model))


def prepare_from_file(path: Path, run_dir: Path, *, level: str | None, data: str | None) -> None:
    """An ``.mlir`` or ``.onnx`` program; ``data`` is an optional ``.npz`` with ``x_val`` (and
    ``y_val``, ``x_test``, ``y_test``); without it, seeded random inputs of the program's input
    shape are used and the error is the deviation from the original program's outputs. The batch
    size is the program's own (its first input dimension)."""
    from evoforge.mlir.program import from_mlir, from_onnx

    if not path.exists():
        raise ConfigError(f"program file {path} does not exist")
    if path.suffix == ".onnx":
        program = from_onnx(path, level=level or "torch")  # type: ignore[arg-type]
    elif path.suffix == ".mlir":
        program = from_mlir(path, level=level)  # type: ignore[arg-type]
    else:
        raise ConfigError(f"program file {path} must end in .mlir or .onnx")
    if len(program.inputs) != 1:
        raise ConfigError(f"{path} takes {len(program.inputs)} inputs; evolve supports programs with one input tensor")
    shape, dtype = program.inputs[0].shape, program.inputs[0].dtype
    arrays = _user_data(data, shape, dtype)
    _write(run_dir, program, {"mode": "predict", "batch_size": shape[0] if shape else 1, "source": str(path)}, arrays, None)


def prepare_from_module(module: Any, example_input: Any, run_dir: Path, *, level: str, data: str | None) -> None:
    """A PyTorch module exported at ``example_input``'s shape (call ``.eval()`` first)."""
    from evoforge.mlir.program import from_torch

    program = from_torch(module, example_input, level=level)  # type: ignore[arg-type]
    shape, dtype = program.inputs[0].shape, program.inputs[0].dtype
    arrays = _user_data(data, shape, dtype)
    _write(run_dir, program, {"mode": "predict", "batch_size": shape[0] if shape else 1, "source": type(module).__name__}, arrays, None)


def prepare_from_run(spec: str, run_dir: Path, *, level: str, batch_size: int) -> None:
    """``RUN:ID``: an evaluated candidate of a compress run (ids as `evoforge show` prints them),
    rebuilt by re-applying its pipeline to the run's baseline with the candidate's own seed
    (int8-quantized candidates cannot be exported to MLIR)."""
    import torch

    from evoforge.api import open_store
    from evoforge.compression.domain import CompressDomain
    from evoforge.compression.genome import PipelineGenome
    from evoforge.compression.stages import StageContext, apply_pipeline, protected_layers
    from evoforge.compression.task import baseline_model, example_input, load_splits
    from evoforge.genome import genome_from_json
    from evoforge.search.domain import domain_from_spec
    from evoforge.search.engine import candidate_seed

    source, _, member_id = spec.rpartition(":")
    if not source or not member_id.isdigit():
        raise ConfigError(f"--from {spec!r} must look like RUN_DIR:ID (a member id from `evoforge show RUN_DIR`)")
    with open_store(source, readonly=True) as store:
        config = store.config() or {}
        domain = domain_from_spec(config["domain"])
        if not isinstance(domain, CompressDomain):
            raise ConfigError(f"{source} is not a compress run")
        evaluations = list(store.evaluations().items())
        index = int(member_id) - 1
        if not 0 <= index < len(evaluations) or not evaluations[index][1].ok:
            raise ConfigError(f"{source} has no successful evaluation with id {member_id}; see `evoforge show {source}`")
        key = evaluations[index][0]
        genome = genome_from_json(store.genome(key))
    assert isinstance(genome, PipelineGenome)
    if any(s.kind == "quantize" for s in genome.stages):
        raise ConfigError(f"member {member_id} is int8-quantized, which does not export to MLIR; pick a float member")
    splits = load_splits(domain.task)
    base = baseline_model(domain.task, splits, Path(source) / "baseline")
    seed = candidate_seed(int(config["seed"]), key)
    ctx = StageContext(data=splits, training=genome.training, example_input=example_input(domain.task, splits), seed=seed,
                       protected=protected_layers(base, example_input(domain.task, splits)))
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = apply_pipeline(base, genome, ctx).eval()
    _write_predict_program(model, splits, run_dir, level=level, batch_size=batch_size, source=f"run:{spec}")


def _user_data(path: str | None, shape: tuple[int, ...], dtype: str) -> dict[str, np.ndarray]:
    batch = shape[0] if shape else 1
    if path is None:
        rng = np.random.default_rng(0)
        return {
            "x_val": rng.standard_normal((4 * batch, *shape[1:])).astype(dtype),
            "x_test": rng.standard_normal((4 * batch, *shape[1:])).astype(dtype),
        }
    npz = np.load(path, allow_pickle=False)
    if "x_val" not in npz:
        raise ConfigError(f"{path} must hold an array x_val (and optionally y_val, x_test, y_test)")
    out = {}
    for name in ("x_val", "y_val", "x_test", "y_test"):
        if name in npz:
            arr = npz[name]
            if name.startswith("x") and tuple(arr.shape[1:]) != tuple(shape[1:]):
                raise ConfigError(f"{path}:{name} has rows of shape {arr.shape[1:]}, the program takes {tuple(shape[1:])}")
            if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
                raise ConfigError(f"{path}:{name} contains NaN or infinite values; clean the data first")
            out[name] = _batched(arr.astype(dtype) if name.startswith("x") else arr, batch)
    out.setdefault("x_test", out["x_val"])
    if "y_val" in out:
        out.setdefault("y_test", out["y_val"])
    return out
