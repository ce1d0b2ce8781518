"""The search engine: generational ask/tell over a domain, an algorithm and a run store.

Data flow per generation ``g``: `ask` creates the batch (the algorithm's offspring; the RNG
state after asking and the batch are stored before anything runs), `tell` records each
evaluation as it completes, `advance` runs survival and stores the population, operator
rates, hypervolume and RNG state. `Search.resume` rebuilds exactly this state from the store,
so a killed driver continues where it stopped: finished evaluations are reused, the ones that
were in flight are asked again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from evoforge import __version__
from evoforge.errors import ConfigError, EvoforgeError, StoreError
from evoforge.execute.base import EvalTask, Executor
from evoforge.front import Front, feasible_hypervolume, front_keys
from evoforge.genome import Genome, genome_from_json
from evoforge.layout import RunLayout
from evoforge.machine import MACHINE_METRIC
from evoforge.pareto import hypervolume, non_dominated_sort, reference_point, to_min_matrix, violation
from evoforge.search.algorithms import ALGORITHMS, Algorithm, Individual, Offspring
from evoforge.search.algorithms.base import WARM_START, working_reference
from evoforge.search.domain import Domain, domain_from_spec, domain_spec
from evoforge.search.eval_cache import EvaluationCache, cache_key, filed_identity
from evoforge.search.evaluation import Evaluation, Status
from evoforge.search.fidelity import Fidelity
from evoforge.search.termination import Termination
from evoforge.store.base import RunStore
from evoforge.store.memory import MemoryRunStore


@dataclasses.dataclass(frozen=True)
class Candidate:
    """A genome waiting for evaluation, with its derived seed and provenance."""

    key: str
    genome: Genome
    seed: int
    operator: str
    parent: str | None
    generation: int
    fidelity: float = 1.0
    """The fraction of full fidelity it is evaluated at (< 1: a screening, see `Fidelity`)."""


@dataclasses.dataclass(frozen=True)
class GenerationSummary:
    """What a finished generation reports to progress displays and logs. ``hypervolume`` is the
    population's; ``archive_hypervolume`` that of every feasible evaluation so far, against the
    run's fixed reference (comparable between runs and algorithms on the same task)."""

    generation: int
    evaluations: int
    failures: dict[str, int]
    hypervolume: float
    archive_hypervolume: float
    best: dict[str, float]
    operator_rates: dict[str, float] | None
    elapsed_s: float
    population: list[str]
    mean_evaluation_s: float
    plateau: int = 0
    """Generations the archive hypervolume has gained under the patience tolerance (`Termination.plateau`)."""


class SearchCallback:
    """Hooks called by `Search.run`; override what you need."""

    def on_evaluation(self, candidate: Candidate, evaluation: Evaluation) -> None:
        """After each evaluation is stored."""

    def on_generation(self, summary: GenerationSummary) -> None:
        """After each generation's survivors are stored."""

    def on_finalize(self, members: int) -> None:
        """When the search has ended, before the domain measures ``members`` front members
        again (`Domain.finalize`: held-out scores, re-timing), which can take a while."""


def candidate_seed(run_seed: int, key: str) -> int:
    """A 31-bit seed from (run seed, genome hash): independent of worker count and order."""
    return int.from_bytes(hashlib.sha256(f"{run_seed}:{key}".encode()).digest()[:4], "big") & 0x7FFFFFFF


