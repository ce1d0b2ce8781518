"""The command line: each command parses arguments, calls one library function, prints.

Errors a user can fix print one line and exit with code 2 (``--debug`` shows the traceback).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from evoforge.errors import ConfigError, EvoforgeError
from evoforge.layout import STORE_FILE

Command = Callable[[argparse.Namespace], int]
_COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Command]] = {}


def command(name: str, help_text: str, arguments: Callable[[argparse.ArgumentParser], None]) -> Callable[[Command], Command]:
    def register(fn: Command) -> Command:
        _COMMANDS[name] = (help_text, arguments, fn)
        return fn

    return register


def _execution_args(p: argparse.ArgumentParser) -> None:
    """Flags for where a run's evaluations happen and how long it goes (also on resume)."""
    p.add_argument("--budget", default=None, help="evaluations (200) or time (90s, 30m, 2h)")
    p.add_argument("--patience", type=int, default=None,
                   help="also stop once the feasible hypervolume has gained under 0.1%% in N generations (default: off)")
    p.add_argument("--workers", type=int, default=None, help="worker processes (0 = in this process)")
    p.add_argument("--timeout", dest="timeout_s", type=float, default=None, help="seconds allowed per evaluation")
    p.add_argument("--executor", default=None, help="local (worker processes, default) or ray")
    p.add_argument("--address", default=None, help="Ray cluster to use: auto or HOST:PORT (default: a private local Ray)")
    p.add_argument("--log-json", default=None, help="append one JSON event per line to this file")
    p.add_argument("--eval-cache", default=None,
                   help="folder of evaluations shared by runs: an identical evaluation (same task, baseline, "
                        "runtime, genome and seed) is taken from it instead of recomputed")


def _run_args(p: argparse.ArgumentParser) -> None:
    """Flags for every `evoforge.run.RunSpec` setting (unset ones take the domain's or config file's value)."""
    _execution_args(p)
    p.add_argument("--algorithm", default=None, help="nsga2, petra or random")
    p.add_argument("--pop-size", type=int, default=None, help="population size")
    p.add_argument("--offspring-size", type=int, default=None, help="offspring per generation (default: the population size)")
    p.add_argument("--initial-size", type=int, default=None,
                   help="size of the first generation (default: twice the population for petra, the population otherwise)")
    p.add_argument("--preselect", type=int, default=None,
                   help="petra: each child is the best of N mutants by a model of the evaluations so far (default 1: plain mutation)")
    p.add_argument("--explore", type=float, default=None,
                   help="petra with --preselect > 1: share of children taken as plain mutants all the same (0 to 1, default 0)")
    p.add_argument("--rungs", default=None,
                   help="multi-fidelity screening: fractions of full fidelity, ending at 1 (e.g. 0.25,1); default: off")
    p.add_argument("--eta", type=int, default=None, help="with --rungs: keep 1 in ETA candidates at each rung (default 3)")
    p.add_argument("--promote", default=None, help="with --rungs: top (best 1/eta by rank, default) or front (only the rung's front)")
    p.add_argument("--schedule", default=None,
                   help="with --rungs: when to promote, asynchronous (as screenings arrive, so full evaluations start "
                        "early; default) or synchronous (once a rung is complete)")
    p.add_argument("--seed", type=int, default=None, help="the run's seed (overrides a config file's)")
    p.add_argument("--run", dest="run_dir", default=None, help="run directory (default: runs/<name>-<time>)")


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    """The run settings given as flags (None where not given)."""
    from evoforge.run import SETTINGS

    return {name: getattr(args, name) for name in SETTINGS if getattr(args, name, None) is not None}


def _search_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--problem", required=True, help="zdt1, zdt2, zdt3 or dtlz2")
    _run_args(p)


