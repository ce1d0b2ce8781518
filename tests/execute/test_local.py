import os

import pytest

from evoforge.errors import ConfigError, EvaluationError
from evoforge.execute import EvalTask, InlineExecutor, LocalExecutor, available_cores
from evoforge.search.domain import domain_spec
from evoforge.search.engine import Search
from evoforge.search.evaluation import Status
from evoforge.search.termination import Termination
from evoforge.testing.domains import FaultDomain, FaultGenome
from tests.support.processes import child_outlives_killed_parent


def tasks(*behaviours):
    return [EvalTask(f"t{i}", FaultGenome(b, 0.25).to_json(), seed=i) for i, b in enumerate(behaviours)]


def test_every_fault_is_recorded_and_the_rest_complete():
    domain = FaultDomain()
    with LocalExecutor(2, timeout_s=2.0) as ex:
        ex.start(domain_spec(domain))
        results = {t.key: e for t, e in ex.evaluate(tasks("ok", "raise", "nan", "segfault", "abort", "exit", "hang", "ok", "inf"))}
    status = {k: e.status for k, e in results.items()}
    assert status == {
        "t0": Status.OK, "t1": Status.FAILED, "t2": Status.OK, "t3": Status.CRASHED,
        "t4": Status.CRASHED, "t5": Status.CRASHED, "t6": Status.TIMEOUT, "t7": Status.OK, "t8": Status.OK,
    }
    assert "injected failure" in results["t1"].reason
    assert "SIGSEGV" in results["t3"].reason and "SIGABRT" in results["t4"].reason
    assert "exit code 3" in results["t5"].reason
    assert "timeout" in results["t6"].reason
    assert results["t2"].objectives["f1"] != results["t2"].objectives["f1"]  # NaN passed on; the engine fails it


def test_search_with_faults_finishes_and_counts_failures(tmp_path):
    domain = FaultDomain(["ok", "raise", "segfault", "hang", "ok", "nan"])
    s = Search.create(domain, algorithm_options={"pop_size": 6}, termination=Termination(max_evaluations=10))
    with LocalExecutor(2, timeout_s=2.0) as ex:
        front = s.run(ex)
    summary = s.summary()
    assert summary is not None
    assert summary.failures == {"failed": pytest.approx(summary.failures["failed"]), **summary.failures}
    assert summary.failures["crashed"] >= 1 and summary.failures["timeout"] >= 1 and summary.failures["failed"] >= 2
    assert len(front) >= 1 and all(m.evaluation.ok for m in front)


@pytest.mark.parametrize("workers", [1, 2])
def test_stop_starts_nothing_more_and_the_running_tasks_finish(workers):
    done = []
    executor = LocalExecutor(workers, timeout_s=10.0) if workers > 1 else InlineExecutor()
    with executor as ex:
        ex.start(domain_spec(FaultDomain(sleep_s=0.2)))
        for task, result in ex.evaluate(tasks(*["ok"] * 6), stop=lambda: bool(done)):
            done.append(task.key)
            assert result.status is Status.OK
        assert list(ex.evaluate(tasks("ok", "ok"), stop=lambda: True)) == []  # nothing started, nothing to wait for
    assert len(done) == workers  # the first result stops the queue; a started task is never dropped


@pytest.mark.parametrize("workers", [1, 2])
def test_wanted_replaces_the_queue_and_grows_the_pool(workers):
    plan = tasks("ok", "ok", "ok")
    extra = EvalTask("new", FaultGenome("ok").to_json(), seed=9)
    order = []

    def wanted():
        if order == ["t0"]:
            plan[:] = [extra, plan[2]]  # t1 is no longer wanted, a new task goes first
        return [t for t in plan if t.key not in order]

    executor = LocalExecutor(workers, timeout_s=10.0) if workers > 1 else InlineExecutor()
    with executor as ex:
        ex.start(domain_spec(FaultDomain(sleep_s=0.1)))
        first = plan[:1] if workers > 1 else list(plan)  # one task: the pool starts with one worker
        for task, result in ex.evaluate(first, wanted=wanted):
            order.append(task.key)
            assert result.status is Status.OK
        if workers > 1:
            assert len(ex.worker_pids()) == 2  # the second worker joined for the wanted tasks
    assert order == ["t0", "new", "t2"] if workers == 1 else sorted(order) == ["new", "t0", "t2"]