class Search:
    """One run of one algorithm on one domain. Create with `Search.create` or `Search.resume`."""

    def __init__(
        self,
        domain: Domain,
        algorithm: Algorithm,
        store: RunStore,
        *,
        seed: int,
        termination: Termination,
        layout: RunLayout | None,
        fidelity: Fidelity | None = None,
    ) -> None:
        self.domain = domain
        self.fidelity = fidelity
        self._screenings: dict[float, dict[str, Evaluation]] = {}
        self._slots: int | None = None  # full evaluations the current batch may get (multi-fidelity runs)
        self.algorithm = algorithm
        self.store = store
        self.seed = seed
        self.termination = termination
        self.layout = layout
        self.rng = np.random.default_rng(seed)
        self.generation = -1  # last completed generation
        self.population: list[Individual] = []
        self._evaluations: dict[str, Evaluation] = {}
        self._batch: list[Offspring] | None = None
        self._reference: np.ndarray | None = reference_point(domain.objectives)
        self._archive_hypervolumes: list[float] = []
        self._reserve = (-1, 0.0)  # (evaluations when computed, `finalize_reserve_s`)
        self._elapsed_before = 0.0
        self._session_start = time.monotonic()

    # ----------------------------------------------------------------- creation
    @classmethod
    def create(
        cls,
        domain: Domain,
        *,
        algorithm: str | Algorithm = "nsga2",
        algorithm_options: Mapping[str, Any] | None = None,
        termination: Termination,
        seed: int = 0,
        store: RunStore | None = None,
        layout: RunLayout | None = None,
        settings: Mapping[str, Any] | None = None,
        fidelity: Fidelity | None = None,
    ) -> Search:
        """Start a new run. ``store`` defaults to in-memory; ``layout`` (where artifacts go) is
        required for domains that write artifacts. ``settings`` (the run's `RunSpec` as a dict)
        are stored with the run's configuration. ``fidelity``: screen candidates at lower
        fidelity first (domains with `Domain.supports_fidelity` only)."""
        if fidelity is not None and not domain.supports_fidelity:
            raise ConfigError(f"the {domain.name} domain has no cheaper fidelity to screen at; drop the rungs setting")
        algo = ALGORITHMS[algorithm](**(algorithm_options or {})) if isinstance(algorithm, str) else algorithm
        store = store or MemoryRunStore()
        if store.config() is not None:
            raise StoreError("this run store already holds a run; resume it, or use a new run directory")
        store.put_config(
            {
                "domain": domain_spec(domain),
                "algorithm": {"name": algo.name, "options": algo.config()},
                "termination": termination.to_dict(),
                "seed": seed,
                "evoforge_version": __version__,
                **({"fidelity": fidelity.to_dict()} if fidelity is not None else {}),
                **({"run": dict(settings)} if settings is not None else {}),
            }
        )
        return cls(domain, algo, store, seed=seed, termination=termination, layout=layout, fidelity=fidelity)

    @classmethod
    def resume(
        cls, store: RunStore, *, layout: RunLayout | None = None, termination: Termination | None = None
    ) -> Search:
        """Rebuild a run from its store; ``termination`` overrides the stored budget (to extend a run)."""
        config = store.config()
        if config is None:
            raise StoreError("this run store holds no run to resume")
        domain = domain_from_spec(config["domain"], layout)
        algo = ALGORITHMS[config["algorithm"]["name"]].from_options(config["algorithm"]["options"])
        term = termination or Termination(**config["termination"])
        fidelity = Fidelity.from_dict(config["fidelity"]) if config.get("fidelity") else None
        search = cls(domain, algo, store, seed=int(config["seed"]), termination=term, layout=layout, fidelity=fidelity)
        search._restore()
        return search

    def _restore(self) -> None:
        self._evaluations = self.store.evaluations()
        self._screenings = self.store.screenings()
        stored_ref = self.store.meta("reference")
        if stored_ref is not None:
            self._reference = np.array(stored_ref, dtype=float)
        records = self.store.generations()
        if records:
            last = records[-1]
            self.generation = int(last["generation"])
            self.population = [self._individual(k) for k in last["population"]]
            for gen in range(self.generation + 1):
                stored = self.store.batch(gen)
                if stored is not None:
                    self.algorithm.observe([self._individual(o["key"]) for o in stored["offspring"] if o["key"] in self._evaluations])
            self.algorithm.load_state(last["algorithm_state"])
            _set_rng_state(self.rng, last["rng_state"])
            self._archive_hypervolumes = [float(r.get("archive_hypervolume", r["hypervolume"])) for r in records]
            self._elapsed_before = float(last["elapsed_s"])
        batch = self.store.batch(self.generation + 1)
        if batch is not None:
            self._batch = [
                Offspring(genome_from_json(self.store.genome(o["key"])), o["operator"], o["parent"]) for o in batch["offspring"]
            ]
            _set_rng_state(self.rng, batch["rng_state"])
            self._elapsed_before = float(batch.get("elapsed_s", self._elapsed_before))
            self._slots = batch.get("slots")

    def _individual(self, key: str) -> Individual:
        return Individual(genome_from_json(self.store.genome(key)), self._evaluations[key])

    # ----------------------------------------------------------------- ask / tell
    @property
    def elapsed_s(self) -> float:
        """Wall-clock seconds spent in this run, summed over resumed sessions."""
        return self._elapsed_before + time.monotonic() - self._session_start

    @property
    def evaluations_done(self) -> int:
        return len(self._evaluations)

    def stop_reason(self, reserved_s: float = 0.0) -> str | None:
        """Why the run should stop before the next generation, or None; ``reserved_s`` of a time
        budget are kept for work after the search."""
        return self.termination.reason(
            evaluations=self.evaluations_done,
            seconds=self.elapsed_s,
            generations=self.generation + 1,
            hypervolumes=self._archive_hypervolumes,
            reserved_s=reserved_s,
        )

    def finalize_reserve_s(self) -> float:
        """`Domain.finalize_seconds` of the current front's members not finalized yet (0 without
        a time budget); recomputed when an evaluation has been told since the last call."""
        if self.termination.max_seconds is None:
            return 0.0
        if self._reserve[0] != self.evaluations_done:
            final = self.store.meta("final", {}) or {}
            keys, _ = front_keys(self._evaluations, self.domain.objectives)
            todo = [(k, self._evaluations[k]) for k in keys if k not in final]
            self._reserve = (self.evaluations_done, float(self.domain.finalize_seconds(todo)))
        return self._reserve[1]

    def ask(self) -> list[Candidate]:
        """The candidates of the current generation that still need an evaluation (creating the
        generation's batch on first call); empty once the generation is complete. In a
        multi-fidelity run these are the current rung's, led by the warm starts that still need
        their full evaluation (they skip screening, so they need not wait for it): tell them all,
        then ask again."""
        if self._batch is None:
            self._begin_batch()
        fraction, pending, _ = self._pending()
        if fraction < 1.0:
            waiting = [o for o in self._batch or [] if o.operator == WARM_START and o.genome.content_hash not in self._evaluations]
            pending = waiting + pending
        gen = self.generation + 1
        return [
            Candidate(o.genome.content_hash, o.genome, candidate_seed(self.seed, o.genome.content_hash), o.operator, o.parent, gen,
                      1.0 if o.operator == WARM_START else fraction)
            for o in pending
        ]

    def _pending(self) -> tuple[float, list[Offspring], list[Offspring]]:
        """(fraction, offspring still to evaluate at it, every offspring of that rung); when the
        batch is complete, (1.0, [], the offspring evaluated at full fidelity). Promotion is
        recomputed from the stored results, so a resumed run promotes what the interrupted one did."""
        assert self._batch is not None
        members = list(self._batch)
        rungs = self.fidelity.rungs if self.fidelity is not None else (1.0,)
        for i, fraction in enumerate(rungs):
            if fraction == 1.0:
                return 1.0, [o for o in members if o.genome.content_hash not in self._evaluations], members
            assert self.fidelity is not None
            screened = [o for o in members if o.operator != WARM_START]  # warm starts go straight to full fidelity
            results = self._screenings.get(fraction, {})
            missing = [o for o in screened if o.genome.content_hash not in results]
            if missing:
                return fraction, missing, screened
            last = i + 1 == len(rungs) - 1
            warm = len(members) - len(screened)  # they take full evaluations of the generation's slots
            count = (self._slots or len(members)) - warm if last else len(screened)
            keep = set(self.fidelity.promoted([o.genome.content_hash for o in screened], results, self.domain.objectives, count))
            members = [o for o in members if o.operator == WARM_START or o.genome.content_hash in keep]
        raise AssertionError("the last rung is full fidelity")

    def _begin_batch(self) -> None:
        gen = self.generation + 1
        remaining = (
            self.termination.max_evaluations - self.evaluations_done
            if self.termination.max_evaluations is not None
            else None
        )
        is_new: Callable[[Genome], bool] = lambda g: g.content_hash not in self._evaluations  # noqa: E731
        widening = self.fidelity.widening if self.fidelity is not None else 1
        size = self.algorithm.initial_size if gen == 0 else self.algorithm.offspring_size
        slots = size if remaining is None else max(1, min(size, remaining))
        if gen == 0:
            batch = self.algorithm.initial(self.domain, self.rng, is_new, size=slots * widening if widening > 1 else None)
        else:
            batch = self.algorithm.ask(self.population, self.domain, self.rng, slots * widening, is_new)
        batch = batch[: slots * widening]
        for o in batch:
            self.store.put_genome(o.genome.content_hash, o.genome.to_json())
        self.store.put_batch(
            gen,
            {
                "offspring": [{"key": o.genome.content_hash, "operator": o.operator, "parent": o.parent} for o in batch],
                "rng_state": _rng_state(self.rng),
                "elapsed_s": self.elapsed_s,
                **({"slots": slots} if self.fidelity is not None else {}),
            },
        )
        self._batch = batch
        self._slots = slots if self.fidelity is not None else None

    def tell(self, key: str, evaluation: Evaluation, fidelity: float = 1.0) -> Evaluation:
        """Record the evaluation of candidate ``key`` at ``fidelity`` (the candidate's); returns it
        as stored (non-finite or missing values turn an OK result into FAILED)."""
        checked = evaluation.checked(self.domain.objectives, self.domain.constraints)
        if fidelity < 1.0:
            if key in self._screenings.get(fidelity, {}):
                raise EvoforgeError(f"candidate {key} was already told at fidelity {fidelity}")
            checked = dataclasses.replace(checked, metrics={**checked.metrics, "fidelity": fidelity})
            self.store.put_screening(key, fidelity, checked, self.generation + 1)
            self._screenings.setdefault(fidelity, {})[key] = checked
            return checked
        if key in self._evaluations:
            raise EvoforgeError(f"candidate {key} was already told")
        self.store.put_evaluation(key, checked, self.generation + 1)
        self._evaluations[key] = checked
        return checked

    def advance(self) -> GenerationSummary:
        """Close the current generation: survival, hypervolume, and a stored generation record."""
        if self._batch is None:
            raise EvoforgeError("advance called before ask")
        _, missing, done = self._pending()
        if missing:
            raise EvoforgeError(f"candidates of generation {self.generation + 1} still need an evaluation")
        gen = self.generation + 1
        pairs = [(o, Individual(o.genome, self._evaluations[o.genome.content_hash])) for o in done]
        if self._reference is None:
            F = to_min_matrix(self.domain.objectives, [ind.evaluation.objectives for _, ind in pairs if ind.evaluation.ok])
            self._reference = working_reference(F, None) if len(F) else None
            if self._reference is not None:
                self.store.put_meta("reference", self._reference.tolist())
        self.algorithm.observe([ind for _, ind in pairs])
        self.population = self.algorithm.select(self.population, pairs, self.domain.objectives, self._reference)
        hv = self._population_hypervolume()
        archive_hv = feasible_hypervolume(self._evaluations.values(), self.domain.objectives, self._reference)
        self._archive_hypervolumes.append(archive_hv)
        self.generation = gen
        self._batch = None
        rates = self.algorithm.operator_rates()
        record = {
            "generation": gen,
            "population": [ind.key for ind in self.population],
            "hypervolume": hv,
            "archive_hypervolume": archive_hv,
            "operator_rates": rates,
            "operator_stats": getattr(self.algorithm, "operator_stats", lambda: None)(),
            "algorithm_state": self.algorithm.state(),
            "rng_state": _rng_state(self.rng),
            "evaluations": self.evaluations_done,
            "elapsed_s": self.elapsed_s,
        }
        self.store.put_generation(gen, record)
        return self._summary(record)

    def _population_hypervolume(self) -> float:
        ok = [ind for ind in self.population if ind.evaluation.ok and violation(ind.evaluation.constraints) <= 0]
        if not ok or self._reference is None:
            return 0.0
        F = to_min_matrix(self.domain.objectives, [ind.evaluation.objectives for ind in ok])
        return hypervolume(F[non_dominated_sort(F)[0]], self._reference)

    def _summary(self, record: dict[str, Any]) -> GenerationSummary:
        counts = Counter(e.status.value for e in self._evaluations.values() if e.status is not Status.OK)
        feasible = [e for e in self._evaluations.values() if e.ok and violation(e.constraints) <= 0]
        best = {}
        for obj in self.domain.objectives:
            values = [e.objectives[obj.name] for e in feasible]
            if values:
                best[obj.name] = min(values) if obj.direction == "minimize" else max(values)
        durations = [e.duration_s for e in self._evaluations.values()]
        return GenerationSummary(
            generation=record["generation"],
            evaluations=record["evaluations"],
            failures=dict(counts),
            hypervolume=record["hypervolume"],
            archive_hypervolume=float(record.get("archive_hypervolume", record["hypervolume"])),
            best=best,
            operator_rates=record["operator_rates"],
            elapsed_s=record["elapsed_s"],
            population=record["population"],
            mean_evaluation_s=float(np.mean(durations)) if durations else 0.0,
            plateau=self.termination.plateau(self._archive_hypervolumes[: record["generation"] + 1]),
        )

    # ----------------------------------------------------------------- driving
    def tasks(self, candidates: list[Candidate]) -> list[EvalTask]:
        """Executor tasks for ``candidates``; artifacts go to the layout's ``artifacts/<key>``."""
        return [
            EvalTask(
                c.key,
                c.genome.to_json(),
                c.seed,
                str(self.layout.artifact_dir(c.key)) if self.layout is not None and c.fidelity == 1.0 else None,
                c.fidelity,
            )
            for c in candidates
        ]

    def run(
        self, executor: Executor | None = None, *, callback: SearchCallback | None = None, cache: EvaluationCache | None = None,
        reserve_finalize: bool = False,
    ) -> Front:
        """Evaluate generation after generation until the termination criteria hold; returns the
        front. A time budget that runs out inside a generation stops the run there: no further
        evaluation starts, the running ones finish and are stored, and `resume` with more budget
        evaluates the rest of the generation (in a multi-fidelity run, the rest of the rung).
        The executor is started here and closed at the end when it was created here. With a
        ``cache`` (and a domain that has a `Domain.cache_identity`), a candidate evaluated by any
        run before with the same inputs is taken from it, and new OK evaluations go into it
        (timed ones are looked up under the machines the executor evaluates on). With
        ``reserve_finalize`` a time budget keeps `finalize_reserve_s` of itself for the domain's
        `finalize` of the front, which the caller runs after this returns."""
        from evoforge.execute.inline import InlineExecutor

        owned = executor is None
        executor = executor or InlineExecutor()
        callback = callback or SearchCallback()
        identity = _threaded(self.domain.cache_identity(), executor.threads_per_evaluation) if cache is not None else None
        executor.start(domain_spec(self.domain, self.layout))
        cut = False  # the budget ran out inside a generation
        def stop() -> str | None:
            return self.stop_reason(self.finalize_reserve_s() if reserve_finalize else 0.0)

        out_of_budget = lambda: stop() is not None  # noqa: E731 - asked before each evaluation starts
        try:
            while not cut and (self._batch is not None or stop() is None):
                lookups = _lookup_identities(identity, executor) if identity is not None else []  # per generation: nodes may join
                candidates = {c.key: c for c in self.ask()}
                while candidates:  # one round per rung
                    todo = list(candidates.values())
                    if cache is not None and lookups:
                        todo = []
                        for c in candidates.values():
                            keys = (cache_key(i, c.key, c.seed, _fidelity_record(c.fidelity)) for i in lookups)
                            hit = next((e for e in (cache.get(k, self.layout, c.key) for k in keys) if e is not None), None)
                            if hit is None:
                                todo.append(c)
                            else:
                                callback.on_evaluation(c, self.tell(c.key, hit, c.fidelity))
                    for task, evaluation in executor.evaluate(self.tasks(todo), stop=out_of_budget):
                        stored = self.tell(task.key, evaluation, task.fidelity)
                        if cache is not None and identity is not None:
                            key = cache_key(filed_identity(identity, stored), task.key, task.seed, _fidelity_record(task.fidelity))
                            cache.put(key, stored, self.layout)
                        callback.on_evaluation(candidates[task.key], stored)
                    candidates = {c.key: c for c in self.ask()}
                    if candidates and stop() is not None:
                        cut = True  # stop inside the generation; a resume with more budget goes on from it
                        break
                if not cut:
                    callback.on_generation(self.advance())
        finally:
            if owned:
                executor.close()
        self.store.put_meta("finished", {"reason": stop(), "generations": self.generation + 1,
                                         "elapsed_s": self.elapsed_s, **({"stopped_in_generation": self.generation + 1} if cut else {})})
        return self.front()

    def front(self) -> Front:
        return Front.from_store(self.store, self.domain.objectives)

    def summary(self) -> GenerationSummary | None:
        """The last generation's summary (None before the first generation ends)."""
        records = self.store.generations()
        return self._summary(records[-1]) if records else None