def _progress(spec: Any, args: argparse.Namespace) -> Any:
    from evoforge.progress import Callbacks, JsonEventLog, ProgressPrinter

    log = JsonEventLog(args.log_json) if getattr(args, "log_json", None) else None
    return Callbacks(None if args.quiet else ProgressPrinter(spec.termination(), workers=max(1, spec.workers)), log)


@command("search", "search a benchmark problem (ZDT1-3, DTLZ2) with the engine", _search_args)
def _search(args: argparse.Namespace) -> int:
    import evoforge
    from evoforge.layout import default_run_dir
    from evoforge.problems import BenchmarkDomain
    from evoforge.run import RunSpec

    domain = BenchmarkDomain(args.problem)
    spec = RunSpec.build(domain.run_defaults, **_settings(args))
    run_dir = Path(args.run_dir) if args.run_dir else default_run_dir(args.problem)
    args.run_dir = str(run_dir)  # named by an interruption's message
    evoforge.optimize(domain, run_dir=run_dir, spec=spec, callback=_progress(spec, args))
    return _show_run(run_dir, args)


BUILTIN_TASK_NAMES = (
    "digits-cnn", "digits-mlp", "mnist1d-cnn", "series-regression", "digits-mobilenet", "digits-2fcnet",
    "resnet18-img32", "mobilenet-img32", "bert-tokens",
)
"""The names of `evoforge.workload.task.BUILTIN_TASKS`, spelled out so that help does not import torch."""


_COMPARE_RUNTIMES = ("fast", "all", "none")  # evoforge.runtimes.base.COMPARE_RUNTIMES, without importing the runtimes (torch)
_INT8_WEIGHT_BITS = ("auto", "7", "8")  # evoforge.runtimes.base.INT8_WEIGHT_BITS, as the command line spells them


def _compress_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", nargs="?", help="YAML or TOML config file (see docs/compress.md)")
    p.add_argument("--task", help=f"a built-in task: {', '.join(BUILTIN_TASK_NAMES)}")
    p.add_argument("--objectives", help="comma-separated: quality_drop, latency_ratio, size_ratio, ...")
    p.add_argument("--max-quality-drop", type=float, default=None, help="constraint: points (or %% with --relative)")
    p.add_argument("--relative", action="store_true", default=None, help="quality drop in %% of the baseline")
    p.add_argument("--runtime", default=None,
                   help="where candidates are deployed and timed: onnxruntime (default), openvino, inductor or torchscript "
                        "(see docs/runtimes.md)")
    p.add_argument("--prefix-cache-mb", type=float, default=None,
                   help="bound of the run's cache of intermediate models that pipelines with a common prefix start from "
                        "(default 512; 0: off)")
    p.add_argument("--screen-by", default=None, choices=("epochs", "examples"),
                   help="with --rungs: what a screening scales, the examples of every epoch (default) or each stage's epochs")
    p.add_argument("--exclude", default=None,
                   help="comma-separated stage kinds, prune:<importance> or quantize:<mode> to leave out of the search "
                        "(e.g. quantize:bf16 when the deployment CPU lacks bfloat16)")
    p.add_argument("--compare-runtimes", default=None, choices=_COMPARE_RUNTIMES,
                   help="other runtimes to time the fp32 baseline in when the run starts: every installed one but Inductor "
                        "(fast, the default), all, or none")
    p.add_argument("--int8-weight-bits", default=None, choices=_INT8_WEIGHT_BITS,
                   help="int8 weight width in onnxruntime and openvino: 7 on x86 processors without VNNI and 8 elsewhere "
                        "(auto, the default), or 7 (members that keep their accuracy on any processor) or 8")
    _run_args(p)


