"""The generic Python entry points: run a search on any domain, resume it, read its front."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from evoforge.errors import ConfigError, StoreError
from evoforge.execute.base import Executor
from evoforge.front import Front
from evoforge.search.algorithms import ALGORITHMS, Algorithm
from evoforge.search.domain import Domain, domain_from_spec
from evoforge.search.engine import Search, SearchCallback
from evoforge.search.termination import Termination, parse_budget
from evoforge.store.base import RunStore
from evoforge.store.memory import MemoryRunStore
from evoforge.store.sqlite import SQLiteRunStore

RUN_DB = "run.db"


def make_executor(
    workers: int,
    *,
    timeout_s: float | None = None,
    executor: str = "local",
    address: str | None = None,
    resources: Mapping[str, float] | None = None,
) -> Executor:
    """``executor="local"``: ``workers=0`` evaluates in this process, ``workers>=1`` in local
    worker processes. ``executor="ray"``: Ray tasks on a private local Ray (``address=None``) or
    on the cluster at ``address`` (``"auto"``, ``"HOST:PORT"``), at most ``workers`` at once
    (0: as many as the cluster holds), each needing ``resources`` (``num_cpus``, ``num_gpus``,
    ``memory_mb``; default one CPU)."""
    kinds = ("local", "ray")
    if executor not in kinds:
        raise ConfigError(f"unknown executor {executor!r}; valid: {', '.join(kinds)}")
    if workers < 0:
        raise ConfigError(f"workers must be 0 (in-process) or more, got {workers}")
    if executor == "ray":
        from evoforge.execute.ray_executor import RayExecutor

        wanted = dict(resources or {})
        unknown = sorted(set(wanted) - {"num_cpus", "num_gpus", "memory_mb"})
        if unknown:
            raise ConfigError(f"unknown resources {unknown}; valid: num_cpus, num_gpus, memory_mb")
        memory_mb = wanted.get("memory_mb")
        return RayExecutor(
            address,
            workers=workers or None,
            timeout_s=timeout_s,
            num_cpus=float(wanted.get("num_cpus", 1.0)),
            num_gpus=float(wanted.get("num_gpus", 0.0)),
            memory_mb=None if memory_mb is None else int(memory_mb),
        )
    if address is not None or resources:
        raise ConfigError("address and resources apply to the ray executor only; pass executor='ray'")
    from evoforge.execute.inline import InlineExecutor
    from evoforge.execute.local import LocalExecutor

    return InlineExecutor() if workers == 0 else LocalExecutor(workers, timeout_s=timeout_s)


def open_store(run_dir: str | Path, *, readonly: bool = False) -> SQLiteRunStore:
    """The store of the run in ``run_dir``."""
    path = Path(run_dir) / RUN_DB
    if readonly and not path.exists():
        raise ConfigError(f"{run_dir} is not an evoforge run directory (no {RUN_DB}); check the path")
    return SQLiteRunStore(path, readonly=readonly)


def optimize(
    domain: Domain,
    *,
    algorithm: str | Algorithm = "nsga2",
    algorithm_options: dict[str, Any] | None = None,
    budget: str | int | Termination = 200,
    seed: int = 0,
    workers: int = 0,
    timeout_s: float | None = None,
    executor: str = "local",
    address: str | None = None,
    resources: Mapping[str, float] | None = None,
    run_dir: str | Path | None = None,
    callback: SearchCallback | None = None,
) -> Front:
    """Search ``domain`` and return the Pareto front.

    ``budget`` is an evaluation count, a time such as ``"30m"``, or a `Termination`.
    ``executor``, ``address``, ``workers``, ``timeout_s`` and ``resources`` choose where
    evaluations run (see `make_executor`). With a ``run_dir`` everything is stored in
    ``run_dir/run.db`` (resumable with `resume`); without one the run lives in memory.
    """
    if isinstance(algorithm, str):
        ALGORITHMS[algorithm]  # an unknown name fails here, before any baseline is trained
    termination = budget if isinstance(budget, Termination) else parse_budget(budget)
    runner = make_executor(workers, timeout_s=timeout_s, executor=executor, address=address, resources=resources)
    store: RunStore
    if run_dir is not None:
        if (Path(run_dir) / RUN_DB).exists():
            with open_store(run_dir) as existing:
                if existing.config() is not None:
                    raise StoreError(
                        f"{run_dir} already holds a run; resume it with `evoforge resume {run_dir}` or choose a new directory"
                    )
        domain.prepare(Path(run_dir))  # fails early (bad model, data) before any store is written
        store = open_store(run_dir)
    else:
        domain.prepare(None)
        store = MemoryRunStore()
    try:
        store.put_meta(
            "executor",
            {
                "workers": workers,
                "timeout_s": timeout_s,
                "executor": executor,
                "address": address,
                "resources": dict(resources) if resources else None,
            },
        )
        search = Search.create(
            domain,
            algorithm=algorithm,
            algorithm_options=algorithm_options,
            termination=termination,
            seed=seed,
            store=store,
            run_dir=run_dir,
        )
        return _run_and_finalize(search, runner, callback, run_dir)
    finally:
        store.close()


def _run_and_finalize(search: Search, runner: Executor, callback: SearchCallback | None, run_dir: str | Path | None) -> Front:
    """Run the search to its end, then record the domain's held-out numbers for the front members
    (skipped without a run dir)."""
    with runner:
        front = search.run(runner, callback=callback)
    if run_dir is None or not len(front):
        return front
    final = dict(search.store.meta("final", {}) or {})
    todo = [(m.key, m.evaluation) for m in front if m.key not in final]
    if todo:
        final.update(search.domain.finalize(todo, Path(run_dir)))
        search.store.put_meta("final", final)
    return front


def resume(
    run_dir: str | Path,
    *,
    workers: int | None = None,
    timeout_s: float | None = None,
    executor: str | None = None,
    address: str | None = None,
    budget: str | int | Termination | None = None,
    callback: SearchCallback | None = None,
) -> Front:
    """Continue the run in ``run_dir`` where it stopped (finished evaluations are reused).
    ``workers``, ``timeout_s``, ``executor`` and ``address`` default to the run's own (the
    stored address and resources only while the executor kind stays the same); ``budget``
    replaces its budget."""
    store = open_store(run_dir)
    try:
        if store.config() is None:
            raise ConfigError(f"{run_dir} holds no run to resume; start one first")
        stored = store.meta("executor", {}) or {}
        stored_kind = stored.get("executor", "local")
        kind = executor or stored_kind
        same_kind = kind == stored_kind
        runner = make_executor(
            stored.get("workers", 0) if workers is None else workers,
            timeout_s=stored.get("timeout_s") if timeout_s is None else timeout_s,
            executor=kind,
            address=address if address is not None else stored.get("address") if same_kind else None,
            resources=stored.get("resources") if same_kind else None,
        )
        termination = None if budget is None else budget if isinstance(budget, Termination) else parse_budget(budget)
        search = Search.resume(store, run_dir=run_dir, termination=termination)
        search.domain.prepare(Path(run_dir))
        return _run_and_finalize(search, runner, callback, run_dir)
    finally:
        store.close()


def export_member(run_dir: str | Path, member_id: int, out_dir: str | Path) -> dict[str, Any]:
    """Write front member ``member_id`` of the run as a deployable artifact into ``out_dir`` and
    verify it (the domain reloads it and recomputes its held-out numbers)."""
    with open_store(run_dir, readonly=True) as store:
        config = store.config()
        if config is None:
            raise ConfigError(f"{run_dir} holds no run yet")
        domain = domain_from_spec(config["domain"])
        member = Front.from_store(store, domain.objectives).by_id(member_id)
    return domain.export_member(member.key, member.genome, member.evaluation, Path(run_dir), Path(out_dir))


def load_front(run_dir: str | Path) -> Front:
    """The current front of a run, read-only (safe while the run is going on)."""
    with open_store(run_dir, readonly=True) as store:
        config = store.config()
        if config is None:
            raise ConfigError(f"{run_dir} holds no run yet")
        domain = domain_from_spec(config["domain"])
        return Front.from_store(store, domain.objectives)
