"""The host-wide measurement lock: no two latency measurements on one host overlap.

Torch-free, shared by every domain that times things (compressed models, compiled programs).
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType

from evoforge.errors import EvaluationError

LOCK_PATH = Path(tempfile.gettempdir()) / "evoforge-measure.lock"

_process_lock = threading.RLock()
_process_depth = 0
_process_fd: int | None = None


class MeasurementLock:
    """Host-wide exclusive lock (``fcntl.flock`` on `LOCK_PATH`) around latency measurements.

    Serializes measurements across processes and threads; re-entrant within one thread. Waits up
    to ``timeout`` seconds (forever when None), then raises `EvaluationError`.
    """

    def __init__(self, *, timeout: float | None = None) -> None:
        self.timeout = timeout

    def __enter__(self) -> MeasurementLock:
        global _process_depth, _process_fd
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        if not _process_lock.acquire(timeout=-1 if self.timeout is None else self.timeout):
            raise EvaluationError(f"measurement lock not acquired within {self.timeout} s (held by another thread)")
        if _process_depth == 0:
            try:
                _process_fd = self._flock(deadline)
            except BaseException:
                _process_lock.release()
                raise
        _process_depth += 1
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        global _process_depth, _process_fd
        import fcntl

        _process_depth -= 1
        if _process_depth == 0 and _process_fd is not None:
            fcntl.flock(_process_fd, fcntl.LOCK_UN)
            os.close(_process_fd)
            _process_fd = None
        _process_lock.release()

    def _flock(self, deadline: float | None) -> int:
        import fcntl

        fd = os.open(LOCK_PATH, os.O_RDWR | os.O_CREAT, 0o666)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if deadline is None else fcntl.LOCK_NB))
                return fd
            except BlockingIOError:
                if deadline is not None and time.monotonic() >= deadline:
                    os.close(fd)
                    raise EvaluationError(
                        f"measurement lock {LOCK_PATH} not acquired within {self.timeout} s; another process is measuring"
                    ) from None
                time.sleep(0.005)
