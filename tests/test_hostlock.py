import subprocess
import sys
import threading
import time

import pytest

from evoforge.errors import EvaluationError
from evoforge.hostlock import STEPS_PATH, MeasurementLock, compute_step


def test_a_compute_step_waits_for_a_measurement_to_end():
    events: list[str] = []

    def step() -> None:
        with compute_step():
            events.append("step")

    with MeasurementLock():
        worker = threading.Thread(target=step)
        worker.start()
        time.sleep(0.3)
        events.append("measured")
    worker.join(10)
    assert events == ["measured", "step"]


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


def test_a_measurement_waits_for_another_process_step():
    code = (
        "import time\n"
        "from evoforge.hostlock import compute_step\n"
        "with compute_step():\n"
        "    print('stepping', flush=True)\n"
        "    time.sleep(1.0)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "stepping"
        with pytest.raises(EvaluationError, match=f"{STEPS_PATH}.*compute step did not end"):
            with MeasurementLock(timeout=0.2):
                pass
        start = time.monotonic()
        with MeasurementLock(timeout=30):
            waited = time.monotonic() - start
        assert waited > 0.3
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
