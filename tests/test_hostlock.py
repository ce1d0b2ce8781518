import os
import subprocess
import sys
import threading
import time

import pytest

from evoforge.errors import EvaluationError
from evoforge.hostlock import LOCK_DIR_VARIABLE, LOCK_PATH, STEPS_PATH, MeasurementLock, compute_step


def _refused_then_waits(match: str, at_least: float) -> None:
    """A measurement with a short timeout is refused (``match``); one without waits ``at_least`` s."""
    with pytest.raises(EvaluationError, match=match):
        with MeasurementLock(timeout=0.2):
            pass
    start = time.monotonic()
    with MeasurementLock(timeout=30):
        waited = time.monotonic() - start
    assert waited > at_least


@pytest.mark.parametrize("waiter", [compute_step, MeasurementLock], ids=["a compute step", "another thread's measurement"])
def test_other_threads_wait_for_a_measurement_to_end(waiter) -> None:
    events: list[str] = []

    def other() -> None:
        with waiter():
            events.append("other")

    with MeasurementLock(), MeasurementLock():  # re-entrant in one thread: no deadlock
        thread = threading.Thread(target=other)
        thread.start()
        time.sleep(0.3)
        events.append("measured")
    thread.join(10)
    assert events == ["measured", "other"]


def test_a_measurement_waits_for_the_steps_in_flight():
    inside, release = threading.Event(), threading.Event()

    def step() -> None:
        with compute_step():
            inside.set()
            release.wait(10)

    worker = threading.Thread(target=step)
    worker.start()
    assert inside.wait(10)
    with pytest.raises(EvaluationError, match="compute step did not end"):
        with MeasurementLock(timeout=0.2):
            pass
    threading.Timer(0.3, release.set).start()
    start = time.monotonic()
    with MeasurementLock(timeout=30):
        waited = time.monotonic() - start
    worker.join(10)
    assert waited > 0.2


_STEPPING = ("import time\nfrom evoforge.hostlock import compute_step\n"
             "with compute_step():\n    print('holding', flush=True)\n    time.sleep(1.0)\n")
_MEASURING = (f"import fcntl, os, time\nfd = os.open({str(LOCK_PATH)!r}, os.O_RDWR | os.O_CREAT)\nfcntl.flock(fd, fcntl.LOCK_EX)\n"
              "print('holding', flush=True)\ntime.sleep(1.0)\n")


def _holding(code: str, **env: str) -> subprocess.Popen[str]:
    """A process running ``code`` (with ``env`` added), once it says it holds its lock."""
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env={**os.environ, **env})
    assert proc.stdout is not None and proc.stdout.readline().strip() == "holding"
    return proc


@pytest.mark.parametrize(("code", "refusal"), [(_STEPPING, f"{STEPS_PATH}.*compute step did not end"), (_MEASURING, "another process")],
                         ids=["a step in another process", "a measurement in another process"])
def test_a_measurement_waits_for_other_processes(code: str, refusal: str) -> None:
    proc = _holding(code)
    try:
        _refused_then_waits(refusal, 0.3)
    finally:
        proc.wait(30)


def test_processes_with_their_own_temp_dir_still_share_the_lock(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv(LOCK_DIR_VARIABLE, raising=False)
    proc = _holding(_STEPPING, TMPDIR=str(tmp_path))  # a scheduler's per-job temp dir
    try:
        _refused_then_waits("compute step did not end", 0.3)
    finally:
        proc.wait(30)


def test_the_lock_dir_variable_moves_the_lock_and_a_bad_one_is_a_one_line_error(tmp_path) -> None:
    proc = _holding(_STEPPING, **{LOCK_DIR_VARIABLE: str(tmp_path)})
    try:
        with MeasurementLock(timeout=0.2):  # another host's lock, as far as this process is concerned
            pass
    finally:
        proc.wait(30)
    assert (tmp_path / LOCK_PATH.name).exists()
    missing = tmp_path / "missing"
    done = subprocess.run([sys.executable, "-c", "from evoforge.hostlock import compute_step\nwith compute_step(): pass"],
                          capture_output=True, text=True, env={**os.environ, LOCK_DIR_VARIABLE: str(missing)})
    assert done.returncode != 0
    assert f"cannot open the host lock file {missing}" in done.stderr and LOCK_DIR_VARIABLE in done.stderr


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="file modes do not bind root")
def test_a_lock_file_this_user_cannot_write_still_locks(tmp_path) -> None:
    for name in (LOCK_PATH.name, STEPS_PATH.name):  # as if another user had created them
        (tmp_path / name).touch()
        (tmp_path / name).chmod(0o444)
    code = ("from evoforge.hostlock import MeasurementLock, compute_step\n"
            "with MeasurementLock(timeout=5): pass\nwith compute_step(): print('ok')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, LOCK_DIR_VARIABLE: str(tmp_path)})
    assert done.stdout.strip() == "ok", done.stderr


def test_steps_nest_and_run_inside_their_own_thread_measurement():
    with MeasurementLock(), compute_step(), compute_step():  # no deadlock: the thread measures, its steps are free
        pass
    with compute_step(), compute_step():
        pass
    with compute_step(), pytest.raises(RuntimeError, match="inside a compute_step"):
        with MeasurementLock(timeout=1):
            pass
    with MeasurementLock(timeout=5):  # nothing was left held
        pass
