"""Pareto utilities: objectives, dominance, sorting, crowding, hypervolume, knee point.

Pure numpy (+ moocore for exact hypervolume); no torch, no IREE.
"""

from evoforge.pareto.hypervolume import hv_contributions, hypervolume
from evoforge.pareto.objectives import (
    Objective,
    check_limit,
    normalize,
    objective_names,
    reference_point,
    to_min_matrix,
    violation,
)
from evoforge.pareto.sorting import (
    crowding_distance,
    dominates,
    domination_matrix,
    first_front_mask,
    knee_point,
    non_dominated_sort,
    ranks,
)

__all__ = [
    "Objective",
    "check_limit",
    "crowding_distance",
    "dominates",
    "domination_matrix",
    "first_front_mask",
    "hv_contributions",
    "hypervolume",
    "knee_point",
    "non_dominated_sort",
    "normalize",
    "objective_names",
    "ranks",
    "reference_point",
    "to_min_matrix",
    "violation",
]
