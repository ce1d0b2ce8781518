"""Random sampling from the domain, with the same bookkeeping as the other algorithms
(a baseline to beat)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from evoforge.search.algorithms.base import Individual, IsNew, Offspring, unique_child
from evoforge.search.algorithms.nsga2 import NSGA2
from evoforge.search.domain import Domain


class RandomSearch(NSGA2):
    """Offspring are fresh `Domain.sample` draws; the population kept for reporting is the best
    ``pop_size`` by rank and crowding, exactly as NSGA-II keeps it."""

    name = "random"

    def initial(self, domain: Domain, rng: np.random.Generator, is_new: IsNew, size: int | None = None) -> list[Offspring]:
        return self.ask([], domain, rng, size or self.initial_size, is_new)

    def ask(
        self, population: Sequence[Individual], domain: Domain, rng: np.random.Generator, count: int, is_new: IsNew
    ) -> list[Offspring]:
        batch: set[str] = set()
        return [unique_child(lambda: Offspring(domain.sample(rng), "random"), is_new, batch) for _ in range(count)]

