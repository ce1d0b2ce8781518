"""The command line: each command parses arguments, calls one library function, prints.

Errors a user can fix print one line and exit with code 2 (``--debug`` shows the traceback).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from evoforge.errors import EvoforgeError

Command = Callable[[argparse.Namespace], int]
_COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Command]] = {}


def command(name: str, help_text: str, arguments: Callable[[argparse.ArgumentParser], None]) -> Callable[[Command], Command]:
    def register(fn: Command) -> Command:
        _COMMANDS[name] = (help_text, arguments, fn)
        return fn

    return register


def _run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--budget", default=None, help="evaluations (200) or time (90s, 30m, 2h)")
    p.add_argument("--algorithm", default=None, help="nsga2, petra or random")
    p.add_argument("--pop-size", type=int, default=None, help="population size")
    p.add_argument("--workers", type=int, default=None, help="worker processes (0 = in this process)")
    p.add_argument("--timeout", type=float, default=None, help="seconds allowed per evaluation")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--run", dest="run_dir", default=None, help="run directory (default: runs/<name>-<time>)")


def _search_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--problem", required=True, help="zdt1, zdt2, zdt3 or dtlz2")
    _run_args(p)


def _progress(termination: Any, workers: int, args: argparse.Namespace) -> Any:
    from evoforge.progress import ProgressPrinter

    return None if args.quiet else ProgressPrinter(termination, workers=workers)


def _default_run_dir(name: str) -> Path:
    import time

    return Path("runs") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"


@command("search", "search a benchmark problem (ZDT1-3, DTLZ2) with the engine", _search_args)
def _search(args: argparse.Namespace) -> int:
    import evoforge
    from evoforge.problems import BenchmarkDomain
    from evoforge.search.termination import parse_budget

    termination = parse_budget(args.budget or 2000)
    run_dir = Path(args.run_dir) if args.run_dir else _default_run_dir(args.problem)
    workers = 0 if args.workers is None else args.workers
    options = {"pop_size": args.pop_size} if args.pop_size else {}
    front = evoforge.optimize(
        BenchmarkDomain(args.problem),
        algorithm=args.algorithm or "nsga2",
        algorithm_options=options,
        budget=termination,
        seed=args.seed,
        workers=workers,
        timeout_s=args.timeout,
        run_dir=run_dir,
        callback=_progress(termination, workers, args),
    )
    print(f"run: {run_dir}")
    _print_front(front.to_records(), args)
    return 0


def _resume_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="run directory")
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--timeout", type=float, default=None)
    p.add_argument("--budget", default=None, help="replace the run's budget (to extend it)")


@command("resume", "continue a stopped run", _resume_args)
def _resume(args: argparse.Namespace) -> int:
    import evoforge
    from evoforge.api import open_store
    from evoforge.search.termination import Termination, parse_budget

    with open_store(args.run_dir, readonly=True) as store:
        config = store.config() or {}
        executor = store.meta("executor", {}) or {}
    termination = parse_budget(args.budget) if args.budget else Termination(**config.get("termination", {"max_evaluations": 1}))
    workers = args.workers if args.workers is not None else executor.get("workers", 0)
    front = evoforge.resume(
        args.run_dir, workers=args.workers, timeout_s=args.timeout, budget=args.budget,
        callback=_progress(termination, workers, args),
    )
    _print_front(front.to_records(), args)
    return 0


def _show_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="run directory")
    p.add_argument("--format", choices=("table", "json"), default="table")


@command("show", "print a run's Pareto front", _show_args)
def _show(args: argparse.Namespace) -> int:
    from evoforge.report import run_summary

    summary = run_summary(args.run_dir)
    if args.format == "json":
        print(json.dumps(summary, indent=2, default=str))
        return 0
    print(summary["headline"])
    _print_front(summary["front"], args)
    return 0


def _print_front(rows: Sequence[dict[str, Any]], args: argparse.Namespace) -> None:
    from evoforge.report import format_table

    if getattr(args, "format", "table") == "json":
        print(json.dumps(list(rows), indent=2, default=str))
    else:
        print(format_table(rows))


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    common.add_argument("--quiet", action="store_true", default=argparse.SUPPRESS, help="no progress output")
    parser = argparse.ArgumentParser(
        prog="evoforge", description="Evolve cheaper versions of a neural network.", parents=[common]
    )
    parser.set_defaults(debug=False, quiet=False)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, arguments, _) in _COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text, parents=[common])
        arguments(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
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
        print("evoforge: interrupted; continue with `evoforge resume RUN`", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