def _threaded(identity: dict[str, Any] | None, threads: int) -> dict[str, Any] | None:
    """A cache identity that names a machine (its evaluations are timed) also names the threads
    each evaluation may use: a latency timed with one thread is not one timed with two."""
    return identity if identity is None or MACHINE_METRIC not in identity else {**identity, "threads": threads}


def _lookup_identities(identity: dict[str, Any], executor: Executor) -> list[dict[str, Any]]:
    """The identities a candidate is looked up under in the cache: one per machine the executor
    evaluates on, in its order, when the identity names a machine and the executor says
    (`Executor.timing_machines`); else the domain's own identity (this process's machine)."""
    machines = executor.timing_machines() if MACHINE_METRIC in identity else None
    if not machines:
        return [identity]
    return [{**identity, MACHINE_METRIC: machine} for machine in machines]


def _fidelity_record(fraction: float) -> dict[str, float] | None:
    """The fidelity part of an evaluation's cache key (None at full fidelity)."""
    return {"fraction": fraction} if fraction < 1.0 else None


def _rng_state(rng: np.random.Generator) -> dict[str, Any]:
    return dict(rng.bit_generator.state)


def _set_rng_state(rng: np.random.Generator, state: dict[str, Any]) -> None:
    if state.get("bit_generator") != type(rng.bit_generator).__name__:
        raise ConfigError(f"stored RNG is {state.get('bit_generator')}, expected {type(rng.bit_generator).__name__}")
    rng.bit_generator.state = state
