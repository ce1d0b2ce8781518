"""Process helpers for tests that kill a driver and check what it leaves behind."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path


def process_running(pid: int) -> bool:
    """Whether ``pid`` is a live process (one that exited may linger as a zombie until reaped)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def child_outlives_killed_parent(script: str, tmp_path: Path, grace_s: float = 15.0) -> bool:
    """Run ``script`` (it prints one child process id, then waits), SIGKILL it once the child is
    busy, and say whether the child is still running ``grace_s`` later."""
    path = tmp_path / "driver.py"
    path.write_text(script)
    driver = subprocess.Popen([sys.executable, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert driver.stdout is not None
        child = int(driver.stdout.readline())
        time.sleep(1.0)
        assert process_running(child), "the child was not running before its parent was killed"
    finally:
        driver.kill()
        driver.wait()
    deadline = time.monotonic() + grace_s
    while process_running(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    return process_running(child)
