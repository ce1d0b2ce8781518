"""The host-wide measurement lock: latency measurements on one host neither overlap each other
nor run beside the host's evoforge compute.

Two lock files. A measurement (`MeasurementLock`) takes the gate (`LOCK_PATH`) exclusively, which
serializes measurements and holds back new compute steps, then the step lock (`STEPS_PATH`)
exclusively, which waits for the compute steps in flight to end. A compute step (`compute_step`:
a training step, a batch of inference) passes the gate shared for an instant and holds the step
lock shared while it runs. So while one worker times a model, the others pause at their next step
boundary instead of competing for the cores, caches and memory bandwidth the timing depends on.

The lock files live in ``$EVOFORGE_LOCK_DIR``, else ``/tmp``: one place per host, whatever temp
dir a job was given (a scheduler's per-job ``TMPDIR`` would otherwise hide jobs from each other).
They are opened read-only (flock needs no more), so a lock file another user created works too.

Torch-free, shared by every domain that times things (compressed models, compiled programs).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

from evoforge.errors import ConfigError, EvaluationError

LOCK_DIR_VARIABLE = "EVOFORGE_LOCK_DIR"


def lock_dir() -> Path:
    """Where this host's lock files live: ``$EVOFORGE_LOCK_DIR``, else ``/tmp`` where it exists,
    else the temp dir."""
    chosen = os.environ.get(LOCK_DIR_VARIABLE)
    if chosen:
        return Path(chosen)
    return Path("/tmp") if os.path.isdir("/tmp") else Path(tempfile.gettempdir())


LOCK_DIR = lock_dir()  # read once, at import
LOCK_PATH = LOCK_DIR / "evoforge-measure.lock"
STEPS_PATH = LOCK_DIR / "evoforge-steps.lock"

_process_lock = threading.RLock()
_process_depth = 0
_process_fds: tuple[int, int] | None = None
_owner_thread: int | None = None


class _ThreadSteps(threading.local):
    """A thread's own descriptors of the two lock files (flock locks belong to an open file, so
    threads that share one would release each other's steps) and its step nesting depth."""

    pid: int | None = None
    gate: int = -1
    steps: int = -1
    depth: int = 0

    def __del__(self) -> None:  # the thread ended
        if self.pid == os.getpid():
            os.close(self.gate)
            os.close(self.steps)


_thread_steps = _ThreadSteps()


class MeasurementLock:
    """Host-wide exclusive lock around latency measurements: waits for the other measurements and
    for the compute steps in flight (see the module docstring), and holds new steps back until it
    is released.

    Re-entrant within one thread. Waits up to ``timeout`` seconds (forever when None), then raises
    `EvaluationError`. Taking it inside the same thread's `compute_step` is a programming error
    (the step would wait for itself) and raises RuntimeError.
    """

    def __init__(self, *, timeout: float | None = None) -> None:
        self.timeout = timeout

    def __enter__(self) -> MeasurementLock:
        global _process_depth, _process_fds, _owner_thread
        if _thread_steps.depth > 0:
            raise RuntimeError("a latency measurement was started inside a compute_step of the same thread")
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        if not _process_lock.acquire(timeout=-1 if self.timeout is None else self.timeout):
            raise EvaluationError(f"measurement lock not acquired within {self.timeout} s (held by another thread)")
        if _process_depth == 0:
            try:
                gate = self._flock(LOCK_PATH, deadline, "another process is measuring")
                try:
                    steps = self._flock(STEPS_PATH, deadline, "a compute step did not end")
                except BaseException:
                    _unlock(gate)
                    raise
                _process_fds = (gate, steps)
            except BaseException:
                _process_lock.release()
                raise
            _owner_thread = threading.get_ident()
        _process_depth += 1
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        global _process_depth, _process_fds, _owner_thread
        _process_depth -= 1
        if _process_depth == 0 and _process_fds is not None:
            gate, steps = _process_fds
            _unlock(steps)
            _unlock(gate)
            _process_fds = None
            _owner_thread = None
        _process_lock.release()

    def _flock(self, path: Path, deadline: float | None, holder: str) -> int:
        import fcntl

        fd = _open(path)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if deadline is None else fcntl.LOCK_NB))
                return fd
            except BlockingIOError:
                if deadline is not None and time.monotonic() >= deadline:
                    os.close(fd)
                    raise EvaluationError(f"measurement lock {path} not acquired within {self.timeout} s; {holder}") from None
                time.sleep(0.005)


def _open(path: Path) -> int:
    """A read-only descriptor of the lock file ``path``, created if missing."""
    try:
        return os.open(path, os.O_RDONLY | os.O_CREAT, 0o666)
    except OSError as exc:
        raise ConfigError(f"cannot open the host lock file {path} ({exc.strerror}); set {LOCK_DIR_VARIABLE} "
                          "to a directory that every evoforge process on this host can read and write") from None


def _unlock(fd: int) -> None:
    import fcntl

    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


@contextlib.contextmanager
def compute_step() -> Iterator[None]:
    """Run the block as one short piece of compute (a training step, a batch of inference): it
    starts only while no latency measurement holds this host, and a measurement that starts meanwhile
    waits for it to end. Nested steps, and steps inside the thread's own measurement, add nothing."""
    import fcntl

    own = _thread_steps
    outermost = own.depth == 0 and _owner_thread != threading.get_ident()
    if outermost:
        if own.pid != os.getpid():  # first step of this thread, or a forked child that must not share its parent's locks
            own.gate, own.steps = _open(LOCK_PATH), _open(STEPS_PATH)
            own.pid = os.getpid()
        fcntl.flock(own.gate, fcntl.LOCK_SH)  # waits while a measurement holds the gate
        try:
            fcntl.flock(own.steps, fcntl.LOCK_SH)
        finally:
            fcntl.flock(own.gate, fcntl.LOCK_UN)
    own.depth += 1
    try:
        yield
    finally:
        own.depth -= 1
        if outermost:
            fcntl.flock(own.steps, fcntl.LOCK_UN)
