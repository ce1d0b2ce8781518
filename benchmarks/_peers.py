"""Peers on evoforge's own genome space, for `benchmarks/peers.py`: Optuna's samplers behind
evoforge's algorithm interface (so domain, executor, store and measurements are the same), and
the fixed hand recipes a user would try first. Benchmark code, not part of evoforge."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from evoforge.compression.domain import hand_recipes
from evoforge.compression.genome import PipelineGenome, Stage
from evoforge.compression.operators import SearchSpace
from evoforge.genome import ParamSpec
from evoforge.pareto import Objective, non_dominated_sort
from evoforge.search.algorithms import ALGORITHMS, Algorithm, Individual, Offspring
from evoforge.search.algorithms.base import IsNew, merge_unique, scores
from evoforge.search.domain import Domain
from evoforge.workload.recipe import CLASSIFICATION_LOSSES, REGRESSION_LOSSES, TRAINING_SPACE, TrainingSettings

MAX_SLOTS = 4


def _suggest(trial: Any, name: str, spec: ParamSpec) -> Any:
    if spec.kind == "float":
        return round(trial.suggest_float(name, spec.low, spec.high), 4)
    if spec.kind == "log":
        return float(f"{trial.suggest_float(name, spec.low, spec.high, log=True):.4g}")
    if spec.kind == "int":
        return trial.suggest_int(name, int(spec.low), int(spec.high))
    if spec.kind == "bool":
        return trial.suggest_categorical(name, [False, True])
    return trial.suggest_categorical(name, list(spec.choices))


def genome_from_trial(trial: Any, space: SearchSpace, task_type: str) -> PipelineGenome:
    """A pipeline genome from an Optuna trial (define-by-run over the same space the domain's
    operators draw from: stage count, kinds, their settings, training settings)."""
    n = trial.suggest_int("stages", 0, MAX_SLOTS)
    stages = []
    for i in range(n):
        last = i == n - 1
        kinds = [k for k in space.kinds if k != "quantize" or last]
        kind = trial.suggest_categorical(f"s{i}of{n}_kind", kinds)  # the choices depend on the slot: one name each
        params = {spec.name: _suggest(trial, f"s{i}of{n}_{kind}_{spec.name}", spec) for spec in space.stage_space(kind)}
        stages.append(Stage.make(kind, **params))
    losses = CLASSIFICATION_LOSSES if task_type == "classification" else REGRESSION_LOSSES
    training = {}
    for spec in TRAINING_SPACE:
        if spec.name == "loss":
            training["loss"] = trial.suggest_categorical("t_loss", list(losses))
        else:
            training[spec.name] = _suggest(trial, f"t_{spec.name}", spec)
    return space.fit(PipelineGenome(tuple(stages), TrainingSettings(**training)))


class OptunaSampler(Algorithm):
    """Optuna's study asks, evoforge evaluates, Optuna is told: ``offspring_size`` trials at a
    time (as many as workers run at once), the quality constraint through ``Trial.set_constraint``."""

    sampler = "nsga2"

    def __init__(self, *, pop_size: int = 10, offspring_size: int | None = 2) -> None:
        super().__init__(pop_size=pop_size, offspring_size=offspring_size)
        self._study: Any = None
        self._pending: dict[str, Any] = {}

    def _make_study(self, objectives: Sequence[Objective], seed: int) -> Any:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        if self.sampler == "nsga2":
            sampler = optuna.samplers.NSGAIISampler(population_size=self.pop_size, seed=seed)
        else:
            sampler = optuna.samplers.TPESampler(seed=seed, multivariate=True)
        return optuna.create_study(directions=[o.direction for o in objectives], sampler=sampler)

    def initial(self, domain: Domain, rng: np.random.Generator, is_new: IsNew, size: int | None = None) -> list[Offspring]:
        self._study = self._make_study(domain.objectives, int(rng.integers(2**31)))
        return self.ask([], domain, rng, size or self.offspring_size, is_new)

    def ask(self, population: Sequence[Individual], domain: Domain, rng: np.random.Generator, count: int,
            is_new: IsNew) -> list[Offspring]:
        space, task_type = domain.space, domain.task.task_type  # type: ignore[attr-defined]
        out = []
        for _ in range(count):
            trial = self._study.ask()
            genome = genome_from_trial(trial, space, task_type)
            self._pending.setdefault(genome.content_hash, []).append(trial)
            out.append(Offspring(genome, f"optuna-{self.sampler}"))
        return out

    def select(self, population: Sequence[Individual], offspring: Sequence[tuple[Offspring, Individual]],
               objectives: Sequence[Objective], reference: np.ndarray | None) -> list[Individual]:
        from evoforge.pareto import violation

        for made, ind in offspring:
            for trial in self._pending.pop(made.genome.content_hash, []):
                if ind.evaluation.ok:
                    trial.set_constraint("quality", violation(ind.evaluation.constraints))
                    self._study.tell(trial, [ind.evaluation.objectives[o.name] for o in objectives])
                else:
                    self._study.tell(trial, state=__import__("optuna").trial.TrialState.FAIL)
        merged = merge_unique(population, [ind for _, ind in offspring])
        F, cv = scores(merged, objectives)
        order = [i for front in non_dominated_sort(F, cv) for i in front]
        return [merged[i] for i in order[: self.pop_size]]


class OptunaNSGA2(OptunaSampler):
    name = "optuna-nsga2"
    sampler = "nsga2"


class OptunaTPE(OptunaSampler):
    name = "optuna-tpe"
    sampler = "tpe"


class HandRecipes(Algorithm):
    """The fixed pipelines a user would try first (`hand_recipes` that the run's space allows, in
    its canonical form, so a petra run with the same seed evaluates the very same genomes),
    evaluated once each."""

    name = "recipes"

    def initial(self, domain: Domain, rng: np.random.Generator, is_new: IsNew, size: int | None = None) -> list[Offspring]:
        canonical, allows = domain.operators.canonical, domain.space.allows  # type: ignore[attr-defined]
        recipes = {label: canonical(g) for label, g in hand_recipes(domain.task.training).items()}  # type: ignore[attr-defined]
        return [Offspring(g, label) for label, g in recipes.items() if allows(g)]

    def ask(self, population: Sequence[Individual], domain: Domain, rng: np.random.Generator, count: int,
            is_new: IsNew) -> list[Offspring]:
        return []

    def select(self, population: Sequence[Individual], offspring: Sequence[tuple[Offspring, Individual]],
               objectives: Sequence[Objective], reference: np.ndarray | None) -> list[Individual]:
        return merge_unique(population, [ind for _, ind in offspring])


RECIPE_NAMES = tuple(hand_recipes(TrainingSettings()))

for _cls in (OptunaNSGA2, OptunaTPE, HandRecipes):
    if _cls.name not in ALGORITHMS:
        ALGORITHMS.add(_cls.name, _cls)
