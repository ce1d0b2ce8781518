"""PETRA's search: mutation-only (mu + lambda), survivors by non-dominated rank with ties broken
by exclusive hypervolume contribution (SMS-EMOA style), and operator probabilities adapted
from each operator's success rate, children by plain mutation (the paper's algorithm). With
``preselect`` > 1 each child is instead the best of ``preselect`` mutants by a density-ratio
model of all evaluations so far (`evoforge.search.surrogate`), once there are ``model_after`` of
them and the domain describes its genomes (`Domain.search_features`); an ``explore`` share of
the children skips the model and is a plain mutant, so that a setting the model has only seen
fail early is still tried now and then."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from evoforge.errors import ConfigError
from evoforge.pareto import Objective, domination_matrix, hv_contributions, non_dominated_sort
from evoforge.search.algorithms.base import (
    Algorithm,
    Individual,
    IsNew,
    Offspring,
    binary_tournament,
    merge_unique,
    scores,
    unique_child,
    working_reference,
)
from evoforge.search.domain import Domain
from evoforge.search.surrogate import DensityRatio, Features, good_mask


def adapted_rates(stats: dict[str, list[int]], floor: float) -> dict[str, float]:
    """p_o proportional to (s_o + 1) / (n_o + 2), then mixed with a uniform floor so every
    p_o >= ``floor`` and the rates sum to 1."""
    if not stats:
        return {}
    q = {op: (s + 1) / (n + 2) for op, (s, n) in stats.items()}
    total = sum(q.values())
    k = len(q)
    floor = min(floor, 1.0 / k)
    return {op: floor + (1.0 - k * floor) * v / total for op, v in sorted(q.items())}


def child_succeeds(child: Individual, parent: Individual | None, first: set[str], objectives: Sequence[Objective]) -> bool:
    """PETRA's credit rule: the child is a success when it dominates its parent, or when it is
    in the next population's first front (``first``) and its parent does not weakly dominate it."""
    if not child.evaluation.ok:
        return False
    if parent is None or not parent.evaluation.ok:
        return child.key in first
    F, cv = scores([child, parent], objectives)
    dominates_parent = bool(domination_matrix(F, cv)[0, 1])
    parent_weakly_dominates = cv[1] <= cv[0] and bool(np.all(F[1] <= F[0]))
    return dominates_parent or (child.key in first and not parent_weakly_dominates)