@command("compress", "evolve compression pipelines for a PyTorch model (PETRA)", _compress_args)
def _compress(args: argparse.Namespace) -> int:
    from evoforge.compression.api import compress, compress_options_from_config, resolve_task
    from evoforge.compression.domain import CompressDomain
    from evoforge.layout import default_run_dir
    from evoforge.run import SETTINGS, RunSpec

    if bool(args.config) == bool(args.task):
        raise ConfigError(
            f"give either a config file or --task NAME (built-in tasks: {', '.join(BUILTIN_TASK_NAMES)})"
        )
    kwargs: dict[str, Any] = compress_options_from_config(args.config) if args.config else {"task": args.task}
    settings = {name: kwargs.pop(name) for name in SETTINGS if name in kwargs}
    spec = RunSpec.build(CompressDomain.run_defaults, **{**settings, **_settings(args)})
    if args.objectives:
        kwargs["objectives"] = _comma_list(args.objectives)
    constraints = dict(kwargs.get("constraints", {}))
    if args.max_quality_drop is not None:
        constraints["max_quality_drop"] = args.max_quality_drop
    if args.relative is not None:
        constraints["relative"] = args.relative
    kwargs["constraints"] = constraints
    if args.runtime:
        kwargs["runtime"] = args.runtime
    if args.prefix_cache_mb is not None:
        kwargs["prefix_cache_mb"] = args.prefix_cache_mb
    if args.screen_by is not None:
        kwargs["screen_by"] = args.screen_by
    if args.exclude is not None:
        kwargs["exclude"] = _comma_list(args.exclude)
    if args.compare_runtimes is not None:
        kwargs["compare_runtimes"] = args.compare_runtimes
    if args.int8_weight_bits is not None:
        kwargs["int8_weight_bits"] = args.int8_weight_bits
    task = resolve_task(kwargs.pop("task"))
    configured_run = kwargs.pop("run_dir", None)
    run_dir = args.run_dir = args.run_dir or configured_run or str(default_run_dir(task.name))
    compress(task, run_dir=run_dir, spec=spec, callback=_progress(spec, args), **kwargs)
    return _show_run(run_dir, args)


def _evolve_args(p: argparse.ArgumentParser) -> None:
    from evoforge.layout import KEEP_ARTIFACTS
    from evoforge.mlir.edits import CROSSOVER_CUTS, TARGET_WEIGHTINGS

    p.add_argument("program", nargs="?", help="an .mlir or .onnx file")
    p.add_argument("--task", help="a built-in program: the trained baseline of a classification task (digits-mobilenet, "
                   "mobilenet-img32, resnet18-img32, bert-tokens, digits-cnn, digits-mlp, mnist1d-cnn, digits-2fcnet), or "
                   "digits-2fcnet-train (a training step)")
    p.add_argument("--from", dest="from_run", help="RUN_DIR:ID, a float member of a compress run")
    p.add_argument("--model", help="a PyTorch model factory pkg.module:function (with --example-input or --data)")
    p.add_argument("--example-input", help="input shape with the batch size to compile for, e.g. 32x1x8x8 (default "
                   "with --data: the first --batch-size rows of its x_val inputs, in their dtypes)")
    p.add_argument("--data", help=".npz with x_val (and y_val, x_test, y_test), or with --model a pkg.module:function "
                                  "returning the splits compress takes; default: random inputs, error = deviation")
    p.add_argument("--level", choices=("torch", "linalg"), default=None, help="IR level to mutate (default torch)")
    p.add_argument("--objectives", help="comma-separated: runtime_ratio, error, size_ratio")
    p.add_argument("--max-error-increase", type=float, default=None, help="constraint: error may grow by this many points")
    p.add_argument("--edits", help="comma-separated edit operators: delete, copy, resize, resize_importance, "
                   "operand_replace, delete_block (the default: all of these), or resize_fill (resize without narrowing)")
    p.add_argument("--edit-targets", choices=TARGET_WEIGHTINGS, default="uniform",
                   help="how deletes and resizes draw their target: uniform (the paper's), or cost (favour the ops "
                   "that hold the program's work, such as convolutions)")
    p.add_argument("--target", default="llvm-cpu", help="IREE target backend (llvm-cpu, cuda, ...)")
    p.add_argument("--compare-runtimes", default="all", choices=_COMPARE_RUNTIMES,
                   help="runtimes to time the source model in when the run starts: torch eager, torch.compile, ONNX "
                        "Runtime, OpenVINO and IREE -O3 (all, the default), all but torch.compile (fast), or none")
    p.add_argument("--iree-flag", action="append", default=[], help="extra iree-compile flag (repeatable)")
    p.add_argument("--no-flag-tuning", dest="tune_flags", action="store_false",
                   help="compile with IREE's defaults (and --iree-flag) only; by default llvm-cpu runs first time the "
                   "original under candidate flag sets (im2col for convolutions) and keep the fastest")
    p.add_argument("--batch-size", type=int, default=32, help="batch size built-in programs are compiled for")
    p.add_argument("--compile-cache-mb", type=float, default=1024.0,
                   help="bound of the run's cache of compiled programs (identical texts compile once; 0: off)")
    p.add_argument("--keep-artifacts", choices=KEEP_ARTIFACTS, default="front",
                   help="whose compiled vmfb the run keeps: the front's (export compiles any other member again "
                   "from its edits; the default), or every variant's")
    p.add_argument("--branch-sweep", type=int, default=8,
                   help="in a program with residual joins, start from the variants without its last 1, 2, ..., N "
                   "branches (at most half of the first generation; in a training step, the last parameter updates; 0: off)")
    p.add_argument("--crossover", choices=CROSSOVER_CUTS, default="halves",
                   help="where crossover cuts the edits two parents do not share: in the middle (the default), or "
                   "anywhere, so that one child can hold both parents' edits")
    p.add_argument("--no-batch-check", dest="batch_check", action="store_false",
                   help="keep prediction variants whose output for an example depends on the other examples of its "
                   "batch (by default they are rejected; see docs/evolve.md)")
    _run_args(p)


