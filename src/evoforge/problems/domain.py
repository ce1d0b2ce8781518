"""ZDT1, ZDT2, ZDT3 (two objectives) and DTLZ2 (three objectives) as an evoforge domain."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import numpy as np

from evoforge.errors import ConfigError
from evoforge.genome import Genome, register_genome
from evoforge.pareto import Objective
from evoforge.problems.operators import polynomial_mutation, sbx_crossover
from evoforge.provenance import code_identity
from evoforge.registry import Registry
from evoforge.search.domain import Domain, EvalContext, Mutation, register_domain
from evoforge.search.evaluation import Evaluation, Status


@register_genome
@dataclasses.dataclass(frozen=True)
class RealVector(Genome):
    """A point in a box-bounded real search space."""

    TYPE = "real-vector"
    VERSION = 1

    values: tuple[float, ...] = ()


def _zdt_g(x: np.ndarray) -> float:
    return 1.0 + 9.0 * float(np.sum(x[1:])) / (len(x) - 1)


def zdt1(x: np.ndarray) -> list[float]:
    g = _zdt_g(x)
    return [float(x[0]), g * (1.0 - math.sqrt(x[0] / g))]


def zdt2(x: np.ndarray) -> list[float]:
    g = _zdt_g(x)
    return [float(x[0]), g * (1.0 - (x[0] / g) ** 2)]


def zdt3(x: np.ndarray) -> list[float]:
    g = _zdt_g(x)
    r = x[0] / g
    return [float(x[0]), g * (1.0 - math.sqrt(r) - r * math.sin(10.0 * math.pi * x[0]))]


def dtlz2(x: np.ndarray, n_obj: int = 3) -> list[float]:
    g = float(np.sum((x[n_obj - 1 :] - 0.5) ** 2))
    angles = x[: n_obj - 1] * math.pi / 2
    out = []
    for i in range(n_obj):
        f = 1.0 + g
        f *= float(np.prod(np.cos(angles[: n_obj - 1 - i])))
        if i > 0:
            f *= math.sin(angles[n_obj - 1 - i])
        out.append(f)
    return out


@dataclasses.dataclass(frozen=True)
class Problem:
    function: Callable[[np.ndarray], list[float]]
    n_var: int
    n_obj: int
    reference: float


PROBLEMS: Registry[Problem] = Registry("benchmark problem")
PROBLEMS.add("zdt1", Problem(zdt1, 30, 2, 1.1))
PROBLEMS.add("zdt2", Problem(zdt2, 30, 2, 1.1))
PROBLEMS.add("zdt3", Problem(zdt3, 30, 2, 1.1))
PROBLEMS.add("dtlz2", Problem(dtlz2, 12, 3, 1.1))


@register_domain
class BenchmarkDomain(Domain):
    """Variables in [0, 1]; objectives f1..fm minimized, hypervolume reference 1.1 in each.
    Operators: polynomial mutation (``polynomial``) and SBX crossover."""

    name = "benchmark"
    run_defaults: ClassVar[dict[str, Any]] = {"budget": 2000}

    def __init__(self, problem: str = "zdt1", n_var: int | None = None) -> None:
        self.problem_name = problem
        self.problem = PROBLEMS[problem]
        self.n_var = n_var or self.problem.n_var
        if self.n_var < self.problem.n_obj:
            raise ConfigError(f"{problem} needs at least {self.problem.n_obj} variables, got {self.n_var}")
        self.objectives = tuple(Objective(f"f{i + 1}", reference=self.problem.reference) for i in range(self.problem.n_obj))
        self.lower = np.zeros(self.n_var)
        self.upper = np.ones(self.n_var)
        self._mutations: Registry[Mutation] = Registry("mutation operator")
        self._mutations.add("polynomial", self._mutate)

    def config(self) -> dict[str, Any]:
        return {"problem": self.problem_name, "n_var": self.n_var}

    def cache_identity(self) -> dict[str, Any]:
        return {"domain": self.name, "config": self.config(), "code": code_identity(("numpy",))}

    @property
    def mutations(self) -> Mapping[str, Mutation]:
        return self._mutations

    def _mutate(self, genome: Genome, rng: np.random.Generator) -> Genome:
        x = np.array(_values(genome))
        return RealVector(tuple(float(v) for v in polynomial_mutation(x, self.lower, self.upper, rng)))

    def crossover(self, a: Genome, b: Genome, rng: np.random.Generator) -> tuple[Genome, Genome]:
        c1, c2 = sbx_crossover(np.array(_values(a)), np.array(_values(b)), self.lower, self.upper, rng)
        return RealVector(tuple(map(float, c1))), RealVector(tuple(map(float, c2)))

    def sample(self, rng: np.random.Generator) -> Genome:
        return RealVector(tuple(float(v) for v in rng.uniform(self.lower, self.upper)))

    def initial_population(self, rng: np.random.Generator, size: int) -> list[Genome]:
        return [self.sample(rng) for _ in range(size)]

    def evaluate(self, genome: Genome, context: EvalContext) -> Evaluation:
        x = np.array(_values(genome))
        if x.shape != (self.n_var,):
            raise ConfigError(f"genome has {x.size} variables, {self.problem_name} needs {self.n_var}")
        f = self.problem.function(x)
        return Evaluation(Status.OK, {o.name: v for o, v in zip(self.objectives, f)})


def _values(genome: Genome) -> tuple[float, ...]:
    if not isinstance(genome, RealVector):
        raise ConfigError(f"benchmark problems take real-vector genomes, got {genome.TYPE}")
    return genome.values
