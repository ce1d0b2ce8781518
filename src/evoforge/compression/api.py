"""`evoforge.compress`: evolve compression pipelines for a PyTorch model (PETRA)."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from evoforge.config import check_keys, load_config_file
from evoforge.errors import ConfigError
from evoforge.front import Front
from evoforge.search.engine import SearchCallback
from evoforge.search.termination import Termination, parse_budget

CONFIG_SECTIONS = ("task", "search", "objectives", "constraints", "run")
SEARCH_KEYS = ("algorithm", "budget", "workers", "pop_size", "offspring_size", "seed", "timeout", "executor", "address")
CONSTRAINT_KEYS = ("max_quality_drop", "relative")


def resolve_task(task: Any) -> Any:
    """A `Task` from a Task, a built-in task name, or a dict of Task fields."""
    from evoforge.compression.task import BUILTIN_TASKS, Task

    if isinstance(task, Task):
        return task
    if isinstance(task, str):
        return BUILTIN_TASKS[task]
    if isinstance(task, Mapping):
        data = dict(task)
        if "training" in data and isinstance(data["training"], Mapping):
            from evoforge.compression.genome import TrainingSettings

            data["training"] = TrainingSettings(**data["training"]).__dict__
        return Task.from_dict(data)
    raise ConfigError(f"task must be a Task, a built-in task name or a mapping, got {type(task).__name__}")


def compress(
    task: Any,
    *,
    objectives: Sequence[str] | None = None,
    constraints: Mapping[str, Any] | None = None,
    budget: str | int | Termination = "10m",
    algorithm: str = "petra",
    pop_size: int = 10,
    offspring_size: int | None = None,
    workers: int = 1,
    timeout_s: float | None = 900.0,
    executor: str = "local",
    address: str | None = None,
    resources: Mapping[str, float] | None = None,
    seed: int = 0,
    run_dir: str | Path | None = None,
    callback: SearchCallback | None = None,
) -> Front:
    """Evolve compressed versions of ``task``'s model; returns the Pareto front.

    ``objectives`` default to quality_drop, latency_ratio, size_ratio (all minimized).
    ``constraints`` takes ``max_quality_drop`` (accuracy points, or percent with
    ``relative=True``; default 1 point for classification, 5% for regression; None disables)
    and ``relative``. Every member's TorchScript artifact is kept in ``run_dir``
    (default ``runs/<task>-<time>``). ``executor`` (``"local"`` or ``"ray"``), ``address`` and
    ``resources`` choose where evaluations run (see `evoforge.api.make_executor`).
    """
    from evoforge.api import optimize
    from evoforge.compression.domain import DEFAULT_OBJECTIVES, CompressDomain

    resolved = resolve_task(task)
    constraints = dict(constraints or {})
    check_keys("constraints", constraints, CONSTRAINT_KEYS)
    run_dir = Path(run_dir) if run_dir is not None else Path("runs") / f"{resolved.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    domain = CompressDomain(
        resolved.to_dict(),
        str(run_dir),
        objectives=list(objectives or DEFAULT_OBJECTIVES),
        max_quality_drop=constraints.get("max_quality_drop", -1.0),
        relative_drop=constraints.get("relative"),
    )
    options: dict[str, Any] = {"pop_size": pop_size}
    if offspring_size:
        options["offspring_size"] = offspring_size
    return optimize(
        domain,
        algorithm=algorithm,
        algorithm_options=options,
        budget=budget,
        seed=seed,
        workers=workers,
        timeout_s=timeout_s,
        executor=executor,
        address=address,
        resources=resources,
        run_dir=run_dir,
        callback=callback,
    )


def compress_options_from_config(path: str | Path) -> dict[str, Any]:
    """Keyword arguments of `compress` from a YAML/TOML config file (strict keys)."""
    data = load_config_file(path)
    check_keys(str(path), data, CONFIG_SECTIONS)
    if "task" not in data:
        raise ConfigError(f"{path} needs a 'task' section (a built-in task name or the task's fields)")
    search = dict(data.get("search", {}) or {})
    check_keys("search", search, SEARCH_KEYS)
    kwargs: dict[str, Any] = {"task": data["task"]}
    if "objectives" in data:
        kwargs["objectives"] = list(data["objectives"])
    if "constraints" in data:
        kwargs["constraints"] = dict(data["constraints"])
    if "run" in data:
        kwargs["run_dir"] = data["run"]
    renames = {"timeout": "timeout_s"}
    for key, value in search.items():
        kwargs[renames.get(str(key), str(key))] = value
    if "budget" in kwargs:
        parse_budget(kwargs["budget"])  # validate early
    return kwargs
