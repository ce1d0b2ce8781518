import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from evoforge.pareto import (
    crowding_distance,
    dominates,
    first_front_mask,
    knee_point,
    non_dominated_sort,
    ranks,
)

matrices = st.integers(1, 4).flatmap(
    lambda m: arrays(np.float64, st.tuples(st.integers(1, 25), st.just(m)), elements=st.integers(0, 5).map(float))
)


def brute_force_ranks(F, cv=None):
    n = len(F)
    cv = np.zeros(n) if cv is None else cv

    def cdom(i, j):
        if cv[i] <= 0 and cv[j] <= 0:
            return dominates(F[i], F[j])
        if cv[i] <= 0 < cv[j]:
            return True
        if cv[j] <= 0 < cv[i]:
            return False
        return cv[i] < cv[j]

    rank = np.full(n, -1)
    remaining = set(range(n))
    r = 0
    while remaining:
        front = {i for i in remaining if not any(cdom(j, i) for j in remaining if j != i)}
        for i in front:
            rank[i] = r
        remaining -= front
        r += 1
    return rank


@settings(max_examples=150, deadline=None)
@given(matrices)
def test_sort_matches_brute_force(F):
    assert np.array_equal(ranks(F), brute_force_ranks(F))


@settings(max_examples=100, deadline=None)
@given(matrices, st.data())
def test_constrained_sort_matches_brute_force(F, data):
    cv = np.array(data.draw(st.lists(st.sampled_from([0.0, 0.0, 0.5, 1.0, 2.0]), min_size=len(F), max_size=len(F))))
    assert np.array_equal(ranks(F, cv), brute_force_ranks(F, cv))


@settings(max_examples=100, deadline=None)
@given(matrices)
def test_first_front_mask_matches_sort(F):
    expected = np.zeros(len(F), dtype=bool)
    expected[non_dominated_sort(F)[0]] = True
    assert np.array_equal(first_front_mask(F), expected)


def test_fronts_partition_all_points():
    F = np.random.default_rng(0).random((40, 3))
    fronts = non_dominated_sort(F)
    assert sorted(np.concatenate(fronts).tolist()) == list(range(40))


def test_feasible_beats_infeasible_even_if_worse():
    F = np.array([[5.0, 5.0], [0.0, 0.0]])
    assert ranks(F, np.array([0.0, 1.0])).tolist() == [0, 1]


def test_crowding_distance_known_values():
    F = np.array([[0.0, 4.0], [1.0, 2.0], [3.0, 1.0], [4.0, 0.0]])
    d = crowding_distance(F)
    assert np.isinf(d[0]) and np.isinf(d[3])
    assert d[1] == pytest.approx(3 / 4 + 3 / 4)
    assert d[2] == pytest.approx(3 / 4 + 2 / 4)


def test_knee_point_picks_the_bulge():
    F = np.array([[0.0, 1.0], [0.1, 0.1], [0.5, 0.45], [1.0, 0.0]])
    assert knee_point(F) == 1
