"""Evaluate in local worker processes (spawn start method) with per-evaluation timeouts.

A worker that crashes (segfault, abort, os._exit) or hangs past its timeout is killed and
replaced; its candidate is recorded as CRASHED or TIMEOUT and the rest go on.
"""

from __future__ import annotations

import collections
import multiprocessing
import multiprocessing.connection
import os
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from evoforge.errors import ConfigError, EvaluationError
from evoforge.execute.base import EvalTask, Executor, describe_exit, exit_with_parent, run_task
from evoforge.search.evaluation import Evaluation, Status

_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def available_cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


def _limit_memory(limit_mb: int | None) -> None:
    """Cap this process's address space at its current size plus ``limit_mb`` (Linux), so an
    evaluation that allocates past it fails instead of exhausting the host."""
    if limit_mb is None:
        return
    import resource

    with open("/proc/self/statm") as statm:
        current = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    limit = current + limit_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _worker_main(
    conn: multiprocessing.connection.Connection, domain_spec: dict[str, Any], threads: int, memory_limit_mb: int | None,
    driver_pid: int,
) -> None:
    exit_with_parent(driver_pid)
    for var in _THREAD_VARS:
        os.environ[var] = str(threads)
    os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")  # before any torch import: no C++ warning spam
    from evoforge.search.domain import domain_from_spec

    try:
        domain = domain_from_spec(domain_spec)
        domain.setup_worker()
        _limit_torch_threads(threads)
        _limit_memory(memory_limit_mb)
    except BaseException as exc:  # noqa: BLE001 - reported to the driver
        conn.send(("setup_failed", f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ready", None))
    while True:
        try:
            task = conn.recv()
        except EOFError:
            return
        if task is None:
            return
        conn.send(("result", run_task(domain, task, threads).to_json()))


def _limit_torch_threads(threads: int) -> None:
    import sys

    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(threads)


class _Worker:
    def __init__(self, ctx: Any, domain_spec: dict[str, Any], threads: int, memory_limit_mb: int | None) -> None:
        self.conn, child = ctx.Pipe()
        # not daemonic: a domain may start its own helper processes (e.g. an IREE runtime sandbox)
        self.process = ctx.Process(target=_worker_main, args=(child, domain_spec, threads, memory_limit_mb, os.getpid()),
                                   daemon=False)
        self.process.start()
        child.close()
        self.task: EvalTask | None = None
        self.deadline = float("inf")
        self.started = 0.0

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=10)
        self.conn.close()


class LocalExecutor(Executor):
    """``workers`` spawn processes, each allowed ``threads_per_worker`` threads (default: the
    cores divided by the workers); workers x threads never exceeds the available cores.
    ``timeout_s`` bounds each evaluation (None: no limit); ``setup_timeout_s`` bounds a
    worker's start-up (import, data and model loading); ``memory_limit_mb`` caps what an
    evaluation may allocate beyond the worker's size after start-up (an evaluation that
    exceeds it fails or crashes, and is recorded as such)."""

    def __init__(
        self,
        workers: int = 1,
        *,
        timeout_s: float | None = None,
        threads_per_worker: int | None = None,
        setup_timeout_s: float = 600.0,
        memory_limit_mb: int | None = None,
    ) -> None:
        cores = available_cores()
        if workers < 1:
            raise ConfigError(f"workers must be at least 1, got {workers}")
        if workers > cores:
            raise ConfigError(f"workers={workers} exceeds the {cores} available cores; use at most {cores}")
        threads = threads_per_worker or max(1, cores // workers)
        if workers * threads > cores:
            raise ConfigError(
                f"workers x threads = {workers} x {threads} exceeds the {cores} available cores; lower threads_per_worker"
            )
        if timeout_s is not None and timeout_s <= 0:
            raise ConfigError(f"timeout_s must be positive, got {timeout_s}")
        self.workers = workers
        self.threads = threads
        self.timeout_s = timeout_s
        self.setup_timeout_s = setup_timeout_s
        if memory_limit_mb is not None and memory_limit_mb <= 0:
            raise ConfigError(f"memory_limit_mb must be positive, got {memory_limit_mb}")
        self.memory_limit_mb = memory_limit_mb
        self._ctx = multiprocessing.get_context("spawn")
        self._spec: dict[str, Any] | None = None
        self._pool: list[_Worker] = []

    @property
    def threads_per_evaluation(self) -> int:
        return self.threads

    def start(self, domain_spec: dict[str, Any]) -> None:
        self._spec = domain_spec

    def _spawn(self) -> _Worker:
        assert self._spec is not None
        worker = _Worker(self._ctx, self._spec, self.threads, self.memory_limit_mb)
        if not worker.conn.poll(self.setup_timeout_s):
            worker.kill()
            raise EvaluationError(f"a worker did not start within {self.setup_timeout_s:.0f} s")
        try:
            kind, detail = worker.conn.recv()
        except EOFError:
            worker.kill()
            raise EvaluationError(f"a worker died while starting: {describe_exit(worker.process.exitcode)}") from None
        if kind != "ready":
            worker.kill()
            raise EvaluationError(f"a worker could not set up the domain: {detail}")
        return worker

    def evaluate(
        self, tasks: Sequence[EvalTask], stop: Callable[[], bool] | None = None, wanted: Callable[[], Sequence[EvalTask]] | None = None
    ) -> Iterator[tuple[EvalTask, Evaluation]]:
        if self._spec is None:
            raise ConfigError("LocalExecutor.evaluate called before start")
        queue = collections.deque(tasks)
        while len(self._pool) < min(self.workers, len(queue)):
            self._pool.append(self._spawn())
        busy: list[_Worker] = []
        idle = list(self._pool)
        while queue or busy:
            if queue and idle and stop is not None and stop():
                queue.clear()  # start nothing more; the busy workers finish
                continue
            while len(queue) > len(idle) and len(self._pool) < self.workers:  # ``wanted`` grew the queue
                worker = self._spawn()
                self._pool.append(worker)
                idle.append(worker)
            while queue and idle:
                worker = idle.pop()
                worker.task = queue.popleft()
                worker.started = time.monotonic()
                worker.deadline = worker.started + self.timeout_s if self.timeout_s else float("inf")
                worker.conn.send(worker.task)
                busy.append(worker)
            wait_s = max(0.0, min(w.deadline for w in busy) - time.monotonic())
            ready = multiprocessing.connection.wait(
                [w.conn for w in busy] + [w.process.sentinel for w in busy], timeout=min(wait_s, 3600.0)
            )
            now = time.monotonic()
            for worker in list(busy):
                task = worker.task
                assert task is not None
                result: Evaluation | None = None
                if worker.conn in ready or worker.process.sentinel in ready:
                    result = self._receive(worker)
                elif now >= worker.deadline:
                    result = Evaluation.failure(
                        Status.TIMEOUT, f"evaluation exceeded its {self.timeout_s:g} s timeout", now - worker.started
                    )
                if result is None:
                    continue
                busy.remove(worker)
                worker.task = None
                if result.status in (Status.TIMEOUT, Status.CRASHED):
                    worker.kill()
                    self._pool.remove(worker)
                    if queue:
                        replacement = self._spawn()
                        self._pool.append(replacement)
                        idle.append(replacement)
                else:
                    idle.append(worker)
                yield task, result
                if wanted is not None:
                    running = {w.task for w in busy}
                    queue = collections.deque(t for t in wanted() if t not in running)

    def worker_pids(self) -> list[int]:
        """Process ids of the live workers (for monitoring)."""
        return [w.process.pid for w in self._pool if w.process.pid is not None]

    def _receive(self, worker: _Worker) -> Evaluation:
        try:
            if worker.conn.poll():
                kind, payload = worker.conn.recv()
                if kind == "result":
                    return Evaluation.from_json(payload)
        except (EOFError, OSError):
            pass
        worker.process.join(timeout=5)
        elapsed = time.monotonic() - worker.started
        return Evaluation.failure(Status.CRASHED, f"worker process died ({describe_exit(worker.process.exitcode)})", elapsed)

    def close(self) -> None:
        for worker in self._pool:
            try:
                worker.conn.send(None)
            except (BrokenPipeError, OSError):
                pass
        for worker in self._pool:
            worker.process.join(timeout=5)
            worker.kill()
        self._pool = []