class Petra(Algorithm):
    """A child succeeds when it adds something its parent does not have: it dominates its
    parent, or it enters the first front of the next population without its parent weakly
    dominating it (a tie with the parent is no success). Each operator's success and trial
    counts accumulate over the run."""

    name = "petra"
    initial_factor = 2

    def __init__(
        self,
        *,
        pop_size: int = 12,
        offspring_size: int | None = None,
        initial_size: int | None = None,
        rate_floor: float = 0.05,
        preselect: int = 1,
        explore: float = 0.0,
        model_after: int = 10,
    ) -> None:
        super().__init__(pop_size=pop_size, offspring_size=offspring_size, initial_size=initial_size)
        if not 0.0 <= rate_floor <= 1.0:
            raise ConfigError(f"rate_floor must be in [0, 1], got {rate_floor}")
        if preselect < 1:
            raise ConfigError(f"preselect must be at least 1 (1: no pre-selection), got {preselect}")
        if isinstance(explore, bool) or not isinstance(explore, int | float) or not 0.0 <= explore <= 1.0:
            raise ConfigError(f"explore must be a share in [0, 1] (0: every child pre-selected), got {explore!r}")
        if explore > 0 and preselect == 1:
            raise ConfigError(f"explore={explore} has no effect without pre-selection; add preselect 8 (or any value above 1)")
        if model_after < 2:
            raise ConfigError(f"model_after must be at least 2 evaluations, got {model_after}")
        self.rate_floor = rate_floor
        self.preselect = preselect
        self.explore = float(explore)
        self.model_after = model_after
        self._archive: dict[str, Individual] = {}
        self._features: dict[str, Features] = {}
        self._stats: dict[str, list[int]] = {}
        self._rank = np.zeros(0, dtype=int)
        self._contrib = np.zeros(0)
        self._ranked_keys: list[str] = []
        self._reference: np.ndarray | None = None  # the one survival ranked with (kept so a resumed run ranks alike)

    def config(self) -> dict[str, Any]:
        return {**super().config(), "rate_floor": self.rate_floor, "preselect": self.preselect, "explore": self.explore,
                "model_after": self.model_after}

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> Petra:
        # runs stored before pre-selection (or its exploration share) existed ran without it
        return cls(**{"preselect": 1, "explore": 0.0, **options})

    def observe(self, evaluated: Sequence[Individual]) -> None:
        for ind in evaluated:
            self._archive.setdefault(ind.key, ind)

    def ask(
        self, population: Sequence[Individual], domain: Domain, rng: np.random.Generator, count: int, is_new: IsNew
    ) -> list[Offspring]:
        for op in domain.mutations:
            self._stats.setdefault(op, [0, 0])
        if self._ranked_keys != [ind.key for ind in population]:
            self._rank, self._contrib = self._rank_and_contribution(population, domain.objectives, self._reference)
            self._ranked_keys = [ind.key for ind in population]
        rates = adapted_rates(self._stats, self.rate_floor)
        names = list(rates)
        probs = np.array([rates[n] for n in names])
        batch: set[str] = set()

        def make() -> Offspring:
            parent = population[binary_tournament(rng, self._rank, self._contrib)]
            op = names[int(rng.choice(len(names), p=probs))]
            return Offspring(domain.mutations[op](parent.genome, rng), op, parent.key)

        model = self._model(domain) if self.preselect > 1 else None
        if model is None:
            return [unique_child(make, is_new, batch) for _ in range(count)]
        children = []
        for _ in range(count):
            if self.explore > 0.0 and rng.random() < self.explore:
                children.append(unique_child(make, is_new, batch))
                continue
            seen = set(batch)
            candidates = [unique_child(make, is_new, seen) for _ in range(self.preselect)]
            ranks = [model.score(domain.search_features(c.genome)) for c in candidates]
            child = candidates[int(np.argmax(ranks))]  # the first of the best on ties
            batch.add(child.genome.content_hash)
            children.append(child)
        return children

    def _model(self, domain: Domain) -> DensityRatio | None:
        """The density-ratio model of the archive, or None before ``model_after`` evaluations or
        when the domain gives no features."""
        if len(self._archive) < self.model_after:
            return None
        individuals = list(self._archive.values())
        features = []
        for ind in individuals:
            if ind.key not in self._features:
                self._features[ind.key] = domain.search_features(ind.genome)
            features.append(self._features[ind.key])
        if not any(features):
            return None
        F, cv = scores(individuals, domain.objectives)
        good = good_mask(F, cv)
        return DensityRatio([f for f, g in zip(features, good) if g], [f for f, g in zip(features, good) if not g])

    def select(
        self,
        population: Sequence[Individual],
        offspring: Sequence[tuple[Offspring, Individual]],
        objectives: Sequence[Objective],
        reference: np.ndarray | None,
    ) -> list[Individual]:
        merged = merge_unique(population, [ind for _, ind in offspring])
        F, cv = scores(merged, objectives)
        ref = working_reference(F, reference)
        chosen: list[int] = []
        for front in non_dominated_sort(F, cv):
            if len(chosen) + len(front) <= self.pop_size:
                chosen.extend(front.tolist())
                continue
            keep = list(front)
            while len(chosen) + len(keep) > self.pop_size:
                contrib = hv_contributions(F[keep], ref)
                keep.pop(int(np.argmin(contrib)))  # first of the smallest contributors
            chosen.extend(keep)
            break
        survivors = [merged[i] for i in chosen]
        self._reference = reference
        self._rank, self._contrib = self._rank_and_contribution(survivors, objectives, reference)
        self._ranked_keys = [ind.key for ind in survivors]
        self._update_stats(population, offspring, survivors, objectives)
        return survivors

    def _rank_and_contribution(
        self, individuals: Sequence[Individual], objectives: Sequence[Objective], reference: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        F, cv = scores(individuals, objectives)
        ref = working_reference(F, reference)
        rank = np.empty(len(F), dtype=int)
        contrib = np.zeros(len(F))
        for r, front in enumerate(non_dominated_sort(F, cv)):
            rank[front] = r
            contrib[front] = hv_contributions(F[front], ref)
        return rank, contrib

    def _update_stats(
        self,
        parents: Sequence[Individual],
        offspring: Sequence[tuple[Offspring, Individual]],
        survivors: Sequence[Individual],
        objectives: Sequence[Objective],
    ) -> None:
        by_key = {ind.key: ind for ind in parents}
        F, cv = scores(survivors, objectives)
        first = {survivors[i].key for i in non_dominated_sort(F, cv)[0]} if survivors else set()
        for made, child in offspring:
            if made.operator not in self._stats:
                continue
            self._stats[made.operator][0] += int(child_succeeds(child, by_key.get(made.parent or ""), first, objectives))
            self._stats[made.operator][1] += 1

    def operator_rates(self) -> dict[str, float]:
        return adapted_rates(self._stats, self.rate_floor)

    def operator_stats(self) -> dict[str, tuple[int, int]]:
        """Per operator: (successes, trials) so far."""
        return {op: (s, n) for op, (s, n) in sorted(self._stats.items())}

    def state(self) -> dict[str, Any]:
        reference = None if self._reference is None else self._reference.tolist()
        return {"stats": {op: list(v) for op, v in self._stats.items()}, "reference": reference}

    def load_state(self, state: dict[str, Any]) -> None:
        self._stats = {op: [int(s), int(n)] for op, (s, n) in state.get("stats", {}).items()}
        reference = state.get("reference")
        self._reference = None if reference is None else np.array(reference, dtype=float)
