"""The algorithm interface: generational ask (variation) and select (survival).

An algorithm never evaluates and never touches storage: the engine hands it evaluated
individuals and an RNG, and persists whatever `state` returns.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np

from evoforge.errors import ConfigError
from evoforge.genome import Genome
from evoforge.pareto import Objective, crowding_distance, non_dominated_sort, to_min_matrix, violation
from evoforge.search.domain import Domain
from evoforge.search.evaluation import Evaluation

WARM_START = "warm_start"
"""The operator label of a first-generation genome that is one of `Domain.warm_starts` (other
first-generation genomes are labelled ``initial``)."""
MAX_DUPLICATE_RETRIES = 20


@dataclasses.dataclass(frozen=True)
class Individual:
    """An evaluated genome."""

    genome: Genome
    evaluation: Evaluation

    @property
    def key(self) -> str:
        return self.genome.content_hash


@dataclasses.dataclass(frozen=True)
class Offspring:
    """A genome proposed by `Algorithm.ask`, with how it was made (for operator adaptation)."""

    genome: Genome
    operator: str
    parent: str | None = None


IsNew = Callable[[Genome], bool]


def scores(individuals: Sequence[Individual], objectives: Sequence[Objective]) -> tuple[np.ndarray, np.ndarray]:
    """(F, CV): the minimization matrix and total constraint violation. Failed evaluations get
    F = +inf and CV = +inf so every OK result ranks above them."""
    F = to_min_matrix(objectives, [ind.evaluation.objectives if ind.evaluation.ok else {} for ind in individuals])
    cv = np.array([violation(ind.evaluation.constraints) if ind.evaluation.ok else np.inf for ind in individuals])
    return F, cv


def working_reference(F: np.ndarray, reference: np.ndarray | None) -> np.ndarray:
    """``reference`` if given, else the finite nadir pushed out by 10% of the range (or 1)."""
    if reference is not None:
        return reference
    finite = F[np.all(np.isfinite(F), axis=1)]
    if len(finite) == 0:
        return np.ones(F.shape[1])
    lo, hi = finite.min(axis=0), finite.max(axis=0)
    span = hi - lo
    ref: np.ndarray = hi + np.where(span > 0, 0.1 * span, 1.0)
    return ref


def rank_and_crowding(F: np.ndarray, cv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-row front rank and crowding distance within its front."""
    rank = np.empty(len(F), dtype=int)
    crowd = np.empty(len(F))
    for r, front in enumerate(non_dominated_sort(F, cv)):
        rank[front] = r
        crowd[front] = crowding_distance(F[front]) if np.all(np.isfinite(F[front])) else 0.0
    return rank, crowd


def binary_tournament(rng: np.random.Generator, rank: np.ndarray, score: np.ndarray) -> int:
    """Index of the winner of a random pair: lower rank wins, then higher score, then a coin flip."""
    a, b = rng.integers(len(rank), size=2)
    if rank[a] != rank[b]:
        return int(a if rank[a] < rank[b] else b)
    if score[a] != score[b]:
        return int(a if score[a] > score[b] else b)
    return int(a if rng.random() < 0.5 else b)


class Algorithm(abc.ABC):
    """Base of all search algorithms.

    Contract: `initial` and `ask` return new offspring using only ``rng`` for randomness (so a
    run replays identically from a stored RNG state); `select` returns the survivors and may
    update internal statistics from the offspring it was told about; `state`/`load_state` round
    trip that statistics as JSON.
    """

    name: ClassVar[str]
    initial_factor: ClassVar[int] = 1
    """The first generation's size as a multiple of ``pop_size`` when ``initial_size`` is not given."""

    def __init__(self, *, pop_size: int = 20, offspring_size: int | None = None, initial_size: int | None = None) -> None:
        if pop_size < 2:
            raise ConfigError(f"pop_size must be at least 2, got {pop_size}")
        self.pop_size = pop_size
        self.offspring_size = offspring_size or pop_size
        if self.offspring_size < 1:
            raise ConfigError(f"offspring_size must be at least 1, got {self.offspring_size}")
        self.initial_size = initial_size or self.initial_factor * pop_size
        if self.initial_size < 1:
            raise ConfigError(f"initial_size must be at least 1, got {self.initial_size}")

    def config(self) -> dict[str, Any]:
        return {"pop_size": self.pop_size, "offspring_size": self.offspring_size, "initial_size": self.initial_size}

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> Algorithm:
        """The algorithm a stored `config` describes (an option that gained a default since
        older runs were stored takes the value those runs ran with)."""
        return cls(**options)

    def initial(self, domain: Domain, rng: np.random.Generator, is_new: IsNew, size: int | None = None) -> list[Offspring]:
        """The first generation: ``size`` (default ``initial_size``) genomes of the domain's
        initial population, without duplicates (survival then keeps the best ``pop_size``);
        the domain's warm starts among them are labelled `WARM_START`."""
        known = {g.content_hash for g in domain.warm_starts()}
        out: list[Offspring] = []
        seen: set[str] = set()
        for genome in domain.initial_population(rng, size or self.initial_size):
            if genome.content_hash not in seen:
                seen.add(genome.content_hash)
                out.append(Offspring(genome, WARM_START if genome.content_hash in known else "initial"))
        return out

    @abc.abstractmethod
    def ask(
        self,
        population: Sequence[Individual],
        domain: Domain,
        rng: np.random.Generator,
        count: int,
        is_new: IsNew,
    ) -> list[Offspring]:
        """``count`` offspring from the current population."""

    @abc.abstractmethod
    def select(
        self,
        population: Sequence[Individual],
        offspring: Sequence[tuple[Offspring, Individual]],
        objectives: Sequence[Objective],
        reference: np.ndarray | None,
    ) -> list[Individual]:
        """The next population (at most ``pop_size``) from parents plus evaluated offspring."""

    def observe(self, evaluated: Sequence[Individual]) -> None:
        """Told each generation's evaluated offspring once, before `select`, in the order they
        were asked for; a resumed run replays every stored generation through it before
        `load_state`. The default ignores them."""

    def operator_rates(self) -> dict[str, float] | None:
        """Current operator probabilities, for algorithms that adapt them."""
        return None

    def state(self) -> dict[str, Any]:
        return {}

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore what `state` returned."""


def unique_child(make: Callable[[], Offspring], is_new: IsNew, batch: set[str]) -> Offspring:
    """Call ``make`` until it yields a genome not evaluated before and not already in ``batch``
    (at most `MAX_DUPLICATE_RETRIES` tries; the last try is returned regardless and the engine
    then reuses the stored evaluation)."""
    child = make()
    for _ in range(MAX_DUPLICATE_RETRIES):
        if child.genome.content_hash not in batch and is_new(child.genome):
            break
        child = make()
    batch.add(child.genome.content_hash)
    return child


def merge_unique(population: Sequence[Individual], children: Sequence[Individual]) -> list[Individual]:
    """Parents then children, dropping repeated genomes (first occurrence wins)."""
    seen: set[str] = set()
    out: list[Individual] = []
    for ind in list(population) + list(children):
        if ind.key not in seen:
            seen.add(ind.key)
            out.append(ind)
    return out
