"""`evoforge.evolve`: evolve a model's compiled MLIR program with IREE (GEVO-ML)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from evoforge.errors import ConfigError
from evoforge.front import Front
from evoforge.mlir.edits import EDIT_KINDS, check_edit_kinds
from evoforge.search.engine import SearchCallback
from evoforge.search.termination import Termination

BUILTIN_PROGRAMS = ("digits-mobilenet", "digits-2fcnet-train")


def prepare_program(
    program: Any, run_dir: Path, *, level: str | None = None, data: str | None = None,
    example_input: Any = None, batch_size: int = 32,
) -> None:
    """Write the program directory of ``run_dir`` from a built-in task name, an ``.mlir`` /
    ``.onnx`` path, ``"RUN:ID"`` (a compress-run member), or a torch module plus example input.
    ``level`` None keeps an MLIR file's own level and exports everything else at ``"torch"``."""
    from evoforge.mlir import sources

    if sources.is_prepared(run_dir):
        return
    if level not in (None, "torch", "linalg"):
        raise ConfigError(f"level must be 'torch' or 'linalg', got {level!r}")
    export_level = level or "torch"  # MLIR files keep their own level when none is asked
    if isinstance(program, str) and program in BUILTIN_PROGRAMS:
        sources.prepare_from_task(program, run_dir, level=export_level, batch_size=batch_size)
    elif isinstance(program, (str, Path)) and Path(program).suffix in (".mlir", ".onnx"):
        sources.prepare_from_file(Path(program), run_dir, level=level, data=data)
    elif isinstance(program, str) and ":" in program:
        sources.prepare_from_run(program, run_dir, level=export_level, batch_size=batch_size)
    elif hasattr(program, "forward"):
        if example_input is None:
            raise ConfigError("a torch module needs example_input (a tensor with the batch size to compile for)")
        sources.prepare_from_module(program, example_input, run_dir, level=export_level, data=data)
    else:
        raise ConfigError(
            f"cannot evolve {program!r}; give a built-in program ({', '.join(BUILTIN_PROGRAMS)}), "
            "a .mlir or .onnx file, RUN:ID of a compress run, or a torch module with example_input"
        )


def evolve(
    program: Any,
    data: str | None = None,
    *,
    example_input: Any = None,
    level: str | None = None,
    objectives: Sequence[str] = ("runtime_ratio", "error"),
    max_error_increase: float | None = None,
    edit_kinds: Sequence[str] = EDIT_KINDS,
    budget: str | int | Termination = "10m",
    algorithm: str = "nsga2",
    pop_size: int = 16,
    workers: int = 1,
    timeout_s: float | None = 600.0,
    seed: int = 0,
    run_dir: str | Path | None = None,
    target: str = "llvm-cpu",
    extra_flags: Sequence[str] = (),
    batch_size: int = 32,
    executor: str = "local",
    address: str | None = None,
    callback: SearchCallback | None = None,
) -> Front:
    """Evolve ``program`` and return the front of runtime vs error (and compiled size if asked).

    ``max_error_increase`` (accuracy points) adds an error ceiling as a constraint. ``edit_kinds``
    picks the operators (delete, copy, resize, operand_replace; all by default). Each front
    member keeps its MLIR and vmfb in ``run_dir``; `evoforge.export_member` writes them with the
    edits in words and a diff.
    """
    from evoforge.api import optimize
    from evoforge.mlir.domain import EvolveDomain

    name = program if isinstance(program, str) else getattr(program, "name", type(program).__name__)
    run_dir = Path(run_dir) if run_dir is not None else Path("runs") / f"evolve-{Path(str(name)).stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    check_edit_kinds(edit_kinds)
    if (run_dir / "run.db").exists():
        raise ConfigError(f"{run_dir} already holds a run; resume it with `evoforge resume {run_dir}` or choose a new directory")
    prepare_program(program, run_dir, level=level, data=data, example_input=example_input, batch_size=batch_size)
    domain = EvolveDomain(str(run_dir), objectives=list(objectives), max_error_increase=max_error_increase,
                          target=target, extra_flags=list(extra_flags), edit_kinds=list(edit_kinds))
    domain.prepare(run_dir)  # records the original error, which fixes the hypervolume reference
    return optimize(
        domain, algorithm=algorithm, algorithm_options={"pop_size": pop_size}, budget=budget, seed=seed,
        workers=workers, timeout_s=timeout_s, run_dir=run_dir, callback=callback, executor=executor, address=address,
    )
