"""The Ray executor on a local Ray instance started by this module (and, marked slow, on a
cluster started with `ray start` and reached by its address)."""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from evoforge.errors import ConfigError, EvaluationError
from evoforge.execute import EvalTask
from evoforge.machine import MACHINE_METRIC, machine_name
from evoforge.search.domain import domain_spec, register_domain
from evoforge.search.engine import Search
from evoforge.search.evaluation import Status
from evoforge.search.termination import Termination
from evoforge.testing.domains import FaultDomain, FaultGenome

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
ray = pytest.importorskip("ray", reason="the ray executor needs Ray (pip install evoforge[ray])")

from evoforge.execute.ray_executor import RayExecutor  # noqa: E402
from evoforge.problems import BenchmarkDomain  # noqa: E402

HERE = Path(__file__).resolve().parent


@register_domain
class CountingFaultDomain(FaultDomain):
    """A FaultDomain that appends the task's behaviour to ``counter_file`` before evaluating,
    so a test can count how often each task ran (crashed ones included)."""

    name = "test-ray-counting-faults"

    def __init__(self, counter_file: str, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.counter_file = counter_file

    def config(self):
        return {**super().config(), "counter_file": self.counter_file}

    def evaluate(self, genome, context):
        with open(self.counter_file, "a") as f:
            f.write(f"{genome.behaviour}:{genome.x}\n")
        return super().evaluate(genome, context)


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray instance for the module; executors with address=None reuse it."""
    temp = tempfile.mkdtemp(prefix="evt", dir="/tmp" if os.path.isdir("/tmp") else None)
    pythonpath = os.pathsep.join([str(HERE.parents[1]), str(HERE), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    ray.init(
        num_cpus=2, include_dashboard=False, _temp_dir=temp, logging_level="WARNING",
        runtime_env={"env_vars": {"PYTHONPATH": pythonpath}},  # workers import this module's domain
    )
    yield
    ray.shutdown()
    shutil.rmtree(temp, ignore_errors=True)


@register_domain
class DriverElsewhereDomain(BenchmarkDomain):
    """A timed domain whose driver is another machine than the Ray nodes: its cache identity names
    ``driver-box``, its evaluations the node's machine (as compress's do on a cluster)."""

    name = "test-ray-driver-elsewhere"

    def __init__(self) -> None:
        super().__init__("zdt1", n_var=4)

    def config(self):
        return {}

    def cache_identity(self):
        return {**super().cache_identity(), MACHINE_METRIC: "driver-box"}

    def evaluate(self, genome, context):
        evaluation = super().evaluate(genome, context)
        return dataclasses.replace(evaluation, metrics={**evaluation.metrics, MACHINE_METRIC: machine_name()})


def tasks(*behaviours):
    return [EvalTask(f"t{i}", FaultGenome(b, 0.25 + i / 100).to_json(), seed=i) for i, b in enumerate(behaviours)]


def test_every_fault_is_recorded_and_crashes_are_retried_once(local_ray, tmp_path):
    counter = tmp_path / "runs.txt"
    domain = CountingFaultDomain(str(counter))
    with RayExecutor(timeout_s=4.0) as ex:
        ex.start(domain_spec(domain))
        list(ex.evaluate(tasks("ok", "ok")))  # warm the workers: their start-up is not part of the timeout anyway
        counter.write_text("")
        start = time.monotonic()
        results = {t.key: e for t, e in ex.evaluate(tasks("ok", "raise", "nan", "segfault", "abort", "exit", "hang", "ok"))}
        elapsed = time.monotonic() - start
        assert ray.is_initialized()
    assert ray.is_initialized()  # the executor did not start this Ray, so it leaves it running
    status = {k: e.status for k, e in results.items()}
    assert status == {
        "t0": Status.OK, "t1": Status.FAILED, "t2": Status.OK, "t3": Status.CRASHED,
        "t4": Status.CRASHED, "t5": Status.CRASHED, "t6": Status.TIMEOUT, "t7": Status.OK,
    }
    assert "injected failure" in results["t1"].reason
    assert results["t2"].objectives["f1"] != results["t2"].objectives["f1"]  # NaN passed on; the engine fails it
    for key in ("t3", "t4", "t5"):
        assert "worker died (2 times)" in results[key].reason
    assert "timeout" in results["t6"].reason and results["t6"].duration_s >= 4.0
    assert elapsed < 60
    runs = counter.read_text().split()
    behaviours = [r.split(":")[0] for r in runs]
    assert {b: behaviours.count(b) for b in set(behaviours)} == {
        "ok": 2, "raise": 1, "nan": 1, "segfault": 2, "abort": 2, "exit": 2, "hang": 1,
    }


def test_no_retry_when_crash_retries_is_zero(local_ray, tmp_path):
    counter = tmp_path / "runs.txt"
    with RayExecutor(crash_retries=0) as ex:
        ex.start(domain_spec(CountingFaultDomain(str(counter))))
        [(_, result)] = list(ex.evaluate(tasks("exit")))
    assert result.status is Status.CRASHED and "no retries" in result.reason
    assert counter.read_text().split() == ["exit:0.25"]


def test_stop_starts_nothing_more_and_the_running_tasks_finish(local_ray, tmp_path):
    counter = tmp_path / "runs.txt"
    done: list[str] = []
    with RayExecutor() as ex:
        ex.start(domain_spec(CountingFaultDomain(str(counter), sleep_s=0.2)))
        assert list(ex.evaluate(tasks("ok", "ok"), stop=lambda: True)) == [] and not counter.exists()
        for task, result in ex.evaluate(tasks(*["ok"] * 8), stop=lambda: bool(done)):
            done.append(task.key)
            assert result.ok
    assert 1 <= len(done) < 8 and len(counter.read_text().split()) == len(done)  # every started task was yielded


def test_wanted_tasks_are_run_after_the_first_result(local_ray, tmp_path):
    plan = tasks("ok", "ok")
    order: list[str] = []
    with RayExecutor() as ex:
        ex.start(domain_spec(CountingFaultDomain(str(tmp_path / "runs.txt"))))
        for task, result in ex.evaluate(plan[:1], wanted=lambda: [t for t in plan if t.key not in order]):
            order.append(task.key)
            assert result.ok
    assert order == ["t0", "t1"]


def test_same_front_as_the_local_executor(local_ray, tmp_path):
    import evoforge
    from evoforge.api import open_store, run_settings

    kwargs = {"pop_size": 6, "budget": 18, "seed": 3}
    with_ray = evoforge.optimize(BenchmarkDomain("zdt1", n_var=5), executor="ray", run_dir=tmp_path / "r", **kwargs)
    local = evoforge.optimize(BenchmarkDomain("zdt1", n_var=5), workers=1, **kwargs)
    assert sorted(m.key for m in with_ray) == sorted(m.key for m in local)
    stored = run_settings(tmp_path / "r")
    assert stored.executor == "ray" and stored.address is None
    resumed = evoforge.resume(tmp_path / "r", budget=24)  # reuses the stored executor kind
    with open_store(tmp_path / "r", readonly=True) as store:
        assert len(store.evaluations()) == 24
    assert len(resumed) >= 1


def test_the_cache_is_looked_up_under_the_nodes_machines(local_ray, tmp_path):
    from evoforge.search.eval_cache import HIT_METRIC, EvaluationCache

    cache = EvaluationCache(tmp_path / "cache")
    hits = []
    for _ in range(2):
        search = Search.create(DriverElsewhereDomain(), algorithm="random", termination=Termination(max_evaluations=6), seed=1)
        with RayExecutor() as ex:
            search.run(ex, cache=cache)
            assert ex.timing_machines() == [machine_name()]  # this host's, asked of its one node
        hits.append([e.metrics.get(HIT_METRIC, False) for e in search.store.evaluations().values()])
    assert not any(hits[0]) and len(hits[1]) == 6 and all(hits[1])  # filed under the node, found there


class _FakeCluster:
    """Stands in for the `ray` module where `RayExecutor.timing_machines` asks the nodes: each
    node answers with its machine name, or (None) never; `asked` lists the nodes probed."""

    def __init__(self, machines: dict[str, str | None]) -> None:
        self.machines = machines
        self.dead: set[str] = set()
        self.asked: list[str] = []
        self.cancelled: list[str] = []

    def nodes(self):
        return [{"NodeID": node, "Alive": node not in self.dead, "Resources": {"CPU": 2.0}} for node in self.machines]

    def remote(self, function):
        return self

    def options(self, *, num_cpus, scheduling_strategy):
        return _PinnedProbe(self, scheduling_strategy.node_id)

    def wait(self, refs, *, num_returns, timeout):
        return [r for r in refs if self.machines[r] is not None], [r for r in refs if self.machines[r] is None]

    def get(self, ref):
        return self.machines[ref]

    def cancel(self, ref):
        self.cancelled.append(ref)


@dataclasses.dataclass
class _PinnedProbe:
    cluster: _FakeCluster
    node: str

    def remote(self):
        self.cluster.asked.append(self.node)
        return self.node


def test_each_node_is_asked_its_machine_once_and_nodes_that_join_later_are_asked_too():
    a, b, c, d = ("a" * 56, "b" * 56, "c" * 56, "d" * 56)
    cluster = _FakeCluster({a: "xeon", b: None})  # b never answers
    executor = RayExecutor(address="auto")
    executor._ray, executor._remote = cluster, object()  # as after `start`
    assert executor.timing_machines() == ["xeon"] and cluster.cancelled == [b]  # b's machine stays unknown
    cluster.machines.update({c: "epyc", d: "epyc"})  # two nodes of another machine join
    assert executor.timing_machines() == ["epyc", "xeon"]  # the most common first
    assert sorted(cluster.asked) == [a, b, c, d]  # every node asked once, b too
    cluster.dead.update({c, d})
    assert executor.timing_machines() == ["xeon"]
    cluster.dead.add(a)
    assert executor.timing_machines() is None  # no node that answered is alive


def test_search_with_faults_finishes(local_ray):
    domain = FaultDomain(["ok", "raise", "segfault", "ok", "nan", "ok"])
    s = Search.create(domain, algorithm_options={"pop_size": 6}, termination=Termination(max_evaluations=10))
    with RayExecutor(timeout_s=10.0) as ex:
        front = s.run(ex)
    summary = s.summary()
    assert summary is not None and summary.evaluations == 10
    assert summary.failures["crashed"] >= 1 and summary.failures["failed"] >= 2
    assert len(front) >= 1 and all(m.evaluation.ok for m in front)


def test_worker_setup_failure_is_a_clear_error(local_ray):
    ex = RayExecutor()
    ex.start({"name": "faults", "module": "evoforge.testing.domains", "config": {"behaviours": ["bogus"]}})
    with pytest.raises(EvaluationError, match="could not set up the domain.*bogus"):
        list(ex.evaluate(tasks("ok")))
    ex.close()


def test_configuration_errors(local_ray, monkeypatch):
    from evoforge.execute import ray_executor
    from evoforge.run import RunSpec

    with pytest.raises(ConfigError, match="valid: local, ray"):
        RunSpec(workers=1, executor="dask")
    with pytest.raises(ConfigError, match="ray executor only"):
        RunSpec(workers=1, address="auto")
    with pytest.raises(ConfigError, match="unknown resources"):
        RunSpec(workers=1, executor="ray", resources={"gpus": 1})
    with pytest.raises(ConfigError, match="no Ray node has the resources"):
        RayExecutor(num_gpus=64).start(domain_spec(FaultDomain()))
    with pytest.raises(ConfigError, match="workers"):
        RayExecutor(workers=0)
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ImportError, match=r"pip install evoforge\[ray\]"):
        ray_executor._import_ray(private=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cluster_pids(session: int, path: str) -> list[int]:
    """Processes of the cluster this test started: in the session of its `ray start` (started
    with a new session), or holding its private temp dir in their command line or open files."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            stat = (entry / "stat").read_text()
            sid = int(stat.rsplit(")", 1)[1].split()[3])
            mine = sid == session or path.encode() in (entry / "cmdline").read_bytes()
            if not mine:
                mine = any(path in os.readlink(fd) for fd in (entry / "fd").iterdir())
        except OSError:
            continue
        if mine:
            pids.append(int(entry.name))
    return pids