def test_inline_executor_records_exceptions():
    ex = InlineExecutor()
    ex.start(domain_spec(FaultDomain()))
    [(task, result)] = list(ex.evaluate(tasks("raise")))
    assert result.status is Status.FAILED and "RuntimeError" in result.reason and "traceback" in result.metrics


def test_worker_setup_failure_is_a_clear_error():
    ex = LocalExecutor(1)
    ex.start({"name": "faults", "module": "evoforge.testing.domains", "config": {"behaviours": ["bogus"]}})
    with pytest.raises(EvaluationError, match="could not set up the domain.*bogus"):
        list(ex.evaluate(tasks("ok")))
    ex.close()


def test_worker_and_thread_limits():
    cores = available_cores()
    with pytest.raises(ConfigError, match="exceeds"):
        LocalExecutor(cores + 1)
    with pytest.raises(ConfigError, match="workers x threads"):
        LocalExecutor(1, threads_per_worker=cores + 1)
    assert LocalExecutor(1).threads == cores


def test_memory_limit_and_disk_full_are_recorded():
    domain = FaultDomain(memory_mb=2048)
    with LocalExecutor(1, timeout_s=20.0, memory_limit_mb=512) as ex:
        ex.start(domain_spec(domain))
        results = {t.key: e for t, e in ex.evaluate(tasks("memory", "disk_full", "ok"))}
    assert results["t0"].status in (Status.FAILED, Status.CRASHED)
    assert "MemoryError" in results["t0"].reason or "worker process died" in results["t0"].reason
    assert results["t1"].status is Status.FAILED and "No space left on device" in results["t1"].reason
    assert results["t2"].status is Status.OK


def test_worker_killed_from_outside_is_recorded_and_replaced():
    import os
    import signal
    import threading

    domain = FaultDomain(sleep_s=3.0)
    with LocalExecutor(1, timeout_s=30.0) as ex:
        ex.start(domain_spec(domain))
        stream = ex.evaluate(tasks("sleep", "ok"))
        killer = threading.Timer(1.0, lambda: [os.kill(pid, signal.SIGKILL) for pid in ex.worker_pids()])
        killer.start()
        results = {t.key: e for t, e in stream}
        killer.join()
    assert results["t0"].status is Status.CRASHED and "SIGKILL" in results["t0"].reason
    assert results["t1"].status is Status.OK



_DRIVER = """
import threading, time
from evoforge.execute import EvalTask, LocalExecutor
from evoforge.search.domain import domain_spec
from evoforge.testing.domains import FaultDomain, FaultGenome

if __name__ == "__main__":
    ex = LocalExecutor(1)
    ex.start(domain_spec(FaultDomain(sleep_s=120.0)))
    stream = ex.evaluate([EvalTask("t0", FaultGenome("sleep", 0.5).to_json(), seed=0)])
    threading.Thread(target=lambda: list(stream), daemon=True).start()
    while not ex.worker_pids():
        time.sleep(0.05)
    print(ex.worker_pids()[0], flush=True)
    time.sleep(300)
"""


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads process states from /proc")
def test_a_worker_ends_when_its_driver_is_killed(tmp_path):
    """A killed driver (SIGKILL: no cleanup runs) must not leave its worker computing the
    evaluation it had started, here a 120 s sleep."""
    assert not child_outlives_killed_parent(_DRIVER, tmp_path)


_UNGUARDED = """
import sys
import evoforge
from evoforge.testing.domains import FaultDomain

front = evoforge.optimize(FaultDomain(), workers=2, budget=4, run_dir=sys.argv[1])  # no __main__ guard
print("front", len(front))
"""


def test_a_script_that_starts_a_run_when_imported_gets_the_cause_named(tmp_path):
    import subprocess
    import sys

    from evoforge.api import open_store
    from evoforge.execute.base import UNGUARDED_SCRIPT_HELP

    (tmp_path / "script.py").write_text(_UNGUARDED)
    done = subprocess.run([sys.executable, str(tmp_path / "script.py"), str(tmp_path / "run")], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)
    assert done.returncode != 0 and "front" not in done.stdout
    assert f"a worker died while starting: {UNGUARDED_SCRIPT_HELP}" in done.stderr
    assert "evoforge.optimize was called in a worker process" in done.stderr  # each worker says so in one line
    assert "already holds a run" not in done.stderr and "in use by another" not in done.stderr
    with open_store(tmp_path / "run", readonly=True) as store:  # the driver's run is intact, nothing evaluated
        assert store.evaluations() == {}
