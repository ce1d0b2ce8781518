import numpy as np
import pytest

from evoforge.search.surrogate import DensityRatio, good_mask


def test_good_mask_takes_whole_fronts_then_the_largest_contributors():
    F = np.array([[0.0, 1.0], [1.0, 0.0], [0.5, 0.5], [2.0, 2.0], [0.6, 0.6], [np.inf, np.inf]])
    cv = np.array([0.0, 0.0, 0.0, 0.0, 0.0, np.inf])
    assert good_mask(F, cv, share=0.5).tolist() == [True, True, True, False, False, False]  # the first front, exactly 3
    two = good_mask(F, cv, share=1 / 3)
    assert two.sum() == 2 and not two[3] and not two[5]
    assert good_mask(F, cv, share=0.01).sum() == 1  # at least one


def test_infeasible_and_failed_rows_are_never_good_before_feasible_ones():
    F = np.array([[0.0, 0.0], [1.0, 1.0], [np.inf, np.inf]])
    cv = np.array([0.5, 0.0, np.inf])  # the best objectives, but infeasible
    assert good_mask(F, cv, share=0.3).tolist() == [False, True, False]


def test_density_ratio_prefers_what_the_good_evaluations_have():
    good = [{"mode": "static", "epochs": 18.0}, {"mode": "static", "epochs": 20.0}]
    bad = [{"mode": "dynamic", "epochs": 2.0}, {"mode": "dynamic", "epochs": 3.0}, {"mode": "static", "epochs": 1.0}]
    model = DensityRatio(good, bad)
    assert model.score({"mode": "static"}) > model.score({"mode": "dynamic"})
    assert model.score({"epochs": 19.0}) > model.score({"epochs": 2.0})
    assert model.score({"mode": "static", "epochs": 19.0}) > model.score({"mode": "static", "epochs": 2.0})
    assert model.score({"unknown": 1.0}) == 0.0  # a feature nobody has says nothing
    assert model.score({}) == 0.0


def test_a_value_never_seen_scores_between_the_good_and_the_bad():
    model = DensityRatio([{"kind": "a"}] * 3, [{"kind": "b"}] * 3)
    new = model.score({"kind": "c"})
    assert model.score({"kind": "b"}) < new < model.score({"kind": "a"})
    assert new == pytest.approx(0.0)


def test_a_feature_that_is_numeric_for_some_genomes_and_text_for_others_is_categorical():
    model = DensityRatio([{"x": 1.0}, {"x": "off"}], [{"x": 2.0}])
    assert model.score({"x": 1.0}) > model.score({"x": 2.0})
