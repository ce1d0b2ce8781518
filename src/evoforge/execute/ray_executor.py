"""Evaluate as Ray tasks: on a private local Ray instance or on an existing Ray cluster.

Each evaluation is one Ray task with declared resources (CPUs, GPUs, memory). A task first
reports that its worker has built the domain, then returns its `Evaluation` as JSON, so the
per-evaluation timeout counts from the start of the evaluation itself, not from queueing or
worker set-up. A timed-out task is cancelled with ``force=True`` (its worker is killed) and
recorded as TIMEOUT. A task whose worker or node dies is run once more; if it dies again it is
recorded as CRASHED. An exception inside the evaluation is FAILED and never retried.

Ray is imported only here, when a `RayExecutor` is created.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from evoforge.errors import ConfigError, EvaluationError
from evoforge.execute.base import EvalTask, Executor, run_task
from evoforge.execute.local import available_cores
from evoforge.search.domain import Domain
from evoforge.search.evaluation import Evaluation, Status

_STARTED, _RETRY = "started", "retry"

_WORKER_DOMAINS: dict[str, Domain] = {}
"""Domains built in this Ray worker process, keyed by their spec JSON."""

PROBE_TIMEOUT_S = 60.0
"""How long `RayExecutor.timing_machines` waits for newly found nodes to say which machine they are."""

_CRASH_ERRORS = (
    "WorkerCrashedError",
    "NodeDiedError",
    "LocalRayletDiedError",
    "ObjectLostError",
    "OwnerDiedError",
    "ObjectReconstructionFailedError",
    "ObjectFetchTimedOutError",
    "OutOfMemoryError",
)


def _import_ray(private: bool) -> Any:
    """Import ray, quietly and offline; a private instance also runs without token auth."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if private:
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    try:
        import ray
    except ImportError as exc:
        raise ImportError("the ray executor needs Ray: pip install evoforge[ray]") from exc
    return ray


def _ray_task(spec_json: str, task: EvalTask, threads: int) -> Iterator[tuple[str, str]]:
    """Runs in a Ray worker: yields ("started", "") once the domain is ready, then ("result",
    evaluation JSON); or ("setup_failed", reason) when the domain cannot be built."""
    os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")
    domain = _WORKER_DOMAINS.get(spec_json)
    if domain is None:
        from evoforge.search.domain import domain_from_spec

        try:
            domain = domain_from_spec(json.loads(spec_json))
            domain.setup_worker()
        except Exception as exc:  # noqa: BLE001 - reported to the driver
            yield "setup_failed", f"{type(exc).__name__}: {exc}"
            return
        _WORKER_DOMAINS[spec_json] = domain
    torch = sys.modules.get("torch")
    if torch is not None:  # a reused worker keeps the thread count of its first task
        torch.set_num_threads(threads)
    yield "started", ""
    yield "result", run_task(domain, task, threads).to_json()


def _node_machine() -> str:
    """Runs on a Ray node: the machine name its evaluations record."""
    from evoforge.machine import machine_name

    return machine_name()


@dataclasses.dataclass
class _Attempt:
    task: EvalTask
    number: int
    generator: Any
    submitted: float
    started: float | None = None


