import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from evoforge.pareto import Objective, hv_contributions, hypervolume, normalize, reference_point, violation


def brute_force_hv(F, ref):
    """Inclusion-exclusion over all subsets (exact for small sets)."""
    pts = [p for p in F if np.all(p < ref)]
    total = 0.0
    for k in range(1, len(pts) + 1):
        for subset in itertools.combinations(pts, k):
            corner = np.max(subset, axis=0)
            total += (-1) ** (k + 1) * float(np.prod(ref - corner))
    return total


sets = st.integers(2, 4).flatmap(
    lambda m: arrays(np.float64, st.tuples(st.integers(1, 7), st.just(m)), elements=st.integers(0, 24).map(lambda v: v / 20))
)


@settings(max_examples=80, deadline=None)
@given(sets)
def test_hypervolume_matches_inclusion_exclusion(F):
    ref = np.ones(F.shape[1])
    assert hypervolume(F, ref) == pytest.approx(brute_force_hv(F, ref), abs=1e-9)


@settings(max_examples=60, deadline=None)
@given(sets)
def test_contribution_is_hv_loss_without_the_point(F):
    ref = np.ones(F.shape[1])
    F = np.unique(F, axis=0)
    contrib = hv_contributions(F, ref)
    total = hypervolume(F, ref)
    for i in range(len(F)):
        without = np.delete(F, i, axis=0)
        assert contrib[i] == pytest.approx(total - hypervolume(without, ref), abs=1e-9)


def test_known_values():
    assert hypervolume(np.array([[0.5, 0.5]]), np.array([1.0, 1.0])) == pytest.approx(0.25)
    assert hypervolume(np.array([[1.0, 2.0], [2.0, 1.0]]), np.array([3.0, 3.0])) == pytest.approx(3.0)
    assert hypervolume(np.array([[0.0, 0.0, 0.0]]), np.array([2.0, 2.0, 2.0])) == pytest.approx(8.0)
    assert hypervolume(np.zeros((1, 4)), np.full(4, 0.5)) == pytest.approx(0.0625)
    # ZDT1's true front x in [0,1], f2 = 1 - sqrt(f1): HV against (1.1, 1.1) is 1.21 - 1/3
    x = np.linspace(0, 1, 5001)
    assert hypervolume(np.c_[x, 1 - np.sqrt(x)], np.array([1.1, 1.1])) == pytest.approx(1.21 - 1 / 3, abs=1e-3)


def test_points_outside_reference_count_nothing():
    F = np.array([[0.5, 0.5], [2.0, 0.1], [np.inf, 0.0]])
    assert hypervolume(F, np.array([1.0, 1.0])) == pytest.approx(0.25)
    assert hv_contributions(F, np.array([1.0, 1.0])).tolist() == [0.25, 0.0, 0.0]


def test_objective_direction_and_reference():
    objs = [Objective("acc", "maximize", reference=0.5), Objective("lat", reference=2.0)]
    assert objs[0].to_min(0.9) == -0.9
    assert reference_point(objs).tolist() == [-0.5, 2.0]
    assert reference_point([Objective("a")]) is None
    with pytest.raises(ValueError, match="direction"):
        Objective("x", "up")  # type: ignore[arg-type]


def test_normalize_and_violation():
    assert normalize(3.0, 2.0, "ratio") == 1.5
    assert normalize(3.0, 2.0, "delta") == 1.0
    assert normalize(1.0, -2.0, "relative") == 1.5
    with pytest.raises(ValueError, match="baseline of 0"):
        normalize(1.0, 0.0, "ratio")
    assert violation({"a": -1.0, "b": 0.5, "c": 2.0}) == 2.5
    assert violation([float("nan")]) == float("inf")


def test_one_objective():
    ref = np.array([1.0])
    assert hypervolume(np.array([[0.25], [0.5], [2.0]]), ref) == pytest.approx(0.75)
    assert hv_contributions(np.array([[0.5], [0.25], [0.75], [2.0]]), ref).tolist() == pytest.approx([0, 0.25, 0, 0])
    assert hv_contributions(np.array([[0.25], [0.25], [0.5]]), ref).tolist() == [0, 0, 0]  # tied best: removing one loses nothing
    assert hv_contributions(np.array([[0.4]]), ref).tolist() == pytest.approx([0.6])
    assert hv_contributions(np.array([[1.5]]), ref).tolist() == [0]


def test_objective_names_are_checked():
    from evoforge.errors import ConfigError
    from evoforge.pareto import objective_names

    valid = ["error", "runtime_ratio", "size_ratio"]
    assert objective_names(["size_ratio", "error"], valid) == ["size_ratio", "error"]
    assert objective_names("size_ratio, runtime_ratio", valid) == ["size_ratio", "runtime_ratio"]  # a config file's string
    for value, message in [([], "give at least one objective; valid names: error, runtime_ratio, size_ratio"),
                           (["speed"], "unknown objective 'speed'; valid names: error"),
                           ("error,error", "objective 'error' is listed twice"),
                           (5, "objectives must be a list of names, got 5")]:
        with pytest.raises(ConfigError, match=message):
            objective_names(value, valid)
