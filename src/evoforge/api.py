"""The generic Python entry points: run a search on any domain, resume it, read its front."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from evoforge.errors import ConfigError, StoreError
from evoforge.execute.base import Executor
from evoforge.front import Front
from evoforge.search.algorithms import Algorithm
from evoforge.search.domain import Domain, domain_from_spec
from evoforge.search.engine import Search, SearchCallback
from evoforge.search.termination import Termination, parse_budget
from evoforge.store.base import RunStore
from evoforge.store.memory import MemoryRunStore
from evoforge.store.sqlite import SQLiteRunStore

RUN_DB = "run.db"


def make_executor(workers: int, *, timeout_s: float | None = None) -> Executor:
    """``workers=0``: evaluate in this process; ``workers>=1``: local worker processes."""
    from evoforge.execute.inline import InlineExecutor
    from evoforge.execute.local import LocalExecutor

    if workers < 0:
        raise ConfigError(f"workers must be 0 (in-process) or more, got {workers}")
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
    run_dir: str | Path | None = None,
    callback: SearchCallback | None = None,
) -> Front:
    """Search ``domain`` and return the Pareto front.

    ``budget`` is an evaluation count, a time such as ``"30m"``, or a `Termination`. With a
    ``run_dir`` everything is stored in ``run_dir/run.db`` (resumable with `resume`); without one
    the run lives in memory.
    """
    termination = budget if isinstance(budget, Termination) else parse_budget(budget)
    executor = make_executor(workers, timeout_s=timeout_s)
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
        store.put_meta("executor", {"workers": workers, "timeout_s": timeout_s})
        search = Search.create(
            domain,
            algorithm=algorithm,
            algorithm_options=algorithm_options,
            termination=termination,
            seed=seed,
            store=store,
            run_dir=run_dir,
        )
        with executor:
            front = search.run(executor, callback=callback)
        _finalize(search, front, run_dir)
        return front
    finally:
        store.close()


def _finalize(search: Search, front: Front, run_dir: str | Path | None) -> None:
    """Record the domain's held-out numbers for the front members (skipped without a run dir)."""
    if run_dir is None or not len(front):
        return
    final = dict(search.store.meta("final", {}) or {})
    todo = [(m.key, m.evaluation) for m in front if m.key not in final]
    if todo:
        final.update(search.domain.finalize(todo, Path(run_dir)))
        search.store.put_meta("final", final)


def resume(
    run_dir: str | Path,
    *,
    workers: int | None = None,
    timeout_s: float | None = None,
    budget: str | int | Termination | None = None,
    callback: SearchCallback | None = None,
) -> Front:
    """Continue the run in ``run_dir`` where it stopped (finished evaluations are reused).
    ``workers`` and ``timeout_s`` default to the run's own; ``budget`` replaces its budget."""
    store = open_store(run_dir)
    try:
        if store.config() is None:
            raise ConfigError(f"{run_dir} holds no run to resume; start one first")
        stored = store.meta("executor", {}) or {}
        executor = make_executor(
            stored.get("workers", 0) if workers is None else workers,
            timeout_s=stored.get("timeout_s") if timeout_s is None else timeout_s,
        )
        termination = None if budget is None else budget if isinstance(budget, Termination) else parse_budget(budget)
        search = Search.resume(store, run_dir=run_dir, termination=termination)
        search.domain.prepare(Path(run_dir))
        with executor:
            front = search.run(executor, callback=callback)
        _finalize(search, front, run_dir)
        return front
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
