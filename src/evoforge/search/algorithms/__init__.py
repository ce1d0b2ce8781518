"""Search algorithms, by name: ``nsga2``, ``petra``, ``random``."""

from __future__ import annotations

from typing import Any

from evoforge.registry import Registry
from evoforge.search.algorithms.base import Algorithm, Individual, Offspring
from evoforge.search.algorithms.nsga2 import NSGA2
from evoforge.search.algorithms.petra import Petra, adapted_rates
from evoforge.search.algorithms.random_search import RandomSearch

ALGORITHMS: Registry[type[Algorithm]] = Registry("algorithm")
for _cls in (NSGA2, Petra, RandomSearch):
    ALGORITHMS.add(_cls.name, _cls)


def make_algorithm(name: str, **options: Any) -> Algorithm:
    """Build a registered algorithm; unknown names list the valid ones."""
    return ALGORITHMS[name](**options)


__all__ = ["ALGORITHMS", "NSGA2", "Algorithm", "Individual", "Offspring", "Petra", "RandomSearch", "adapted_rates", "make_algorithm"]