@command("evolve", "evolve a model's compiled MLIR program with IREE (GEVO-ML)", _evolve_args)
def _evolve(args: argparse.Namespace) -> int:
    from evoforge.layout import default_run_dir
    from evoforge.mlir.api import evolve
    from evoforge.mlir.domain import EvolveDomain
    from evoforge.run import RunSpec
    from evoforge.workload.callables import is_spec
    from evoforge.workload.task import call_dataset_function

    sources = [x for x in (args.program, args.task, args.from_run, args.model) if x]
    if len(sources) != 1:
        raise ConfigError("give exactly one program: a .mlir/.onnx file, --task NAME, --from RUN:ID or --model pkg.mod:factory")
    program: Any = sources[0]
    example = None
    data: Any = args.data
    if args.model:
        program, example = _model_and_example(args.model, args.example_input, args.data)
        if is_spec(args.data) and not Path(args.data).is_file():
            data = call_dataset_function(args.data)
    name = Path(str(sources[0]).replace(":", "-")).stem
    run_dir = args.run_dir = args.run_dir or str(default_run_dir(f"evolve-{name}"))
    spec = RunSpec.build(EvolveDomain.run_defaults, **_settings(args))
    kwargs: dict[str, Any] = {
        "data": data, "example_input": example, "level": args.level, "run_dir": run_dir, "target": args.target,
        "extra_flags": args.iree_flag, "tune_flags": args.tune_flags, "batch_size": args.batch_size,
        "max_error_increase": args.max_error_increase,
        "compare_runtimes": args.compare_runtimes, "compile_cache_mb": args.compile_cache_mb,
        "edit_targets": args.edit_targets, "keep_artifacts": args.keep_artifacts,
        "branch_sweep": args.branch_sweep, "crossover": args.crossover, "batch_check": args.batch_check,
    }
    if args.objectives:
        kwargs["objectives"] = _comma_list(args.objectives)
    if args.edits:
        kwargs["edit_kinds"] = _comma_list(args.edits)
    evolve(program, spec=spec, callback=_progress(spec, args), **kwargs)
    return _show_run(run_dir, args)