CLIENT = textwrap.dedent(
    """
    import sys
    import ray
    from evoforge.execute import EvalTask
    from evoforge.execute.ray_executor import RayExecutor
    from evoforge.search.domain import domain_spec
    from evoforge.testing.domains import FaultDomain, FaultGenome

    for round in range(2):  # the second round works only if closing the first left the cluster up
        with RayExecutor(sys.argv[1], timeout_s=30) as ex:
            ex.start(domain_spec(FaultDomain()))
            tasks = [EvalTask(f"t{i}", FaultGenome(b, 0.5).to_json(), seed=i) for i, b in enumerate(["ok", "raise", "ok"])]
            print(round, sorted((t.key, e.status.value) for t, e in ex.evaluate(tasks)))
        print("connected after close:", ray.is_initialized())
    """
)


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the cluster's processes through /proc")
def test_connects_to_a_running_cluster_by_address():
    temp = tempfile.mkdtemp(prefix="evc", dir="/tmp" if os.path.isdir("/tmp") else None)
    port = _free_port()
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    ray_cli = Path(sys.executable).with_name("ray")
    head = subprocess.Popen(
        [str(ray_cli), "start", "--head", f"--port={port}", "--num-cpus=2", "--include-dashboard=false",
         f"--temp-dir={temp}", "--disable-usage-stats"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    try:
        log, _ = head.communicate(timeout=90)
        assert head.returncode == 0, log[-3000:]
        out = subprocess.run(
            [sys.executable, "-c", CLIENT, f"127.0.0.1:{port}"], env=env, capture_output=True, text=True, timeout=120
        )
        assert out.returncode == 0, out.stderr[-3000:]
        lines = out.stdout.strip().splitlines()
        expected = "[('t0', 'ok'), ('t1', 'failed'), ('t2', 'ok')]"
        assert lines == [f"0 {expected}", "connected after close: False", f"1 {expected}", "connected after close: False"]
    finally:
        if head.poll() is None:
            head.kill()
        pids = _cluster_pids(head.pid, temp)  # only the processes of the cluster this test started; never `ray stop`
        for pid in pids:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in pids):
            time.sleep(0.2)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(temp, ignore_errors=True)
