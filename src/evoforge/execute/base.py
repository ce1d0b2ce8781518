"""The executor interface: run evaluations away from the search driver.

An executor receives the domain as a JSON spec (see `evoforge.search.domain.domain_spec`) and
rebuilds it where evaluations run. Every task yields exactly one `Evaluation`: exceptions,
crashes, hangs and lost workers become FAILED / CRASHED / TIMEOUT results, never exceptions
in the driver.
"""

from __future__ import annotations

import abc
import dataclasses
import multiprocessing
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from evoforge.genome import genome_from_json
from evoforge.search.domain import Domain, EvalContext
from evoforge.search.evaluation import Evaluation, Status


@dataclasses.dataclass(frozen=True)
class EvalTask:
    """One evaluation to run: the genome (as JSON), its seed and artifact directory."""

    key: str
    genome_json: str
    seed: int
    artifact_dir: str | None = None
    fidelity: float = 1.0


class Executor(abc.ABC):
    """Runs `EvalTask`s for one domain; use as a context manager or call `close`."""

    @abc.abstractmethod
    def start(self, domain_spec: dict[str, Any]) -> None:
        """Prepare to evaluate genomes of the domain described by ``domain_spec``."""

    @abc.abstractmethod
    def evaluate(
        self, tasks: Sequence[EvalTask], stop: Callable[[], bool] | None = None, wanted: Callable[[], Sequence[EvalTask]] | None = None
    ) -> Iterator[tuple[EvalTask, Evaluation]]:
        """Run the tasks; yield (task, evaluation) pairs in completion order. ``stop`` is asked
        before each task starts: once it returns True no further task starts, the running ones
        finish and are yielded, and the rest are not run (a caller asks for them again later).
        ``wanted`` is asked after each yielded pair has been handled by the caller: every task
        the caller still wants run and has not been handed (which may depend on the results so
        far), in the order to start them; it replaces the queue (running tasks are not started
        again). Tasks are compared by value."""

    def close(self) -> None:
        """Stop workers and release resources."""

    @property
    def threads_per_evaluation(self) -> int:
        return 1

    def timing_machines(self) -> list[str] | None:
        """After `start`: the machines (`evoforge.machine.machine_name`) this executor's
        evaluations run on, the most common first, for looking up timed evaluations in the shared
        cache; None (the default): this process's machine. The engine asks once per generation."""
        return None

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_task(domain: Domain, task: EvalTask, threads: int) -> Evaluation:
    """Evaluate one task in the current process; exceptions become FAILED results."""
    start = time.perf_counter()
    try:
        genome = genome_from_json(task.genome_json)
        artifact_dir = Path(task.artifact_dir) if task.artifact_dir else None
        if artifact_dir is not None:
            artifact_dir.mkdir(parents=True, exist_ok=True)
        result = domain.evaluate(genome, EvalContext(seed=task.seed, artifact_dir=artifact_dir, threads=threads, fidelity=task.fidelity))
        if not isinstance(result, Evaluation):
            raise TypeError(f"evaluate returned {type(result).__name__}, expected Evaluation")
    except Exception as exc:  # noqa: BLE001 - every failure is a recorded result
        tail = "".join(traceback.format_exception(exc)[-3:])
        reason = f"{type(exc).__name__}: {exc}".strip()
        return Evaluation(
            status=Status.FAILED, reason=reason[:2000], duration_s=time.perf_counter() - start, metrics={"traceback": tail[-4000:]}
        )
    if result.duration_s == 0.0:
        result = dataclasses.replace(result, duration_s=time.perf_counter() - start)
    return result


def exit_with_parent(parent_pid: int, interval_s: float = 0.5) -> None:
    """End this process within ``interval_s`` once ``parent_pid`` is no longer its parent: a
    worker whose driver was killed (SIGKILL, SIGTERM, a scheduler's time limit) must not go on
    computing an evaluation nobody will record. Watches from a daemon thread; call it first
    thing in a child process, with the parent's pid passed in (the parent may already be gone)."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(interval_s)
        os._exit(1)

    threading.Thread(target=watch, name="evoforge-exit-with-parent", daemon=True).start()


UNGUARDED_SCRIPT_EXIT = 86
UNGUARDED_SCRIPT_HELP = ("it imported your script, which starts an evoforge run when imported; worker processes import "
                         "the script that started them, so put the run under `if __name__ == \"__main__\":`")


def refuse_in_worker_import(entry: str) -> None:
    """End this process with `UNGUARDED_SCRIPT_EXIT` if it is a spawned worker still importing the
    user's script, whose module-level code called ``entry``; the parent names the cause. Call it
    first in every public function that may start worker processes."""
    if getattr(multiprocessing.current_process(), "_inheriting", False):  # the flag spawn sets while it imports __main__
        sys.stderr.write(f"evoforge: {entry} was called in a worker process: {UNGUARDED_SCRIPT_HELP}\n")
        raise SystemExit(UNGUARDED_SCRIPT_EXIT)


def describe_exit(exitcode: int | None) -> str:
    """'signal SIGSEGV' / 'exit code 3' for a dead process, and the cause of `UNGUARDED_SCRIPT_EXIT`."""
    if exitcode is None:
        return "unknown exit"
    if exitcode == UNGUARDED_SCRIPT_EXIT:
        return UNGUARDED_SCRIPT_HELP
    if exitcode < 0:
        try:
            return f"signal {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"signal {-exitcode}"
    return f"exit code {exitcode}"