def _comma_list(text: str) -> list[str]:
    """``"a, b,,c"`` -> ``["a", "b", "c"]``."""
    return [item.strip() for item in text.split(",") if item.strip()]


def _model_and_example(spec: str, shape: str | None, data: str | None) -> tuple[Any, Any]:
    """The model the factory builds (in eval mode) and a zero tensor of ``shape``, or None for the
    example when ``data`` gives it (`evoforge.mlir.api.prepare_program`)."""
    from evoforge.workload.callables import load_callable

    if not shape and not data:
        raise ConfigError("--model needs --example-input SHAPE, e.g. 32x1x8x8 (batch first), or --data with x_val")
    dims: list[int] = []
    if shape:
        try:
            dims = [int(d) for d in shape.lower().split("x")]
        except ValueError:
            raise ConfigError(f"--example-input {shape!r} is not a shape; write it like 32x1x8x8") from None
    import torch

    factory = load_callable(spec, "model factory")
    try:
        model = factory()
    except Exception as exc:  # noqa: BLE001 - the user's factory
        raise ConfigError(f"model factory {spec!r} raised {type(exc).__name__}: {exc}") from None
    return model.eval(), (torch.zeros(*dims) if dims else None)


def _runtimes_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=("table", "json"), default="table")


@command("runtimes", "list the runtimes compress can deploy to on this machine, with the quantize modes each offers here",
         _runtimes_args)
def _runtimes(args: argparse.Namespace) -> int:
    from evoforge.compression.api import available_runtimes
    from evoforge.machine import machine_name

    rows = available_runtimes()
    if args.format == "json":
        print(json.dumps({"machine": machine_name(), "runtimes": rows}, indent=2))
        return 0
    from evoforge.report import format_table

    print(f"machine: {machine_name()}")
    shown = [{**row, "installed": "yes" if row["installed"] else "no", "version": row["version"] or "-",
              "modes": ", ".join(row["modes"]) or "-"} for row in rows]
    print(format_table(shown, max_width=0))
    return 0


def _resume_args(p: argparse.ArgumentParser) -> None:
    from evoforge.run import FIXED_ON_RESUME

    p.add_argument("run_dir", help="run directory")
    _execution_args(p)  # each defaults to the run's own; --budget replaces the run's budget (to extend it)
    for name in FIXED_ON_RESUME:  # accepted only to be refused by name (argparse would call them unrecognized)
        p.add_argument(f"--{name.replace('_', '-')}", dest=f"fixed_{name}", default=None, help=argparse.SUPPRESS)


@command("resume", "continue a stopped run with its stored settings", _resume_args)
def _resume(args: argparse.Namespace) -> int:
    import evoforge
    from evoforge.api import run_settings
    from evoforge.run import FIXED_ON_RESUME

    stored = run_settings(args.run_dir)
    for name in FIXED_ON_RESUME:
        if getattr(args, f"fixed_{name}") is not None:
            flag = f"--{name.replace('_', '-')}"
            raise ConfigError(f"{flag} cannot change on resume: {args.run_dir} keeps its {name} "
                              f"({getattr(stored, name)!r}); drop the flag, or start a new run with it")
    overrides = _settings(args)
    spec = stored.replace(**overrides)
    evoforge.resume(args.run_dir, callback=_progress(spec, args), **overrides)
    return _show_run(args.run_dir, args)


def _show_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="run directory")
    p.add_argument("--format", choices=("table", "json"), default="table")
    _table_args(p)


def _table_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sort", default=None, help="column to sort the front by (ascending; see --descending)")
    p.add_argument("--descending", action="store_true", help="sort from the largest value down")
    p.add_argument("--columns", default=None, help="comma-separated columns to show (default: objectives, test numbers, key metrics)")
    p.add_argument("--wide", action="store_true", help="never cut a cell (the pipeline or edit list is shown whole)")


