"""`evoforge.compress`: evolve compression pipelines for a PyTorch model (PETRA)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evoforge.config import check_keys, load_config_file
from evoforge.errors import ConfigError
from evoforge.execute.base import refuse_in_worker_import
from evoforge.front import Front
from evoforge.run import RunSpec
from evoforge.search.engine import SearchCallback

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from evoforge.run import RunSettings
    from evoforge.workload.task import Task

CONFIG_SECTIONS = ("task", "search", "objectives", "constraints", "run", "runtime")
CONSTRAINT_KEYS = ("max_quality_drop", "relative")
PATH_FIELDS = ("model", "dataset", "checkpoint", "evaluate", "metric")


def resolve_task(task: Any, data: Any = None) -> Task:
    """A `Task` from a Task, a built-in task name, a mapping of Task fields, or a model (an
    ``nn.Module`` or a factory spec) together with ``data``."""
    from evoforge.workload.task import BUILTIN_TASKS, Task

    if data is not None:
        if isinstance(task, (Task, Mapping)) or (isinstance(task, str) and task in BUILTIN_TASKS):
            raise ConfigError("data goes with a model (an nn.Module or 'pkg.module:factory'), not with a task; put it in the task")
        name = task if isinstance(task, str) else type(task).__name__
        return Task(name=name.rpartition(":")[2] or "model", model=task, dataset=data)
    if isinstance(task, Task):
        return task
    if isinstance(task, str):
        return BUILTIN_TASKS[task]
    if isinstance(task, Mapping):
        return Task.from_dict(dict(task))
    raise ConfigError(
        f"task must be a Task, a built-in task name, a mapping, or a model with data=..., got {type(task).__name__}"
    )


def compress(
    task: Any,
    data: Any = None,
    *,
    objectives: Sequence[str] | None = None,
    constraints: Mapping[str, Any] | None = None,
    runtime: str | None = None,
    prefix_cache_mb: float = 512.0,
    screen_by: str = "examples",
    exclude: Sequence[str] = (),
    compare_runtimes: str = "fast",
    int8_weight_bits: str | int = "auto",
    run_dir: str | Path | None = None,
    spec: RunSpec | None = None,
    callback: SearchCallback | None = None,
    **settings: Unpack[RunSettings],
) -> Front:
    """Evolve compressed versions of a model; returns the Pareto front.

    ``task`` is a built-in task name, a `Task` (a model, its data and quality measure: see
    `evoforge.workload.task.Task`), a mapping of Task fields, or a model (an ``nn.Module`` with
    its trained weights, or a factory spec) with its ``data`` (``{"train": ..., "test": ...}``
    of arrays, tensors, Datasets or DataLoaders). ``objectives`` default to quality_drop,
    latency_ratio, size_ratio (all minimized). ``constraints`` takes ``max_quality_drop``
    (points, or percent with ``relative=True``; default 1 point for accuracy-like metrics, 5%
    otherwise; None disables) and ``relative``. ``runtime`` is where candidates are deployed,
    timed and weighed: ``onnxruntime`` (the default), ``openvino``, ``inductor``, ``torchscript`` (see
    `evoforge.runtimes`); ratios are against the fp32 model in that runtime. ``prefix_cache_mb``
    bounds the run's cache of intermediate models that pipelines sharing their first stages start
    from (0: off; see `evoforge.compression.prefix`). ``screen_by`` is what a screening (with
    ``rungs``) scales: the share of every epoch's examples (``"examples"``, the default) or each
    stage's epochs (``"epochs"``). ``exclude`` leaves stage kinds, pruning importances or quantize
    modes out of the search, named as the probe names them (``["quantize:bf16", "lowrank"]``: see
    `evoforge.compression.operators.EXCLUDABLE`), e.g. bf16 when the deployment processor lacks
    what the search machine has. ``compare_runtimes`` is which other runtimes the fp32 baseline is
    also timed in when the run starts, so that `show` can say when one runs it faster than the
    run's reference: ``"fast"`` (the default: all installed but those whose export compiles native
    code, Inductor), ``"all"`` or ``"none"``. ``int8_weight_bits`` is how wide int8 weights are in
    ``onnxruntime`` and ``openvino``: ``"auto"`` (the default) gives 7 bits on x86 processors without
    VNNI, whose int8 kernels saturate with 8, and 8 elsewhere; 7 makes members that keep their
    accuracy on any processor (search for one without VNNI on one with it), 8 the full range.
    ``settings`` are the run's settings (see
    `evoforge.run.RunSpec`; defaults: petra, pop_size 10, budget 10m, 1 worker, 900 s timeout),
    or ``spec`` gives them all at once.
    Every member's artifact is kept in ``run_dir`` (default ``runs/<task>-<time>``).
    """
    refuse_in_worker_import("evoforge.compress")
    from evoforge.api import optimize
    from evoforge.compression.domain import DEFAULT_OBJECTIVES, DEFAULT_RUNTIME, CompressDomain
    from evoforge.layout import default_run_dir

    resolved = resolve_task(task, data)
    constraints = dict(constraints or {})
    check_keys("constraints", constraints, CONSTRAINT_KEYS)
    run_dir = Path(run_dir) if run_dir is not None else default_run_dir(resolved.name)
    spec = spec or RunSpec.build(CompressDomain.run_defaults, **settings)
    domain = CompressDomain(
        resolved,
        objectives=DEFAULT_OBJECTIVES if objectives is None else objectives,
        max_quality_drop=constraints.get("max_quality_drop", -1.0),
        relative_drop=constraints.get("relative"),
        timeout_s=spec.timeout_s,
        runtime=runtime or DEFAULT_RUNTIME,
        prefix_seed=spec.seed,
        prefix_cache_mb=prefix_cache_mb,
        screen_by=screen_by,
        exclude=exclude,
        compare_runtimes=compare_runtimes,
        int8_weight_bits=int8_weight_bits,
    )
    return optimize(domain, run_dir=run_dir, spec=spec, callback=callback)


def available_runtimes() -> list[dict[str, Any]]:
    """Every registered runtime as this machine has it, as rows: ``runtime``, ``installed``,
    ``version`` (of its package), ``artifact`` (file name), ``modes`` (the quantize modes a
    compress run here can search: the runtime's, with bf16 only where the processor computes in
    bfloat16) and ``note`` (why a runtime is missing, or what it lacks or does differently here)."""
    from importlib import metadata

    from evoforge.compression.domain import DEFAULT_RUNTIME, runtime_quant_modes
    from evoforge.machine import BF16_FEATURES, INT8_DOT_FEATURES, int8_products_saturate, native_bf16
    from evoforge.runtimes import RUNTIMES

    rows = []
    for name, cls in RUNTIMES.items():
        try:
            runtime = cls()
        except ConfigError as exc:
            rows.append({"runtime": name, "installed": False, "version": None, "artifact": cls.artifact_name, "modes": [],
                         "note": str(exc)})
            continue
        modes = list(runtime_quant_modes(runtime))
        notes = ["the default"] if name == DEFAULT_RUNTIME else []
        if "bf16" in modes and not native_bf16():
            modes.remove("bf16")
            notes.append(f"bf16 left out: this processor has none of {', '.join(BF16_FEATURES)}")
        if runtime.narrows_int8_weights and int8_products_saturate():
            notes.append(f"int8 weights in 7 bits: this processor has none of {', '.join(INT8_DOT_FEATURES)}, "
                         "and 8-bit products saturate its int8 kernels (int8_weight_bits sets it)")
        rows.append({"runtime": name, "installed": True, "version": metadata.version(cls.package), "artifact": cls.artifact_name,
                     "modes": modes, "note": "; ".join(notes)})
    return rows


def compress_options_from_config(path: str | Path) -> dict[str, Any]:
    """Keyword arguments of `compress` from a YAML/TOML config file (strict keys). Relative
    paths in the task are taken from the config file's folder."""
    from evoforge.run import SETTINGS
    from evoforge.workload.callables import absolute_path, absolute_spec

    data = load_config_file(path)
    check_keys(str(path), data, CONFIG_SECTIONS)
    if "task" not in data:
        raise ConfigError(f"{path} needs a 'task' section (a built-in task name or the task's fields)")
    search = dict(data.get("search", {}) or {})
    if "timeout" in search:  # the config files' name for timeout_s
        search["timeout_s"] = search.pop("timeout")
    check_keys("search", search, (*SETTINGS, "prefix_cache_mb", "screen_by", "exclude", "compare_runtimes", "int8_weight_bits"))
    base = Path(path).resolve().parent
    task = data["task"]
    if isinstance(task, Mapping):
        task = dict(task)
        for field in PATH_FIELDS:
            value = task.get(field)
            if isinstance(value, str) and (field == "checkpoint" or (field == "dataset" and value.endswith(".npz"))):
                task[field] = absolute_path(value, base)
            elif isinstance(value, str):
                task[field] = absolute_spec(value, base)
    kwargs: dict[str, Any] = {"task": task, **search}
    if "objectives" in data:
        kwargs["objectives"] = data["objectives"]  # a list, or one comma-separated string
    if "constraints" in data:
        kwargs["constraints"] = dict(data["constraints"])
    if "runtime" in data:
        if not isinstance(data["runtime"], str):
            raise ConfigError(f"{path}: runtime must be a runtime name such as 'onnxruntime', got {data['runtime']!r}")
        kwargs["runtime"] = data["runtime"]
    if "run" in data:
        kwargs["run_dir"] = str(absolute_path(str(data["run"]), base))
    return kwargs
