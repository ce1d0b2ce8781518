"""`evoforge.evolve`: evolve a model's compiled MLIR program with IREE (GEVO-ML)."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evoforge.errors import ConfigError
from evoforge.execute.base import refuse_in_worker_import
from evoforge.front import Front
from evoforge.layout import RunLayout, default_run_dir
from evoforge.mlir.edits import EDIT_KINDS, check_edit_kinds
from evoforge.run import RunSpec
from evoforge.search.engine import SearchCallback

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from evoforge.run import RunSettings

BUILTIN_PROGRAMS = ("digits-mobilenet", "mobilenet-img32", "resnet18-img32", "bert-tokens", "digits-cnn", "digits-mlp",
                    "mnist1d-cnn", "digits-2fcnet", "digits-2fcnet-train")
"""The built-in compress tasks whose trained baseline `evolve` takes as a prediction program (every
classification task: the error is 1 - accuracy), and the built-in training-program task."""


def prepare_program(
    program: Any, layout: RunLayout, *, level: str | None = None, data: str | Mapping[str, Any] | None = None,
    example_input: Any = None, batch_size: int = 32, target: str = "llvm-cpu", extra_flags: Sequence[str] = (),
    driver: str | None = None, tune_flags: bool = False, compare_runtimes: str = "none", seed: int = 0,
) -> list[str]:
    """Write the run's ``program/`` folder from a built-in task name, an ``.mlir`` / ``.onnx``
    path, ``"RUN:ID"`` (a member of another run), or a torch module plus example input, and
    return the flags the run compiles with: ``extra_flags``, plus with ``tune_flags`` the set
    `evoforge.mlir.flag_tuning` found fastest for this program (tuned once, then read back).
    ``level`` None keeps an MLIR file's own level and exports everything else at ``"torch"``. A
    torch module without ``example_input`` is exported at the first ``batch_size`` rows of
    ``data``'s validation inputs.
    ``batch_size`` is what built-in programs, run members and ONNX files with a dynamic batch
    are compiled for. Unless ``compare_runtimes`` is ``"none"``, a predict program exported from
    a PyTorch model also gets that model timed in the runtimes it names (``"all"``: torch eager,
    torch.compile, ONNX Runtime, OpenVINO and IREE -O3; ``"fast"``: all but torch.compile) against
    the original program compiled with the returned flags (`evoforge.mlir.comparisons`). ``seed``
    carves validation off train when data splits come without it."""
    from evoforge.mlir import sources
    from evoforge.mlir.iree_runner import default_driver

    reference = None
    if not sources.is_prepared(layout.program):
        reference = _write_program(program, layout, level=level, data=data, example_input=example_input, batch_size=batch_size,
                                   seed=seed)
    driver = driver or default_driver(target)
    flags = list(extra_flags)
    if tune_flags:
        from evoforge.mlir.flag_tuning import tune_flags as tune

        flags += tune(sources.read_prepared(layout.program), layout.program, target=target, extra_flags=extra_flags, driver=driver).flags
    if compare_runtimes != "none" and reference is not None:
        from evoforge.mlir.comparisons import iree_behind, record_comparisons

        behind = iree_behind(record_comparisons(reference.model, reference.example, reference.program, layout.program,
                                                target=target, extra_flags=flags, driver=driver,
                                                compare_runtimes=compare_runtimes))
        if behind:
            logging.getLogger("evoforge").warning("%s", behind)
    return flags


def _write_program(program: Any, layout: RunLayout, *, level: str | None, data: str | Mapping[str, Any] | None, example_input: Any,
                   batch_size: int, seed: int) -> Any:
    """Write ``program/``; returns the `TorchReference` when the program came from a PyTorch model."""
    from evoforge.mlir import sources

    if level not in (None, "torch", "linalg"):
        raise ConfigError(f"level must be 'torch' or 'linalg', got {level!r}")
    export_level = level or "torch"  # MLIR files keep their own level when none is asked
    if isinstance(data, Mapping) and not hasattr(program, "forward"):
        raise ConfigError("data splits (arrays, datasets, DataLoaders) go with a torch module; give a program file "
                          "an .npz path as data, and a built-in or run member none")
    if isinstance(program, str) and program in BUILTIN_PROGRAMS:
        return sources.prepare_from_task(program, layout.program, layout.baseline, level=export_level, batch_size=batch_size)
    if isinstance(program, (str, Path)) and Path(program).suffix in (".mlir", ".onnx"):
        npz = None if isinstance(data, Mapping) else data
        sources.prepare_from_file(Path(program), layout.program, level=level, data=npz, batch_size=batch_size)
        return None
    if isinstance(program, str) and ":" in program:
        return sources.prepare_from_run(program, layout.program, level=export_level, batch_size=batch_size)
    if hasattr(program, "forward"):
        return sources.prepare_from_module(program, example_input, layout.program, level=export_level, data=data,
                                           batch_size=batch_size, seed=seed)
    raise ConfigError(
        f"cannot evolve {program!r}; give a built-in program ({', '.join(BUILTIN_PROGRAMS)}), "
        "a .mlir or .onnx file, RUN:ID of a compress run, or a torch module with example_input"
    )


def evolve(
    program: Any,
    data: str | Mapping[str, Any] | None = None,
    *,
    example_input: Any = None,
    level: str | None = None,
    objectives: Sequence[str] = ("runtime_ratio", "error"),
    max_error_increase: float | None = None,
    edit_kinds: Sequence[str] = EDIT_KINDS,
    edit_targets: str = "uniform",
    target: str = "llvm-cpu",
    extra_flags: Sequence[str] = (),
    tune_flags: bool = True,
    batch_size: int = 32,
    compare_runtimes: str = "all",
    compile_cache_mb: float = 1024.0,
    keep_artifacts: str = "front",
    branch_sweep: int = 8,
    crossover: str = "halves",
    batch_check: bool = True,
    run_dir: str | Path | None = None,
    spec: RunSpec | None = None,
    callback: SearchCallback | None = None,
    **settings: Unpack[RunSettings],
) -> Front:
    """Evolve ``program`` and return the front of runtime vs error (and compiled size if asked).

    A torch module is exported at ``example_input`` (a tensor, or a tuple of tensors for several
    inputs, at the batch size to compile for), or without it at the first ``batch_size`` rows of
    ``data``'s validation inputs; `evoforge.mlir.program.from_module` says how. ``data`` is an
    ``.npz`` path (``x_val``, ``y_val``, ``x_test``, ``y_test``), or for a torch module the
    mapping of splits `evoforge.compress` takes (arrays, datasets or DataLoaders of labelled
    examples; validation carved off train with the run's seed when not given).

    ``max_error_increase`` (accuracy points) adds an error ceiling as a constraint. ``edit_kinds``
    picks the operators (delete, copy, resize, resize_importance, operand_replace, delete_block; all
    by default); ``edit_targets="cost"`` makes deletes and resizes favour the ops that hold the
    program's work over uniform draws (see `evoforge.mlir.edits.TARGET_WEIGHTINGS`). ``settings``
    are the run's settings (see `evoforge.run.RunSpec`; defaults: nsga2, pop_size 16, budget
    10m, 1 worker, 600 s timeout), or ``spec`` gives them all at once. The run keeps the compiled vmfb
    of its front members in ``run_dir`` (``keep_artifacts="front"``: a variant's is deleted when it
    leaves the front, and export compiles it again from its edits) or of every variant (``"all"``);
    a variant's MLIR is its edits replayed. `evoforge.export_member` writes both with the edits in
    words and a diff. ``compare_runtimes`` (for programs exported from a PyTorch model; one of
    `evoforge.runtimes.base.COMPARE_RUNTIMES`) first times the model in torch eager, torch.compile,
    ONNX Runtime, OpenVINO (when installed) and IREE -O3 (``"all"``), all but torch.compile
    (``"fast"``) or none of them (``"none"``), so that every variant also carries its time against
    each (``vs_*`` metrics). Identical program texts
    compile once: ``compile_cache_mb`` bounds the run's cache of compiled programs (0: off).
    ``tune_flags`` (llvm-cpu) first times the original under the candidate flag sets of
    `evoforge.mlir.flag_tuning` and compiles the run with the fastest that keeps its outputs;
    ``extra_flags`` always apply. In a program with residual joins, the first generation holds the
    variants without its last 1, 2, ..., ``branch_sweep`` branches (at most half of it; 0: none).
    ``crossover`` says where crossover cuts the edits two parents do not share: ``"halves"``, or
    ``"anywhere"``, which can stack two parents' edits in one child (`evoforge.mlir.edits.CROSSOVER_CUTS`).
    ``batch_check`` rejects a prediction variant whose outputs for an example change when the other
    examples of its batch change (`evoforge.mlir.batch_check`; off by itself when the original's do).
    """
    refuse_in_worker_import("evoforge.evolve")
    from evoforge.api import optimize
    from evoforge.mlir.domain import EvolveDomain
    from evoforge.runtimes.base import check_compare_runtimes

    name = program if isinstance(program, str) else getattr(program, "name", type(program).__name__)
    layout = RunLayout(Path(run_dir) if run_dir is not None else default_run_dir(f"evolve-{Path(str(name).replace(':', '-')).stem}"))
    check_edit_kinds(edit_kinds)
    check_compare_runtimes(compare_runtimes)
    spec = spec or RunSpec.build(EvolveDomain.run_defaults, **settings)  # bad settings fail before any export
    if layout.holds_run():
        raise ConfigError(f"{layout.root} already holds a run; resume it with `evoforge resume {layout.root}` or choose a new directory")
    fresh = not layout.program.exists()
    options: dict[str, Any] = {"objectives": list(objectives), "max_error_increase": max_error_increase, "target": target,
                               "edit_kinds": list(edit_kinds), "compile_cache_mb": compile_cache_mb, "edit_targets": edit_targets,
                               "keep_artifacts": keep_artifacts, "branch_sweep": branch_sweep,
                               "crossover": crossover, "batch_check": batch_check}
    driver = EvolveDomain(extra_flags=list(extra_flags), **options).runtime_driver  # bad options fail before any export
    created = not layout.root.exists()
    layout.create()
    try:
        flags = prepare_program(program, layout, level=level, data=data, example_input=example_input, batch_size=batch_size,
                                target=target, extra_flags=extra_flags, driver=driver, tune_flags=tune_flags,
                                compare_runtimes=compare_runtimes, seed=spec.seed)
    except BaseException:
        if fresh:  # nothing half-written stays behind (a trained baseline is whole: it stays for the next try)
            shutil.rmtree(layout.program, ignore_errors=True)
        if created and not any(layout.root.iterdir()):
            layout.root.rmdir()
        raise
    return optimize(EvolveDomain(extra_flags=flags, **options), run_dir=layout.root, spec=spec, callback=callback)