@command("show", "print a run's Pareto front (with held-out numbers vs the baseline)", _show_args)
def _show(args: argparse.Namespace) -> int:
    return _show_run(args.run_dir, args)


def _show_run(run_dir: str | Path, args: argparse.Namespace) -> int:
    from evoforge.report import REPORT_NAME, run_summary

    summary = run_summary(run_dir)
    table = _shape_table(summary, getattr(args, "sort", None), getattr(args, "columns", None), getattr(args, "descending", False))
    report = Path(run_dir) / REPORT_NAME
    if getattr(args, "format", "table") == "json":
        print(json.dumps({**summary, "table": table, "report": str(report) if report.exists() else None}, indent=2, default=str))
        return 0
    print(summary["headline"])
    _print_front(table, args)
    if report.exists():
        print(f"report: {report}")
    return 0


def _shape_table(summary: dict[str, Any], sort: str | None, columns: str | None, descending: bool) -> list[dict[str, Any]]:
    """The summary's front table sorted by ``sort`` and cut to ``columns`` (any column of the
    full front records); `ConfigError` lists the columns when one is unknown."""
    rows, table = summary["front"], summary["table"]
    known = list(dict.fromkeys(c for row in rows for c in row))
    if columns is not None and not _comma_list(columns):
        raise ConfigError(f"--columns {columns!r} names no column; give comma-separated names such as id,quality_drop")
    wanted = _comma_list(columns) if columns else list(table[0]) if table else []
    for name in [*wanted, *([sort] if sort else [])]:
        if rows and name not in known:
            raise ConfigError(f"unknown column {name!r}; columns: {', '.join(known)}")
    order = list(range(len(rows)))
    if sort:
        present = [i for i in order if isinstance(rows[i].get(sort), (int, float, str))]
        present.sort(key=lambda i: rows[i][sort], reverse=descending)
        order = present + [i for i in order if i not in present]  # members without the column last
    return [{c: rows[i].get(c) for c in wanted} for i in order]


def _report_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="run directory")
    p.add_argument("--compare", nargs="+", default=[], metavar="RUN", help="other runs to overlay (same objectives)")
    p.add_argument("--out", default=None, help="output file (default: RUN/report.html)")


@command("report", "write a run's self-contained HTML report (front, progress, members, what matters)", _report_args)
def _report(args: argparse.Namespace) -> int:
    from evoforge.report import write_report

    path = write_report(args.run_dir, args.out, compare=args.compare)  # a path without a run fails with its name
    print(f"report: {path} ({path.stat().st_size / 1e6:.1f} MB, opens offline)")
    return 0


def _export_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="run directory")
    chosen = p.add_mutually_exclusive_group(required=True)
    chosen.add_argument("--id", dest="member_id", type=int, help="front member id (see evoforge show)")
    chosen.add_argument("--all", dest="every_member", action="store_true",
                        help="every front member, each into OUT/<id> (default RUN/exports/<id>); a member that fails is "
                             "reported and the others are still exported")
    chosen.add_argument("--pick", default=None,
                        help='choose by rule, e.g. "max_quality_drop=1,minimize=test_latency_ratio" (an objective, or '
                             'test_<objective> for the number re-measured when the run ended; no minimize: the knee point)')
    p.add_argument("--out", default=None,
                   help="output directory (default: RUN/exports/<id>; with --all, the folder for the members' folders)")
    p.add_argument("--format", dest="formats", default=None,
                   help="comma-separated runtimes to also convert a float member to (e.g. onnxruntime,openvino,inductor,torchscript)")


@command("export", "write a front member as a deployable artifact and re-verify it", _export_args)
def _export(args: argparse.Namespace) -> int:
    import evoforge

    formats = _comma_list(args.formats) if args.formats else []
    if args.every_member:
        if formats:
            raise ConfigError("--format converts one float member; give --id or --pick with it, not --all")
        return _export_front(args.run_dir, args.out)
    member_id = args.member_id
    if args.pick is not None:
        member_id = evoforge.load_front(args.run_dir).pick_rule(args.pick).id
    card = evoforge.export_member(args.run_dir, member_id, args.out, formats=formats)
    print(json.dumps({"id": member_id, **card}, indent=2, default=str))
    return 0