class RayExecutor(Executor):
    """Run each evaluation as a Ray task needing ``num_cpus`` CPUs, ``num_gpus`` GPUs and
    ``memory_mb`` MiB of memory (Ray resources; the evaluation gets ``max(1, int(num_cpus))``
    torch threads).

    ``address=None`` uses the Ray already initialized in this process, or else starts a private
    local instance (all available cores, no dashboard, a private temporary directory) that
    `close` shuts down. ``address="auto"`` or ``"HOST:PORT"`` connects to a running cluster,
    which `close` leaves running. ``workers`` caps the evaluations in flight (None: as many as the
    cluster's resources hold). ``timeout_s`` bounds each evaluation from its start (None: no
    limit); ``setup_timeout_s`` bounds waiting for resources plus building the domain on a
    worker. ``crash_retries`` is how often a task whose worker or node died is run again.
    ``runtime_env`` is passed to `ray.init` when this executor connects or starts Ray.
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        workers: int | None = None,
        num_cpus: float = 1.0,
        num_gpus: float = 0.0,
        memory_mb: int | None = None,
        timeout_s: float | None = None,
        setup_timeout_s: float = 600.0,
        crash_retries: int = 1,
        runtime_env: dict[str, Any] | None = None,
    ) -> None:
        if workers is not None and workers < 1:
            raise ConfigError(f"workers must be at least 1 (or None: as many as the cluster holds), got {workers}")
        if num_cpus <= 0 and num_gpus <= 0:
            raise ConfigError(f"an evaluation needs some CPUs or GPUs, got num_cpus={num_cpus}, num_gpus={num_gpus}")
        if num_cpus < 0 or num_gpus < 0 or (memory_mb is not None and memory_mb <= 0):
            raise ConfigError(f"resources must be positive, got num_cpus={num_cpus}, num_gpus={num_gpus}, memory_mb={memory_mb}")
        if timeout_s is not None and timeout_s <= 0:
            raise ConfigError(f"timeout_s must be positive, got {timeout_s}")
        if crash_retries < 0:
            raise ConfigError(f"crash_retries must be 0 or more, got {crash_retries}")
        self.address = address
        self.workers = workers
        self.num_cpus = num_cpus
        self.num_gpus = num_gpus
        self.memory_mb = memory_mb
        self.timeout_s = timeout_s
        self.setup_timeout_s = setup_timeout_s
        self.crash_retries = crash_retries
        self.runtime_env = runtime_env
        self._ray = _import_ray(private=address is None)
        self._connected = False  # this executor called ray.init (and must call ray.shutdown)
        self._temp_dir: str | None = None
        self._remote: Any = None
        self._spec_json: str | None = None
        self._node_machines: dict[str, str | None] = {}  # node id -> machine name, for `timing_machines`

    @property
    def threads_per_evaluation(self) -> int:
        return max(1, int(self.num_cpus))

    def start(self, domain_spec: dict[str, Any]) -> None:
        ray = self._ray
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"runtime_env": self.runtime_env, "logging_level": "WARNING"}
            if self.address is None:
                self._temp_dir = tempfile.mkdtemp(prefix="evoray", dir=tempfile.gettempdir())
                kwargs.update(num_cpus=available_cores(), include_dashboard=False, _temp_dir=self._temp_dir)
            else:
                kwargs["address"] = self.address
            try:
                ray.init(**kwargs)
            except Exception:
                self._remove_temp_dir()
                raise
            self._connected = True
        self._check_feasible()
        self._node_machines = {}
        options: dict[str, Any] = {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus, "max_retries": 0}
        if self.memory_mb is not None:
            options["memory"] = self.memory_mb * 1024 * 1024
        self._remote = ray.remote(_ray_task).options(**options)
        self._spec_json = json.dumps(domain_spec, sort_keys=True)

    def _resources_per_evaluation(self) -> dict[str, float]:
        return {"CPU": self.num_cpus, "GPU": self.num_gpus, "memory": (self.memory_mb or 0) * 1024 * 1024}

    def _fits(self, resources: dict[str, float]) -> bool:
        """True when a node with ``resources`` can hold one evaluation."""
        return all(resources.get(k, 0.0) >= v for k, v in self._resources_per_evaluation().items() if v > 0)

    def _alive_nodes(self) -> list[dict[str, Any]]:
        """Ray's records of the cluster's alive nodes."""
        return [node for node in self._ray.nodes() if node.get("Alive")]

    def _check_feasible(self) -> None:
        """Refuse resources no node has (Ray would queue such tasks forever)."""
        nodes = [node.get("Resources", {}) for node in self._alive_nodes()]
        if not any(self._fits(res) for res in nodes):
            asked = self._resources_per_evaluation()
            have = [{k: res.get(k, 0.0) for k in asked} for res in nodes]
            raise ConfigError(f"no Ray node has the resources one evaluation asks for ({asked}); nodes have {have}")

    def _probe(self, node_ids: list[str]) -> dict[str, str | None]:
        """Each node's machine name, from one task pinned to it; None for a node that does not
        answer within `PROBE_TIMEOUT_S` (too busy, or gone)."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        probe = self._ray.remote(_node_machine)
        refs = {probe.options(num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False)).remote(): node_id
                for node_id in node_ids}
        done, pending = self._ray.wait(list(refs), num_returns=len(refs), timeout=PROBE_TIMEOUT_S)
        answers: dict[str, str | None] = dict.fromkeys(node_ids)
        for ref in done:
            try:
                answers[refs[ref]] = self._ray.get(ref)
            except Exception:  # noqa: BLE001 - the node died while answering: its machine stays unknown
                pass
        for ref in pending:
            self._ray.cancel(ref)
        return answers

    def timing_machines(self) -> list[str] | None:
        """The machines of the alive nodes that can hold an evaluation, the most common first, or
        None when no node has answered. Each node is asked once per `start`, on the first call
        that finds it, so a node that joins the cluster during a run is asked on the next call."""
        if self._remote is None:
            raise ConfigError("RayExecutor.timing_machines called before start")
        nodes = [node["NodeID"] for node in self._alive_nodes() if self._fits(node.get("Resources", {}))]
        unasked = [node_id for node_id in nodes if node_id not in self._node_machines]
        if unasked:
            self._node_machines.update(self._probe(unasked))
        names = [name for name in (self._node_machines[node_id] for node_id in nodes) if name is not None]
        return [name for name, _ in collections.Counter(names).most_common()] or None

    def _capacity(self) -> int:
        """How many evaluations fit on the cluster at once (capped by ``workers``)."""
        total = self._ray.cluster_resources()
        fits = []
        if self.num_cpus > 0:
            fits.append(int(total.get("CPU", 0.0) // self.num_cpus))
        if self.num_gpus > 0:
            fits.append(int(total.get("GPU", 0.0) // self.num_gpus))
        capacity = max(1, min(fits))
        return min(capacity, self.workers) if self.workers else capacity

    def evaluate(
        self, tasks: Sequence[EvalTask], stop: Callable[[], bool] | None = None, wanted: Callable[[], Sequence[EvalTask]] | None = None
    ) -> Iterator[tuple[EvalTask, Evaluation]]:
        if self._remote is None:
            raise ConfigError("RayExecutor.evaluate called before start")
        ray = self._ray
        capacity = self._capacity()
        queue: collections.deque[tuple[EvalTask, int]] = collections.deque((t, 1) for t in tasks)
        running: dict[Any, _Attempt] = {}
        try:
            while queue or running:
                if queue and len(running) < capacity and stop is not None and stop():
                    queue.clear()  # start nothing more; the running tasks finish
                    continue
                while queue and len(running) < capacity:
                    task, number = queue.popleft()
                    gen = self._remote.remote(self._spec_json, task, self.threads_per_evaluation)
                    running[gen] = _Attempt(task, number, gen, time.monotonic())
                wait_s = max(0.0, min(self._deadline(a) for a in running.values()) - time.monotonic())
                ready, _ = ray.wait(list(running), num_returns=1, timeout=min(wait_s, 3600.0))
                now = time.monotonic()
                for gen in ready:
                    attempt = running[gen]
                    result = self._receive(attempt, now)
                    if result == _STARTED:
                        continue  # the evaluation has begun; wait for its result
                    del running[gen]
                    if result == _RETRY:  # the worker died: run the task again
                        queue.appendleft((attempt.task, attempt.number + 1))
                        continue
                    assert isinstance(result, Evaluation)
                    yield attempt.task, result
                    if wanted is not None:
                        queue = self._requeue(wanted(), queue, running)
                for gen, attempt in list(running.items()):
                    if now < self._deadline(attempt):
                        continue
                    ray.cancel(gen, force=True)
                    del running[gen]
                    if attempt.started is None:
                        raise EvaluationError(
                            f"a Ray task was not running within {self.setup_timeout_s:.0f} s (waiting for cluster "
                            "resources, or building the domain on the worker)"
                        )
                    yield attempt.task, Evaluation.failure(
                        Status.TIMEOUT, f"evaluation exceeded its {self.timeout_s:g} s timeout", now - attempt.started
                    )
                    if wanted is not None:
                        queue = self._requeue(wanted(), queue, running)
        finally:
            for gen in running:
                ray.cancel(gen, force=True)

    @staticmethod
    def _requeue(
        wanted: Sequence[EvalTask], queue: collections.deque[tuple[EvalTask, int]], running: dict[Any, _Attempt]
    ) -> collections.deque[tuple[EvalTask, int]]:
        """The queue for the caller's ``wanted`` tasks: the running ones left out, a queued retry
        keeping its attempt number."""
        numbers = dict(queue)
        started = {a.task for a in running.values()}
        return collections.deque((t, numbers.get(t, 1)) for t in wanted if t not in started)

    def _deadline(self, attempt: _Attempt) -> float:
        if attempt.started is None:
            return attempt.submitted + self.setup_timeout_s
        return attempt.started + self.timeout_s if self.timeout_s else float("inf")

    def _receive(self, attempt: _Attempt, now: float) -> Evaluation | str:
        """Consume the task's next message: `_STARTED` when its evaluation began, `_RETRY` when
        its worker died and it may run again, else its final evaluation."""
        ray = self._ray
        try:
            kind, payload = ray.get(next(attempt.generator))
        except StopIteration:
            kind, payload = "crash", "the task ended without a result"
        except ray.exceptions.RayError as exc:
            kind, payload = self._classify(exc)
        if kind == "started":
            attempt.started = now
            return _STARTED
        if kind == "result":
            return Evaluation.from_json(payload)
        if kind == "setup_failed":
            raise EvaluationError(f"a Ray worker could not set up the domain: {payload}")
        elapsed = now - (attempt.started or attempt.submitted)
        if kind == "failed":
            return Evaluation.failure(Status.FAILED, payload, elapsed)
        if attempt.number <= self.crash_retries:
            return _RETRY
        runs = f"{attempt.number} times" if attempt.number > 1 else "once, no retries allowed"
        return Evaluation.failure(Status.CRASHED, f"Ray worker died ({runs}): {payload}", elapsed)

    def _classify(self, exc: Exception) -> tuple[str, str]:
        """("crash", reason) for a lost worker or node, ("failed", reason) for anything else."""
        ray = self._ray
        cause: BaseException = exc
        if isinstance(exc, ray.exceptions.RayTaskError) and exc.cause is not None:
            cause = exc.cause
        if isinstance(cause, ray.exceptions.RuntimeEnvSetupError):
            raise EvaluationError(f"Ray could not set up the runtime environment: {cause}") from exc
        name = type(cause).__name__
        last_line = (str(cause).strip().splitlines() or [""])[-1][:500]
        kind = "crash" if any(c.__name__ in _CRASH_ERRORS for c in type(cause).__mro__) else "failed"
        return kind, f"{name}: {last_line}".strip()

    def close(self) -> None:
        """Disconnect from Ray when this executor connected; a private instance is shut down."""
        if self._connected:
            self._ray.shutdown()
            self._connected = False
        self._remote = None
        self._remove_temp_dir()

    def _remove_temp_dir(self) -> None:
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            self._temp_dir = None
