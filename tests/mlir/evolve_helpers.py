"""Functions the GEVO-ML tests run inside a sandbox worker (importable by the spawned child)."""

from __future__ import annotations

import os
import signal


def die_by_segfault() -> None:
    """Kill the calling process with SIGSEGV, the way a runtime crash would."""
    os.kill(os.getpid(), signal.SIGSEGV)