def _export_front(run_dir: str, out: str | None) -> int:
    """Export every front member; print their cards as one JSON list; 1 when any failed."""
    import evoforge

    cards = evoforge.export_front(run_dir, out)
    print(json.dumps([{"id": member_id, **card} for member_id, card in cards.items()], indent=2, default=str))
    failed = [member_id for member_id, card in cards.items() if "error" in card]
    for member_id in failed:
        print(f"evoforge: member {member_id} was not exported: {cards[member_id]['error']}", file=sys.stderr)
    return 1 if failed else 0


def _explain_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="run directory (an evolve run)")
    p.add_argument("--id", dest="member_id", type=int, required=True, help="front member id (see evoforge show)")
    p.add_argument("--format", choices=("table", "json"), default="table")


@command("explain", "measure what each edit of an evolve member contributes: the member without it, and it alone",
         _explain_args)
def _explain(args: argparse.Namespace) -> int:
    import evoforge

    rows = evoforge.explain_member(args.run_dir, args.member_id)
    if args.format == "json":
        print(json.dumps(rows, indent=2, default=str))
        return 0

    def cell(numbers: dict[str, Any]) -> str:
        if "failure" in numbers:
            return "fails: " + str(numbers["failure"]).split(":", 1)[0]
        return "  ".join(f"{k} {v:.4g}" for k, v in numbers.items())

    print("(each variant compiled, run on the validation split and timed against the original now; "
          "timing noise is about 1-2% on a quiet machine)")
    for row in rows:
        print(row["edit"])
        for part in ("member", "without", "alone"):
            if part in row:
                print(f"    {part + ':':9} {cell(row[part])}")
    return 0


def _minimize_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="run directory (an evolve run)")
    p.add_argument("--id", dest="member_ids", type=int, action="append", default=None,
                   help="front member id to minimize (repeat for several; default: every feasible member with two edits or more)")
    p.add_argument("--tolerance", type=float, default=0.02,
                   help="how much slower (relative) than the member timed now a shorter variant may be (default 0.02)")
    p.add_argument("--budget", default=None, help="stop after this many evaluations or this long (200, 90s, 30m; default: none)")
    p.add_argument("--workers", type=int, default=None, help="worker processes (default: the run's)")
    p.add_argument("--format", choices=("table", "json"), default="table")


@command("minimize", "drop the edits of front members that buy nothing, one at a time; the shorter variants join the run",
         _minimize_args)
def _minimize(args: argparse.Namespace) -> int:
    import evoforge
    from evoforge.progress import MinimizeProgress

    records = evoforge.minimize(args.run_dir, args.member_ids, tolerance=args.tolerance, budget=args.budget, workers=args.workers,
                                callback=None if args.quiet else MinimizeProgress())
    if args.format == "json":
        print(json.dumps(records, indent=2, default=str))
        return 0

    def numbers(values: dict[str, float] | None) -> str:
        return "  ".join(f"{k} {v:.4g}" for k, v in values.items()) if values else "-"

    for r in records:
        kept, removed = len(r["kept"]), len(r["removed"])
        state = "" if r["finished"] else " (stopped by the budget: the best found by then)"
        if r["reference_failure"]:
            print(f"member {r['member_id']}: fails when evaluated again ({r['reference_failure']}); left as it is")
            continue
        print(f"member {r['member_id']} ({_count(kept + removed, 'edit')}) -> member {r['result_id']} "
              f"({_count(kept, 'edit')}){state}")
        print(f"    timed now: {numbers(r['reference'])}")
        print(f"    shorter:   {numbers(r['objectives'])}")
        for words in r["removed_words"]:
            print(f"    removed: {words}")
        if not kept:
            print("    (no edit buys anything beyond the tolerance: the result is the original program)")
    print(f"(the variants are stored in the run: `evoforge show {args.run_dir}`, `evoforge export {args.run_dir} --id N`)")
    return 0


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _demo_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--budget", default="3m", help="search budget (default 3m)")
    p.add_argument("--run", dest="run_dir", default=None)


