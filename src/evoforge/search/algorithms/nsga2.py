"""NSGA-II (Deb et al. 2002): binary tournament on (rank, crowding), variation, elitist
(mu + lambda) survival by non-dominated rank and crowding distance."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from evoforge.pareto import Objective, crowding_distance, non_dominated_sort
from evoforge.search.algorithms.base import (
    Algorithm,
    Individual,
    IsNew,
    Offspring,
    binary_tournament,
    merge_unique,
    rank_and_crowding,
    scores,
    unique_child,
)
from evoforge.search.domain import Domain


class NSGA2(Algorithm):
    """Crossover plus mutation when the domain offers crossover, mutation alone otherwise.
    Mutation operators are drawn uniformly from the domain's registry."""

    name = "nsga2"

    def __init__(self, *, pop_size: int = 20, offspring_size: int | None = None, initial_size: int | None = None) -> None:
        super().__init__(pop_size=pop_size, offspring_size=offspring_size, initial_size=initial_size)
        self._rank = np.zeros(0, dtype=int)
        self._crowd = np.zeros(0)

    def ask(
        self, population: Sequence[Individual], domain: Domain, rng: np.random.Generator, count: int, is_new: IsNew
    ) -> list[Offspring]:
        if len(self._rank) != len(population):  # e.g. right after resume
            self._rank, self._crowd = rank_and_crowding(*scores(population, domain.objectives))
        names = sorted(domain.mutations)
        out: list[Offspring] = []
        batch: set[str] = set()
        pending: list[Offspring] = []

        def make() -> Offspring:
            if pending:
                return pending.pop()
            p1 = population[binary_tournament(rng, self._rank, self._crowd)]
            op = names[int(rng.integers(len(names)))]
            if domain.has_crossover:
                p2 = population[binary_tournament(rng, self._rank, self._crowd)]
                c1, c2 = domain.crossover(p1.genome, p2.genome, rng)
                op2 = names[int(rng.integers(len(names)))]
                pending.append(Offspring(domain.mutations[op2](c2, rng), f"crossover+{op2}", p2.key))
                return Offspring(domain.mutations[op](c1, rng), f"crossover+{op}", p1.key)
            return Offspring(domain.mutations[op](p1.genome, rng), op, p1.key)

        while len(out) < count:
            out.append(unique_child(make, is_new, batch))
        return out

    def select(
        self,
        population: Sequence[Individual],
        offspring: Sequence[tuple[Offspring, Individual]],
        objectives: Sequence[Objective],
        reference: np.ndarray | None,
    ) -> list[Individual]:
        merged = merge_unique(population, [ind for _, ind in offspring])
        F, cv = scores(merged, objectives)
        chosen: list[int] = []
        for front in non_dominated_sort(F, cv):
            if len(chosen) + len(front) <= self.pop_size:
                chosen.extend(front.tolist())
                continue
            crowd = crowding_distance(F[front]) if np.all(np.isfinite(F[front])) else np.zeros(len(front))
            order = np.argsort(-crowd, kind="stable")
            chosen.extend(front[order[: self.pop_size - len(chosen)]].tolist())
            break
        survivors = [merged[i] for i in chosen]
        self._rank, self._crowd = rank_and_crowding(*scores(survivors, objectives))
        return survivors

