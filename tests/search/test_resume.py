"""Kill the driver with SIGKILL mid-run, resume, and get the uninterrupted run's result."""

import os
import random
import signal
import subprocess
import sys
import time

import pytest

import evoforge
from evoforge.api import open_store
from evoforge.problems import BenchmarkDomain
from evoforge.search.evaluation import Status

DRIVER = """
import sys
import evoforge
from evoforge.testing.domains import FaultDomain
evoforge.optimize(FaultDomain(["ok"] * 6, sleep_s=0.1), algorithm="petra", pop_size=6,
                  budget=60, seed=3, workers=1, run_dir=sys.argv[1])
"""


def reference_run(tmp_path):
    from evoforge.testing.domains import FaultDomain

    front = evoforge.optimize(FaultDomain(["ok"] * 6, sleep_s=0.0), algorithm="petra", pop_size=6,
                              budget=60, seed=3, run_dir=tmp_path / "ref")
    return sorted(m.key for m in front)


def stored_evaluations(run):
    try:
        with open_store(run, readonly=True) as store:
            return len(store.evaluations())
    except Exception:  # noqa: BLE001 - the store may not exist yet
        return 0


@pytest.mark.parametrize("kill_at", [1, *random.Random(2026).sample(range(2, 58), 3)])  # stored evaluations at the kill
def test_resume_after_sigkill_loses_and_repeats_nothing(tmp_path, kill_at):
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, str(run)], start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and stored_evaluations(run) < kill_at:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    with open_store(run, readonly=True) as store:
        before = store.evaluations()
    assert 0 < len(before) < 60, "kill the driver mid-run"
    front = evoforge.resume(run, workers=0)
    with open_store(run, readonly=True) as store:
        after = store.evaluations()
    assert len(after) == 60
    assert {k: after[k] for k in before} == before  # nothing lost or re-evaluated
    assert all(e.status is Status.OK for e in after.values())
    assert sorted(m.key for m in front) == reference_run(tmp_path)


def test_resume_finished_run_with_bigger_budget(tmp_path):
    evoforge.optimize(BenchmarkDomain("zdt1", n_var=4), pop_size=4, budget=12, run_dir=tmp_path)
    evoforge.resume(tmp_path, budget=20)
    with open_store(tmp_path, readonly=True) as store:
        assert len(store.evaluations()) == 20


def test_a_resumes_budget_and_patience_stay_with_the_run(tmp_path):
    from evoforge.api import run_settings

    evoforge.optimize(BenchmarkDomain("zdt1", n_var=4), pop_size=4, budget=12, run_dir=tmp_path)
    evoforge.resume(tmp_path, budget=20, patience=50)
    assert (run_settings(tmp_path).budget, run_settings(tmp_path).patience) == (20, 50)
    evoforge.resume(tmp_path)  # a plain resume keeps them: nothing left to do
    evoforge.resume(tmp_path, budget=28)  # a new budget keeps the earlier patience
    assert (run_settings(tmp_path).budget, run_settings(tmp_path).patience) == (28, 50)
    with open_store(tmp_path, readonly=True) as store:
        assert len(store.evaluations()) == 28
        assert store.config()["termination"]["max_evaluations"] == 12  # the configuration itself is written once


def test_resume_equals_uninterrupted_when_stopped_between_generations(tmp_path):
    from evoforge.search.engine import Search
    from evoforge.search.termination import Termination
    from evoforge.store import SQLiteRunStore

    full = evoforge.optimize(BenchmarkDomain("zdt1", n_var=5), algorithm="nsga2", pop_size=6,
                             budget=36, seed=9)
    store = SQLiteRunStore(tmp_path / "run.db")
    s = Search.create(BenchmarkDomain("zdt1", n_var=5), algorithm="nsga2", algorithm_options={"pop_size": 6},
                      termination=Termination(max_evaluations=36), seed=9, store=store)
    for _ in range(2):  # two generations, then half of the third, then "crash"
        for c in s.ask():
            s.tell(c.key, s.domain.evaluate(c.genome, None))  # type: ignore[arg-type]
        s.advance()
    for c in s.ask()[:3]:
        s.tell(c.key, s.domain.evaluate(c.genome, None))  # type: ignore[arg-type]
    store.close()
    resumed = evoforge.resume(tmp_path)
    assert sorted(m.key for m in resumed) == sorted(m.key for m in full)


def test_a_petra_run_stored_before_preselection_or_exploration_resumes_without_them():
    from evoforge.run import stored_spec
    from evoforge.search.algorithms import ALGORITHMS

    old_options = {"pop_size": 6, "offspring_size": 6, "initial_size": 12, "rate_floor": 0.05}
    assert ALGORITHMS["petra"].from_options(old_options).preselect == 1
    assert ALGORITHMS["petra"].from_options({**old_options, "preselect": 8}).preselect == 8
    config = {"algorithm": {"name": "petra", "options": old_options},
              "run": {"algorithm": "petra", "pop_size": 6, "budget": 20, "seed": 0}}
    assert stored_spec(config, None).preselect == 1
    assert stored_spec({**config, "algorithm": {"name": "petra", "options": {**old_options, "preselect": 4}}}, None).preselect == 4
    assert ALGORITHMS["petra"].from_options({**old_options, "preselect": 8}).explore == 0.0
    assert stored_spec(config, None).explore == 0.0
    explored = {**old_options, "preselect": 8, "explore": 0.25}
    assert stored_spec({**config, "algorithm": {"name": "petra", "options": explored}}, None).explore == 0.25


def test_a_time_budget_stops_a_plain_run_inside_a_generation_and_resume_finishes_it(tmp_path):
    """On a large model one generation can take most of the budget: the run stops where the time
    runs out, not at the generation's end, and resuming with more budget loses nothing."""
    from evoforge.report.text import run_summary
    from evoforge.testing.domains import FaultDomain

    settings = {"algorithm": "petra", "pop_size": 6, "seed": 3}
    evoforge.optimize(FaultDomain(["ok"] * 6), budget=30, run_dir=tmp_path / "full", **settings)
    evoforge.optimize(FaultDomain(["ok"] * 6, sleep_s=0.3), budget="1s", run_dir=tmp_path / "cut", **settings)
    with open_store(tmp_path / "cut", readonly=True) as store:  # the first generation alone (6 evaluations) takes 1.8 s
        assert 0 < len(store.evaluations()) < 6 and store.generations() == []
        assert "time" in store.meta("finished")["reason"] and store.meta("finished")["stopped_in_generation"] == 0
    assert "generation 0 was stopped part-way" in run_summary(tmp_path / "cut")["headline"]
    evoforge.resume(tmp_path / "cut", budget=30)
    with open_store(tmp_path / "cut", readonly=True) as cut, open_store(tmp_path / "full", readonly=True) as full:
        assert list(cut.evaluations()) == list(full.evaluations())
        assert "stopped_in_generation" not in cut.meta("finished")
