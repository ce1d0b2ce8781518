"""The domain plug: what the search engine needs to know about a problem.

A domain supplies a genome type, an initial population, named mutation operators (and an
optional crossover), and ``evaluate``. Domains are rebuilt from ``(name, config)`` through
`DOMAINS`, in worker processes and on resume, so ``config()`` must be JSON and complete. The
engine attaches the run's `RunLayout` (`Domain.attach`); a domain keeps no run paths in its config.
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
from evoforge.layout import RunLayout
from evoforge.pareto import Objective
from evoforge.registry import Registry
from evoforge.search.evaluation import Evaluation

Mutation = Callable[[Genome, np.random.Generator], Genome]
"""A mutation operator: returns a new genome; must not modify its input (genomes are frozen)."""


@dataclasses.dataclass(frozen=True)
class EvalContext:
    """What an evaluation may use besides the genome: its own seed (derived from the run seed and
    the genome hash, so it does not depend on worker count), a private artifact directory
    (None when artifacts are not kept), the number of threads it may use, and the fidelity."""

    seed: int
    artifact_dir: Path | None = None
    threads: int = 1
    fidelity: float = 1.0
    """The fraction of full fidelity to evaluate at (< 1 only for domains that `supports_fidelity`)."""


@dataclasses.dataclass(frozen=True)
class RebuiltMember:
    """A member rebuilt as a model object (`Domain.member_model`): the model, the data it was
    judged on, and its description."""

    model: Any
    data: Any
    description: str


class Domain(abc.ABC):
    """Base class of all domains.

    Contract:
      * ``objectives`` and ``constraints`` are fixed for the life of the domain; an evaluation
        reports every objective by name and every constraint (value <= 0 is feasible).
      * `mutations` maps operator names to `Mutation` callables; it never changes.
      * `evaluate` runs in a worker process; it may raise (recorded as FAILED) but must not
        depend on global random state: use ``context.seed``.
      * ``DOMAINS[name](**config())`` rebuilds an equivalent domain; ``config()`` is complete
        after `prepare` (which may turn the user's objects into stored references).
      * Run paths come from the attached `RunLayout` (``self.layout``; None for in-memory runs).
    """

    name: ClassVar[str]
    run_defaults: ClassVar[dict[str, Any]] = {}
    """The domain's defaults for `evoforge.run.RunSpec` settings (algorithm, budget, workers, ...)."""
    supports_fidelity: ClassVar[bool] = False
    """True: `evaluate` honours ``EvalContext.fidelity`` < 1 with a cheaper, rougher evaluation
    (multi-fidelity screening, `evoforge.search.fidelity`)."""
    writes_report: ClassVar[bool] = False
    """True: a stored run writes its HTML report (``RUN/report.html``) when it ends."""
    measures_front: ClassVar[bool] = False
    """True: `finalize` measures the front members again when a stored run ends (held-out numbers);
    the run announces it to its callback. False: the run has nothing to measure then."""
    objectives: tuple[Objective, ...]
    constraints: tuple[str, ...] = ()
    layout: RunLayout | None = None

    def attach(self, layout: RunLayout | None) -> None:
        """Use ``layout`` for everything this domain reads or writes in the run directory."""
        self.layout = layout

    def require_layout(self) -> RunLayout:
        """The attached layout; `ConfigError` for domains that need a run directory."""
        if self.layout is None:
            raise ConfigError(f"the {self.name} domain needs a run directory; give run_dir")
        return self.layout

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

    def warm_starts(self) -> list[Genome]:
        """Known-good genomes the initial population begins with (none by default). The
        algorithms label them ``warm_start``, and a multi-fidelity run evaluates them in full
        without screening them (`evoforge.search.fidelity`)."""
        return []

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

    def prepare(self) -> None:
        """Driver-side preparation before any evaluation (e.g. train and cache a baseline), in
        the attached layout. Optional."""

    def describe(self, genome: Genome) -> str:
        """A one-line human description of a genome."""
        return genome.to_json()

    def prunes_artifacts(self) -> bool:
        """True: when a generation ends, the engine deletes the artifacts of the evaluations that
        have left the front (an evaluation that leaves it never returns), and the domain rebuilds
        them when asked (`export_member`). False (the default) keeps every evaluation's artifacts."""
        return False

    def check_inputs(self) -> list[str]:
        """Problems with the run's inputs (a referenced file missing or changed since the run
        started), one line each; empty when all is well. Reads no data."""
        return []

    def finalize(self, members: Sequence[tuple[str, Evaluation]]) -> dict[str, dict[str, Any]]:
        """Final, held-out numbers for front members (e.g. test-split quality measured on the
        exported artifact), keyed by genome hash, plus an optional ``"baseline"`` entry.
        Called by the driver after a run; the default has none."""
        return {}

    def finalize_seconds(self, members: Sequence[tuple[str, Evaluation]]) -> float:
        """About how long `finalize` of ``members`` takes, from their evaluations' metrics; a time
        budget keeps this much of itself for it. 0 by default."""
        return 0.0

    def headline_notes(self, evaluations: Mapping[str, Evaluation]) -> list[str]:
        """Lines `show` prints under a run's headline (what the numbers are measured against,
        what the run's ``evaluations`` reused), one fact each."""
        return []

    def baseline_objectives(self) -> dict[str, float] | None:
        """The objective values of the unmodified model or program (the report marks it), or
        None when the domain has no baseline."""
        return None

    def genome_features(self, genome: Genome) -> dict[str, str]:
        """Categorical settings of ``genome`` (``{"quantize mode": "static"}``) that the report
        relates to the best trade-offs; none by default."""
        return {}

    def cache_identity(self) -> dict[str, Any] | None:
        """Everything besides the genome, its seed and the fidelity that decides an evaluation's
        result, as JSON (`evoforge.search.eval_cache`); called after `prepare`. None (the
        default): this domain's evaluations are never shared between runs."""
        return None

    def screening_identity(self) -> dict[str, Any]:
        """The settings that change what a screening (fidelity < 1) computes and nothing else,
        as JSON: they join the cache key of screenings only, so full evaluations stay shared
        between runs that screen differently. Keep them out of `cache_identity`."""
        return {}

    def search_features(self, genome: Genome) -> dict[str, float | str]:
        """Named settings of ``genome`` that a model-based search may learn from: numbers
        (epochs, ratios; a log-scaled setting as its log) and categories. A setting the genome
        does not have is left out. Defaults to `genome_features`; empty: no model."""
        return dict(self.genome_features(genome))

    def member_details(self, genome: Genome) -> dict[str, str]:
        """Titled plain-text sections the report shows for a member (its settings, a diff);
        by default the genome as JSON."""
        return {"genome": genome.to_json()}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Domain:
        """The domain a stored `config` describes (a domain whose settings gained a default
        since older runs were stored fills in what those runs used)."""
        return cls(**config)

    def export_member(self, key: str, genome: Genome, evaluation: Evaluation, out_dir: Path, *,
                      claimed: Mapping[str, float] | None = None, formats: Sequence[str] = (),
                      seed: int | None = None) -> dict[str, Any]:
        """Write a deployable artifact of one member into ``out_dir`` and verify it against
        ``claimed`` (the held-out numbers the run reports for it, when there are some); returns
        a JSON description (paths, verified numbers). ``formats`` asks for further artifact
        formats where the domain has them; ``seed`` is the member's candidate seed."""
        raise ConfigError(f"domain {self.name!r} has no exportable artifacts")

    def explain_member(self, genome: Genome) -> list[dict[str, Any]]:
        """What each part of a member's genome contributes, measured by evaluating variants of it
        (one dict per row; the domain says which rows and numbers)."""
        raise ConfigError(f"domain {self.name!r} cannot explain its members part by part; evolve runs can")

    timed_objectives: tuple[str, ...] = ()
    """Objectives measured with noise (timings): `evoforge.search.minimize` allows them a relative tolerance."""

    def parts(self, genome: Genome) -> list[str]:
        """The parts of ``genome`` that minimizing may remove one at a time, in words, in order
        (`evoforge.search.minimize`); `keep_parts` builds a genome of some of them."""
        raise ConfigError(f"domain {self.name!r} cannot minimize its members part by part; evolve runs can")

    def part_count(self, genome: Genome) -> int:
        """How many `parts` ``genome`` has (a domain overrides it where counting is cheaper than
        describing them)."""
        return len(self.parts(genome))

    def keep_parts(self, genome: Genome, kept: Sequence[int]) -> Genome:
        """The genome made of ``genome``'s parts at the indices ``kept`` (ascending), in order."""
        raise ConfigError(f"domain {self.name!r} cannot minimize its members part by part; evolve runs can")

    def member_model(self, key: str, genome: Genome, evaluation: Evaluation, seed: int) -> RebuiltMember:
        """The member as a model object the other domains can take (e.g. a float PyTorch
        module a compress member rebuilds into); ``seed`` is the candidate's own seed."""
        raise ConfigError(f"domain {self.name!r} cannot rebuild its members as models")


DOMAINS: Registry[type[Domain]] = Registry("domain")


def register_domain(cls: type[Domain]) -> type[Domain]:
    """Class decorator: make a domain rebuildable by name."""
    DOMAINS.add(cls.name, cls)
    return cls


def domain_spec(domain: Domain, layout: RunLayout | None = None) -> dict[str, Any]:
    """The JSON record that `domain_from_spec` turns back into an equivalent domain; with a
    ``layout`` (what executors get) the rebuilt domain is attached to that run directory."""
    spec: dict[str, Any] = {"name": domain.name, "module": type(domain).__module__, "config": domain.config()}
    if layout is not None:
        spec["run_dir"] = str(layout.root)
    return spec


def domain_from_spec(spec: Mapping[str, Any], layout: RunLayout | None = None) -> Domain:
    """Import the module that registers the domain, build it from its config, and attach
    ``layout`` (or the spec's own ``run_dir``)."""
    module = spec.get("module")
    if module:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ConfigError(f"cannot import domain module {module!r} ({exc}); install the package that provides it") from exc
    cls = DOMAINS[spec["name"]]
    config = dict(spec.get("config", {}))
    config.pop("run_dir", None)  # runs stored before the layout was the engine's kept it in the domain config
    domain = cls.from_config(config)
    if layout is None and spec.get("run_dir"):
        layout = RunLayout(Path(spec["run_dir"]))
    domain.attach(layout)
    return domain


def objective_names(objectives: Sequence[Objective]) -> list[str]:
    return [o.name for o in objectives]
