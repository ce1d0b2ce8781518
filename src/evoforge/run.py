"""`RunSpec`: a run's search, execution and seed settings, built once and stored in the run.

The CLI (flags and config files), the Python API and ``resume`` all build a `RunSpec` through
`RunSpec.build`, so every setting has one name, one default per domain and one check. The spec
is stored in the run; ``resume`` rebuilds it from there and applies only what the user overrides.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypedDict

from evoforge.errors import ConfigError
from evoforge.search.termination import Termination, parse_budget

if TYPE_CHECKING:
    from evoforge.execute.base import Executor
    from evoforge.search.eval_cache import EvaluationCache
    from evoforge.search.fidelity import Fidelity

EXECUTORS = ("local", "ray")
RESOURCES = ("num_cpus", "num_gpus", "memory_mb")


ALGORITHM_SIZES = ("pop_size", "offspring_size", "initial_size")
"""The run settings that size the algorithm's generations (fixed for the life of a run)."""
PETRA_OPTIONS = ("preselect", "explore")
"""Run settings only petra takes."""
FIXED_ON_RESUME = ("algorithm", "seed", *PETRA_OPTIONS, "rungs", "eta", "promote", "schedule", *ALGORITHM_SIZES)
"""Settings a run keeps for its whole life: resume refuses other values for them."""


class RunSettings(TypedDict, total=False):
    """The keyword arguments every search entry point takes (see `RunSpec`)."""

    algorithm: str
    pop_size: int | None
    offspring_size: int | None
    initial_size: int | None
    preselect: int | None
    explore: float | None
    budget: str | int | Termination | Mapping[str, Any]
    patience: int | None
    seed: int
    workers: int
    timeout_s: float | None
    executor: str
    address: str | None
    resources: Mapping[str, float] | None
    eval_cache: str | None
    rungs: str | Sequence[float] | None
    eta: int | None
    promote: str | None
    schedule: str | None


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """How a search runs.

    ``algorithm``: nsga2, petra or random, with ``pop_size`` / ``offspring_size`` /
    ``initial_size`` (the first generation's size; None: the algorithm's default);
    ``preselect`` (petra only): each child is the best of this many mutants by a model of the
    evaluations so far (None: petra's default, 1, plain mutation), and ``explore`` (petra
    only) the share of children taken as plain mutants all the same (with ``preselect`` > 1; None: 0). ``budget``:
    an evaluation count (200), a time ("90s", "30m", "2h") or a `Termination`'s fields.
    ``patience``: also stop once the hypervolume of all feasible evaluations has gained under
    0.1% in this many generations (None: run the whole budget). ``seed``: the run's one seed.
    ``executor``: "local" (``workers`` processes; 0 evaluates in the driver) or "ray" (a private
    local Ray, or the cluster at ``address``: "auto" or "HOST:PORT"; ``resources`` per
    evaluation: num_cpus, num_gpus, memory_mb). ``timeout_s``
    bounds each evaluation (None: no limit). ``eval_cache``: a folder of evaluations shared by
    runs (`evoforge.search.eval_cache`; None: none). ``rungs`` ("0.25,1"), ``eta`` (3),
    ``promote`` (top or front) and ``schedule`` (asynchronous: promote as screenings arrive;
    synchronous: once a rung is complete): screen candidates at lower fidelity and evaluate only
    the promoted ones in full (`evoforge.search.fidelity`; None: every candidate in full).
    """

    algorithm: str = "nsga2"
    pop_size: int | None = None
    offspring_size: int | None = None
    initial_size: int | None = None
    preselect: int | None = None
    explore: float | None = None
    budget: str | int | Mapping[str, Any] = 200
    patience: int | None = None
    seed: int = 0
    workers: int = 0
    timeout_s: float | None = None
    executor: str = "local"
    address: str | None = None
    resources: Mapping[str, float] | None = None
    eval_cache: str | None = None
    rungs: str | Sequence[float] | None = None
    eta: int | None = None
    promote: str | None = None
    schedule: str | None = None

    def __post_init__(self) -> None:
        from evoforge.search.algorithms import ALGORITHMS

        if isinstance(self.budget, Termination):
            object.__setattr__(self, "budget", self.budget.to_dict())
        for name in PETRA_OPTIONS:
            if getattr(self, name) is not None and self.algorithm != "petra":
                raise ConfigError(f"{name}={getattr(self, name)!r} applies to the petra algorithm only; drop it or use algorithm petra")
        for name in (*ALGORITHM_SIZES, "preselect", "patience"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigError(f"{name}={value!r} is invalid; use a positive integer")
        explore = self.explore
        if explore is not None and (isinstance(explore, bool) or not isinstance(explore, int | float) or not 0 <= explore <= 1):
            raise ConfigError(f"explore={explore!r} is invalid; use a share from 0 (every child pre-selected) to 1")
        ALGORITHMS[self.algorithm](**self.algorithm_options())  # unknown names and bad sizes fail here
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"seed={self.seed!r} is invalid; use an integer >= 0")
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 0:
            raise ConfigError(f"workers={self.workers!r} is invalid; use 0 (in this process) or more")
        if self.timeout_s is not None and (not isinstance(self.timeout_s, (int, float)) or self.timeout_s <= 0):
            raise ConfigError(f"timeout_s={self.timeout_s!r} is invalid; use a positive number of seconds or None")
        if self.executor not in EXECUTORS:
            raise ConfigError(f"unknown executor {self.executor!r}; valid: {', '.join(EXECUTORS)}")
        if self.executor != "ray" and (self.address is not None or self.resources):
            raise ConfigError("address and resources apply to the ray executor only; set executor to 'ray'")
        unknown = sorted(set(self.resources or {}) - set(RESOURCES))
        if unknown:
            raise ConfigError(f"unknown resources {unknown}; valid: {', '.join(RESOURCES)}")
        self.termination()  # a bad budget fails here
        if self.eval_cache is not None:
            if not isinstance(self.eval_cache, str) or not self.eval_cache.strip():
                raise ConfigError(f"eval_cache={self.eval_cache!r} is invalid; give a folder path or None")
            self.evaluation_cache()  # a path that is a file fails here
        if self.rungs is None and (self.eta is not None or self.promote is not None or self.schedule is not None):
            raise ConfigError("eta, promote and schedule apply to multi-fidelity runs only; give rungs too (e.g. rungs 0.25,1)")
        if isinstance(self.rungs, Sequence) and not isinstance(self.rungs, str):
            object.__setattr__(self, "rungs", list(self.rungs))
        self.fidelity()  # bad rungs, eta, promotion rule or schedule fail here

    @classmethod
    def build(cls, defaults: Mapping[str, Any] | None = None, **settings: Any) -> RunSpec:
        """A spec from a domain's ``defaults`` and the user's ``settings``; None values mean
        "not given". Unknown names raise `ConfigError` listing the valid ones."""
        merged = {**(defaults or {}), **{k: v for k, v in settings.items() if v is not None}}
        check_setting_names(merged)
        return cls(**merged)

    def replace(self, **settings: Any) -> RunSpec:
        """This spec with the non-None ``settings`` changed (the stored address and resources
        are dropped when the executor kind changes)."""
        given = {k: v for k, v in settings.items() if v is not None}
        check_setting_names(given)
        if given.get("executor", self.executor) != self.executor:
            given.setdefault("address", None)
            given.setdefault("resources", None)
        return dataclasses.replace(self, **given)

    def termination(self) -> Termination:
        """The stop criteria: the budget, and the patience when set."""
        budget = Termination(**self.budget) if isinstance(self.budget, Mapping) else parse_budget(self.budget)
        return budget if self.patience is None else dataclasses.replace(budget, stagnation_generations=self.patience)

    def algorithm_options(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in (*ALGORITHM_SIZES, *PETRA_OPTIONS) if getattr(self, name) is not None}

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["budget"] = dict(self.budget) if isinstance(self.budget, Mapping) else self.budget
        data["resources"] = dict(self.resources) if self.resources else None
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunSpec:
        check_setting_names(data)
        return cls(**data)

    def fidelity(self) -> Fidelity | None:
        """The multi-fidelity schedule these settings describe, or None."""
        from evoforge.search.fidelity import Fidelity

        return None if self.rungs is None else Fidelity.parse(self.rungs, self.eta, self.promote, self.schedule)

    def evaluation_cache(self) -> EvaluationCache | None:
        """The shared evaluation cache these settings name, or None."""
        from evoforge.search.eval_cache import EvaluationCache

        return EvaluationCache(self.eval_cache) if self.eval_cache else None

    def make_executor(self) -> Executor:
        """The executor these settings describe."""
        if self.executor == "ray":
            from evoforge.execute.ray_executor import RayExecutor

            wanted = dict(self.resources or {})
            memory_mb = wanted.get("memory_mb")
            return RayExecutor(
                self.address,
                workers=self.workers or None,
                timeout_s=self.timeout_s,
                num_cpus=float(wanted.get("num_cpus", 1.0)),
                num_gpus=float(wanted.get("num_gpus", 0.0)),
                memory_mb=None if memory_mb is None else int(memory_mb),
            )
        from evoforge.execute.inline import InlineExecutor
        from evoforge.execute.local import LocalExecutor

        return InlineExecutor() if self.workers == 0 else LocalExecutor(self.workers, timeout_s=self.timeout_s)