@command("demo", "compress the bundled digits-cnn task for a few minutes and print the front", _demo_args)
def _demo(args: argparse.Namespace) -> int:
    return _compress(_demo_compress_args(args))


def _demo_compress_args(args: argparse.Namespace) -> argparse.Namespace:
    """The `compress` command line the demo stands for, parsed as `compress` parses it (every
    compress option at its default), with the demo's budget, run directory and global flags."""
    argv = ["compress", "--task", "digits-cnn", "--budget", str(args.budget), "--workers", "2" if _cores() >= 2 else "1"]
    if args.run_dir:
        argv += ["--run", str(args.run_dir)]
    compress_args = build_parser().parse_args(argv)
    compress_args.debug, compress_args.quiet = args.debug, args.quiet
    return compress_args


def _cores() -> int:
    from evoforge.execute.local import available_cores

    return available_cores()


def _print_front(rows: Sequence[dict[str, Any]], args: argparse.Namespace) -> None:
    from evoforge.report import format_table

    if getattr(args, "format", "table") == "json":
        print(json.dumps(list(rows), indent=2, default=str))
    else:
        print(format_table(rows, max_width=0 if getattr(args, "wide", False) else 40))


class _Parser(argparse.ArgumentParser):
    """argparse with the CLI's one-line errors (exit code 2) instead of a usage dump."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"evoforge: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    common.add_argument("--quiet", action="store_true", default=argparse.SUPPRESS, help="no progress output")
    parser = _Parser(
        prog="evoforge", description="Evolve cheaper versions of a neural network.", parents=[common]
    )
    parser.set_defaults(debug=False, quiet=False)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, arguments, _) in _COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text, parents=[common])
        arguments(p)
    return parser


class _StderrLines(logging.Handler):
    """Writes each record as ``evoforge: warning: MESSAGE`` to whatever ``sys.stderr`` is then."""

    def emit(self, record: logging.LogRecord) -> None:
        sys.stderr.write(f"evoforge: warning: {record.getMessage()}\n")


def _log_warnings_to_stderr() -> None:
    """The library's warnings (``logging.getLogger("evoforge")``) as one line each on stderr, and
    only there: libraries that give the root logger a handler when imported (iree-turbine) would
    print each of them a second time."""
    logger = logging.getLogger("evoforge")
    if not any(isinstance(h, _StderrLines) for h in logger.handlers):
        logger.addHandler(_StderrLines(logging.WARNING))
    logger.propagate = False


_RESUMABLE = ("search", "compress", "evolve", "resume", "demo")
"""The commands an interruption leaves a run to resume after."""


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")  # torch's C++ deprecation notices, before any torch import
    parser = build_parser()
    args = parser.parse_args(argv)
    _log_warnings_to_stderr()
    try:
        return _COMMANDS[args.command][2](args)
    except (EvoforgeError, FileNotFoundError) as exc:
        if args.debug:
            raise
        print(f"evoforge: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into head and the like
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        run = getattr(args, "run_dir", None)
        if args.command == "minimize":
            print(f"evoforge: interrupted; the variants evaluated so far are stored in the run: `evoforge minimize {run}` "
                  "again goes on without evaluating them again", file=sys.stderr)
        elif args.command in _RESUMABLE and run is not None and Path(run, STORE_FILE).exists():
            print(f"evoforge: interrupted; continue with `evoforge resume {run}`", file=sys.stderr)
        else:
            print("evoforge: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
