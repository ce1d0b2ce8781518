import subprocess
import sys
import threading
import time

import pytest

from evoforge.errors import EvaluationError
from evoforge.hostlock import LOCK_PATH, STEPS_PATH, MeasurementLock, compute_step


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


@pytest.mark.parametrize(("code", "refusal"), [(_STEPPING, f"{STEPS_PATH}.*compute step did not end"), (_MEASURING, "another process")],
                         ids=["a step in another process", "a measurement in another process"])
def test_a_measurement_waits_for_other_processes(code: str, refusal: str) -> None:
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "holding"
        _refused_then_waits(refusal, 0.3)
    finally:
        proc.wait(30)


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