SETTINGS = tuple(f.name for f in dataclasses.fields(RunSpec))
"""Every run setting's name (keys of a config file's ``search`` section, keyword arguments)."""


def check_setting_names(settings: Mapping[str, Any]) -> None:
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        raise ConfigError(f"unknown run settings {unknown}; valid: {', '.join(SETTINGS)}")


def stored_spec(config: Mapping[str, Any], executor: Mapping[str, Any] | None) -> RunSpec:
    """The spec of a stored run (runs from before specs were stored are rebuilt from their
    algorithm, termination, seed and executor records)."""
    options = dict(config["algorithm"].get("options") or {})
    # what the stored algorithm ran with: petra runs stored before pre-selection, or before its
    # exploration share, ran without it
    stored: dict[str, Any] = {}
    if config["algorithm"]["name"] == "petra":
        stored = {"preselect": int(options.get("preselect", 1)), "explore": float(options.get("explore", 0.0))}
    if "run" in config:
        spec = RunSpec.from_dict(config["run"])
        return dataclasses.replace(spec, **{name: value for name, value in stored.items() if getattr(spec, name) is None})
    executor = dict(executor or {})
    return RunSpec(
        algorithm=config["algorithm"]["name"], **{name: options.get(name) for name in ALGORITHM_SIZES}, **stored,
        budget=dict(config["termination"]), seed=int(config["seed"]), workers=int(executor.get("workers", 0)),
        timeout_s=executor.get("timeout_s"), executor=executor.get("executor", "local"), address=executor.get("address"),
        resources=executor.get("resources"),
    )
