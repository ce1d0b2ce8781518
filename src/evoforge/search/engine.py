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
import functools
import hashlib
import math
import shutil
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
from evoforge.search.minimize import DEFAULT_TOLERANCE, MINIMIZED_META, MINIMIZED_METRIC, Minimization, Request
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
        self._promotions: dict[float, list[str]] = {}  # the current batch's, per rung (asynchronous schedule)
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
        self._pruned: set[str] = set()  # evaluations whose artifacts `_prune_artifacts` has deleted
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
            if self.fidelity is not None and self.fidelity.asynchronous:
                stored = self.store.meta(_promotions_meta(self.generation + 1), {}) or {}
                self._promotions = {float(f): list(keys) for f, keys in stored.items()}
                self._promote()  # catch up with screenings stored after the last stored promotion

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
        multi-fidelity run these are the warm starts that still need their full evaluation (they
        skip screening), then the promoted candidates waiting for theirs, then the screenings
        still to do. Under the synchronous schedule promotion waits for a whole rung, under the
        asynchronous one each `tell` of a screening may promote: ask again after telling."""
        if self._batch is None:
            self._begin_batch()
        todo, _ = self._open()
        gen = self.generation + 1
        return [
            Candidate(o.genome.content_hash, o.genome, candidate_seed(self.seed, o.genome.content_hash), o.operator, o.parent, gen,
                      fraction)
            for fraction, o in todo
        ]

    def _open(self) -> tuple[list[tuple[float, Offspring]], list[Offspring]]:
        """(the evaluations the current batch still needs, each with its fraction of full
        fidelity, in the order to run them; the batch's members that reach full fidelity, in
        batch order). Synchronous promotion is recomputed from the stored results, so a resumed
        run promotes what the interrupted one did; asynchronous promotions are stored as made."""
        assert self._batch is not None
        if self.fidelity is None:
            return [(1.0, o) for o in self._batch if _key(o) not in self._evaluations], list(self._batch)
        warm = {_key(o) for o in self._batch if o.operator == WARM_START}  # straight to full fidelity
        rung = [o for o in self._batch if _key(o) not in warm]
        caps = self._promotion_caps() if self.fidelity.asynchronous else []
        screenings: list[tuple[float, Offspring]] = []
        for i, fraction in enumerate(self.fidelity.rungs[:-1]):
            results = self._screenings.get(fraction, {})
            screenings = [(fraction, o) for o in rung if _key(o) not in results] + screenings  # deeper rungs first
            if self.fidelity.asynchronous:
                keep = set(self._promotions.get(fraction, []))
                if len(keep) >= caps[i]:  # the rung's share is promoted: its rest and the rungs before need no screening
                    screenings = [p for p in screenings if p[0] > fraction]
            elif any(_key(o) not in results for o in rung):
                rung = []  # nothing goes on before the rung is complete
                break
            else:
                keys = [_key(o) for o in rung]
                keep = set(self.fidelity.promoted(keys, results, self.domain.objectives, self._rung_cap(i, len(warm), len(keys))))
            rung = [o for o in rung if _key(o) in keep]
        promoted = {_key(o) for o in rung}
        full = [o for o in self._batch if _key(o) in warm or _key(o) in promoted]
        waiting = [(1.0, o) for o in full if _key(o) not in self._evaluations]
        warm_first = [p for p in waiting if _key(p[1]) in warm] + [p for p in waiting if _key(p[1]) not in warm]
        return warm_first + screenings, full

    def _rung_cap(self, index: int, warm: int, members: int) -> int:
        """The most candidates rung ``index`` may promote: the next rung's screenings are not
        limited beyond ``eta``; the last screening rung fills the generation's full-evaluation
        slots that the warm starts leave."""
        assert self.fidelity is not None
        last = index == len(self.fidelity.rungs) - 2
        return (self._slots or members + warm) - warm if last else members

    def _promotion_caps(self) -> list[int]:
        """Asynchronous schedule: the most candidates each screening rung may promote, the
        synchronous schedule's count: ``ceil(n / eta)`` of the ``n`` it would hold, and no more
        than the generation's full-evaluation slots left by the warm starts."""
        assert self.fidelity is not None and self._batch is not None
        warm = sum(o.operator == WARM_START for o in self._batch)
        expected = len(self._batch) - warm
        caps = []
        for i in range(len(self.fidelity.rungs) - 1):
            expected = min(self._rung_cap(i, warm, expected), math.ceil(expected / self.fidelity.eta))
            caps.append(expected)
        return caps

    def _promote(self) -> None:
        """Asynchronous schedule: make and store the promotions the screenings told so far
        allow, rung by rung. A rung is complete once the rung before it is complete and all its
        members are screened, or once it has promoted its share (its other members are then
        never screened)."""
        assert self.fidelity is not None and self._batch is not None
        keys = [_key(o) for o in self._batch if o.operator != WARM_START]
        complete = True
        changed = False
        for fraction, cap in zip(self.fidelity.rungs[:-1], self._promotion_caps()):
            results = self._screenings.get(fraction, {})
            already = self._promotions.setdefault(fraction, [])
            screened = complete and all(k in results for k in keys)
            new = self.fidelity.promote_more(keys, results, self.domain.objectives, cap, already, screened)
            if new:
                already.extend(new)
                changed = True
            complete = screened or (complete and len(already) >= cap)
            promoted = set(already)
            keys = [k for k in keys if k in promoted]
        if changed:
            self.store.put_meta(_promotions_meta(self.generation + 1), {str(f): list(v) for f, v in self._promotions.items()})

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
        self._promotions = {}
        if self.fidelity is not None and self.fidelity.asynchronous:
            self._promote()  # offspring screened in an earlier generation count as done

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
            if self.fidelity is not None and self.fidelity.asynchronous and self._batch is not None:
                self._promote()
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
        missing, done = self._open()
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
        self._prune_artifacts()
        return self._summary(record)

    def _prune_artifacts(self) -> None:
        """Delete the artifact folders of evaluations off the front, where the domain asks for it
        (`Domain.prunes_artifacts`): a front member's are what `finalize` and export read."""
        if self.layout is None or not self.domain.prunes_artifacts():
            return
        front = set(front_keys(self._evaluations, self.domain.objectives)[0])
        for key in self._evaluations.keys() - front - self._pruned:
            shutil.rmtree(self.layout.artifact_dir(key), ignore_errors=True)
            self._pruned.add(key)

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
        screening = self.domain.screening_identity() if identity is not None else {}
        executor.start(domain_spec(self.domain, self.layout))
        cut = False  # the budget ran out inside a generation
        def stop() -> str | None:
            return self.stop_reason(self.finalize_reserve_s() if reserve_finalize else 0.0)

        out_of_budget = lambda: stop() is not None  # noqa: E731 - asked before each evaluation starts
        try:
            while not cut and (self._batch is not None or stop() is None):
                lookups = _lookup_identities(identity, executor) if identity is not None else []  # per generation: nodes may join
                issued: dict[tuple[str, float], Candidate] = {}
                fresh = functools.partial(self._hand_out, issued, lookups, cache, screening, callback)
                for task, evaluation in executor.evaluate(fresh(), stop=out_of_budget, wanted=fresh):
                    stored = self.tell(task.key, evaluation, task.fidelity)
                    if cache is not None and identity is not None:
                        key = cache_key(filed_identity(identity, stored), task.key, task.seed,
                                        _fidelity_record(task.fidelity, screening))
                        cache.put(key, stored, self.layout)
                    callback.on_evaluation(issued[(task.key, task.fidelity)], stored)
                cut = bool(self.ask())  # the budget ran out inside the generation; a resume with more budget goes on from it
                if not cut:
                    callback.on_generation(self.advance())
        finally:
            if owned:
                executor.close()
        self._prune_artifacts()  # a generation cut short by the budget too
        self.store.put_meta("finished", {"reason": stop(), "generations": self.generation + 1,
                                         "elapsed_s": self.elapsed_s, **({"stopped_in_generation": self.generation + 1} if cut else {})})
        return self.front()

    def _hand_out(
        self, issued: dict[tuple[str, float], Candidate], lookups: list[dict[str, Any]], cache: EvaluationCache | None,
        screening: Mapping[str, Any], callback: SearchCallback,
    ) -> list[EvalTask]:
        """The tasks of the generation's candidates that still need an evaluation (`ask`), less
        those the cache answers: a candidate not in ``issued`` yet is looked up once (and added
        there), a hit is told at once, and since telling can promote others, `ask` is asked
        again until no new candidate is a hit."""
        while True:
            pending = self.ask()
            new = [c for c in pending if (c.key, c.fidelity) not in issued]
            issued.update(((c.key, c.fidelity), c) for c in new)
            hits = 0
            for c in new:
                hit = None
                if cache is not None and lookups:
                    record = _fidelity_record(c.fidelity, screening)
                    keys = (cache_key(i, c.key, c.seed, record) for i in lookups)
                    hit = next((e for e in (cache.get(k, self.layout, c.key) for k in keys) if e is not None), None)
                if hit is not None:
                    hits += 1
                    callback.on_evaluation(c, self.tell(c.key, hit, c.fidelity))
            if not hits:
                return self.tasks(pending)

    # ----------------------------------------------------------------- minimizing members
    def minimize(
        self, executor: Executor, members: list[str], *, tolerance: float = DEFAULT_TOLERANCE,
        budget: Termination | None = None, callback: SearchCallback | None = None,
    ) -> list[dict[str, Any]]:
        """Remove what buys nothing from each of ``members`` (keys of stored evaluations) with
        `evoforge.search.minimize.Minimization`, evaluating on ``executor`` (started here, not
        closed). Every shorter genome evaluated is told to the run like a search candidate (so it
        joins the front where it is not dominated), marked with `MINIMIZED_METRIC`; a genome the
        run holds already is not evaluated again. ``budget`` (its evaluations and seconds count
        this minimization's, the members' re-evaluations included) stops further evaluations from
        starting; the running ones finish. Returns one `Minimization.record` per member, also
        stored in the run's ``minimized`` meta (a later minimization of the same member replaces its record)."""
        callback = callback or SearchCallback()
        runs = []
        for key in dict.fromkeys(members):
            genome = genome_from_json(self.store.genome(key))
            evaluation = self._evaluations[key]
            runs.append(Minimization(key, genome, self.domain.parts(genome), self.domain.keep_parts, self.domain.objectives,
                                     timed=self.domain.timed_objectives, tolerance=tolerance,
                                     feasible=evaluation.ok and violation(evaluation.constraints) <= 0))
        member_keys = {run.key for run in runs}
        requesters: dict[tuple[str, bool], list[tuple[Minimization, Request]]] = {}

        def fresh() -> list[EvalTask]:
            """Every request still waiting for an evaluation, once each (the executor does not start
            a running task again), less those the run's store answers (told at once)."""
            while True:
                tasks: dict[tuple[str, bool], EvalTask] = {}
                answered = False
                for run in runs:
                    for request in run.wanted():
                        ident = (request.key, request.reference)
                        if not request.reference and request.key in self._evaluations:
                            run.tell(request, self._evaluations[request.key])
                            answered = True
                            continue
                        if (run, request) not in requesters.setdefault(ident, []):
                            requesters[ident].append((run, request))
                        tasks.setdefault(ident, self._minimize_task(request))
                if not answered:
                    return list(tasks.values())

        started, done = time.monotonic(), 0

        def stop() -> bool:
            return budget is not None and budget.reason(evaluations=done, seconds=time.monotonic() - started, generations=0,
                                                        hypervolumes=[]) is not None

        executor.start(domain_spec(self.domain, self.layout))
        for task, evaluation in executor.evaluate(fresh(), stop=stop, wanted=fresh):
            done += 1
            reference = task.key in member_keys  # a shorter genome never has a member's key: the store answers those
            if not reference:
                origin = requesters[(task.key, False)][0][0].key  # the (first) member it was made from
                self.store.put_genome(task.key, task.genome_json)
                evaluation = self.tell(task.key, dataclasses.replace(evaluation, metrics={**evaluation.metrics, MINIMIZED_METRIC: origin}))
                candidate = Candidate(task.key, genome_from_json(task.genome_json), task.seed, "minimize", origin, self.generation + 1)
                callback.on_evaluation(candidate, evaluation)
            for run, request in requesters.pop((task.key, reference)):
                run.tell(request, evaluation)
        self._prune_artifacts()
        records = [run.record() for run in runs]
        stored_records = dict(self.store.meta(MINIMIZED_META, {}) or {})
        stored_records.update({r["member"]: r for r in records})
        self.store.put_meta(MINIMIZED_META, stored_records)
        return records

    def _minimize_task(self, request: Request) -> EvalTask:
        """The executor task of a minimization request: a shorter genome keeps its artifacts like a
        search candidate; the member's re-evaluation writes none (they are the member's already)."""
        artifacts = str(self.layout.artifact_dir(request.key)) if self.layout is not None and not request.reference else None
        return EvalTask(request.key, request.genome.to_json(), candidate_seed(self.seed, request.key), artifacts, 1.0)

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


def _key(offspring: Offspring) -> str:
    return offspring.genome.content_hash


def _promotions_meta(generation: int) -> str:
    """The store's meta key of a generation's asynchronous promotions."""
    return f"promotions/{generation}"


def _fidelity_record(fraction: float, screening: Mapping[str, Any]) -> dict[str, Any] | None:
    """The fidelity part of an evaluation's cache key: None at full fidelity, else the fraction
    and what a screening means in the domain (`Domain.screening_identity`)."""
    return {"fraction": fraction, **screening} if fraction < 1.0 else None


def _rng_state(rng: np.random.Generator) -> dict[str, Any]:
    return dict(rng.bit_generator.state)


def _set_rng_state(rng: np.random.Generator, state: dict[str, Any]) -> None:
    if state.get("bit_generator") != type(rng.bit_generator).__name__:
        raise ConfigError(f"stored RNG is {state.get('bit_generator')}, expected {type(rng.bit_generator).__name__}")
    rng.bit_generator.state = state
