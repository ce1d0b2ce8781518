"""The domain plug: what the search engine needs to know about a problem.

A domain supplies a genome type, an initial population, named mutation operators (and an
optional crossover), and ``evaluate``. Domains are rebuilt from ``(name, config)`` through
`DOMAINS`, in worker processes and on resume, so ``config()`` must be JSON and complete.
"""

from __future__ import annotations

import abc
import dataclasses
import importlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from evoforge.errors import ConfigError
from evoforge.genome import Genome
from evoforge.pareto import Objective
from evoforge.registry import Registry
from evoforge.search.evaluation import Evaluation

Mutation = Callable[[Genome, np.random.Generator], Genome]
"""A mutation operator: returns a new genome; must not modify its input (genomes are frozen)."""


@dataclasses.dataclass(frozen=True)
class EvalContext:
    """What an evaluation may use besides the genome: its own seed (derived from the run seed and
    the genome hash, so it does not depend on worker count), a private artifact directory
    (None when artifacts are not kept), and the number of threads it may use."""

    seed: int
    artifact_dir: Path | None = None
    threads: int = 1


class Domain(abc.ABC):
    """Base class of all domains.

    Contract:
      * ``objectives`` and ``constraints`` are fixed for the life of the domain; an evaluation
        reports every objective by name and every constraint (value <= 0 is feasible).
      * `mutations` maps operator names to `Mutation` callables; it never changes.
      * `evaluate` runs in a worker process; it may raise (recorded as FAILED) but must not
        depend on global random state: use ``context.seed``.
      * ``DOMAINS[name](**config())`` rebuilds an equivalent domain.
    """

    name: ClassVar[str]
    objectives: tuple[Objective, ...]
    constraints: tuple[str, ...] = ()

    @abc.abstractmethod
    def config(self) -> dict[str, Any]:
        """JSON-serializable keyword arguments that rebuild this domain."""

    @property
    @abc.abstractmethod
    def mutations(self) -> Mapping[str, Mutation]:
        """Named mutation operators (a `Registry`, so unknown names list the valid ones)."""

    @abc.abstractmethod
    def initial_population(self, rng: np.random.Generator, size: int) -> list[Genome]:
        """``size`` starting genomes (duplicates allowed; the engine removes them)."""

    @abc.abstractmethod
    def sample(self, rng: np.random.Generator) -> Genome:
        """One random genome (used by the ``random`` algorithm)."""

    @abc.abstractmethod
    def evaluate(self, genome: Genome, context: EvalContext) -> Evaluation:
        """Evaluate one genome. Called in a worker process."""

    def crossover(self, a: Genome, b: Genome, rng: np.random.Generator) -> tuple[Genome, Genome]:
        """Two children from two parents; only called when `has_crossover` is True."""
        raise NotImplementedError(f"domain {self.name!r} has no crossover")

    @property
    def has_crossover(self) -> bool:
        return type(self).crossover is not Domain.crossover

    def setup_worker(self) -> None:
        """Load whatever every evaluation in a worker shares (data, baseline model). Optional."""

    def prepare(self, run_dir: Path | None) -> None:
        """Driver-side preparation before any evaluation (e.g. train and cache a baseline). Optional."""

    def describe(self, genome: Genome) -> str:
        """A one-line human description of a genome."""
        return genome.to_json()

    def finalize(self, members: Sequence[tuple[str, Evaluation]], run_dir: Path) -> dict[str, dict[str, Any]]:
        """Final, held-out numbers for front members (e.g. test-split quality measured on the
        exported artifact), keyed by genome hash, plus an optional ``"baseline"`` entry.
        Called by the driver after a run; the default has none."""
        return {}

    def export_member(self, key: str, genome: Genome, evaluation: Evaluation, run_dir: Path, out_dir: Path) -> dict[str, Any]:
        """Write a deployable artifact of one member into ``out_dir`` and verify it; returns a
        JSON description (paths, verified numbers)."""
        raise ConfigError(f"domain {self.name!r} has no exportable artifacts")


DOMAINS: Registry[type[Domain]] = Registry("domain")


def register_domain(cls: type[Domain]) -> type[Domain]:
    """Class decorator: make a domain rebuildable by name."""
    DOMAINS.add(cls.name, cls)
    return cls


def domain_spec(domain: Domain) -> dict[str, Any]:
    """The JSON record that `domain_from_spec` turns back into an equivalent domain."""
    return {"name": domain.name, "module": type(domain).__module__, "config": domain.config()}


def domain_from_spec(spec: Mapping[str, Any]) -> Domain:
    """Import the module that registers the domain, then build it from its config."""
    module = spec.get("module")
    if module:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ConfigError(f"cannot import domain module {module!r} ({exc}); install the package that provides it") from exc
    cls = DOMAINS[spec["name"]]
    return cls(**spec.get("config", {}))


def objective_names(objectives: Sequence[Objective]) -> list[str]:
    return [o.name for o in objectives]
