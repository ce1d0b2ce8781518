"""Helpers of the GEVO-ML tests: functions they run inside a sandbox worker (importable by the
spawned child) and lookups in a program's text."""

from __future__ import annotations

import os
import re
import signal


def uid_names(program) -> dict[str, str]:
    """UID -> op name of every tagged op with a result, in program order."""
    return {m.group(2): m.group(1) for m in re.finditer(r"= ([a-z_]+\.[a-z_.]+)[^\n]*?evoforge\.uid = \"(U\d+)\"", program.text)}


def die_by_segfault() -> None:
    """Kill the calling process with SIGSEGV, the way a runtime crash would."""
    os.kill(os.getpid(), signal.SIGSEGV)
