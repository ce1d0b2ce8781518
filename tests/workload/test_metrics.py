from __future__ import annotations

import math

import numpy as np
import pytest

from evoforge.errors import UnknownNameError
from evoforge.workload.metrics import IGNORE_LABEL, METRICS, Metric, quality_drop, score


def test_classification_scores_from_logits() -> None:
    y = np.array([0, 1, 2, 2])
    logits = np.eye(3)[[0, 1, 1, 2]] * 5.0  # one mistake: true 2 predicted 1
    s = score(y, logits, "classification")
    assert set(s) == {"accuracy", "macro_f1"}
    assert s["accuracy"] == pytest.approx(0.75)
    # per class F1: 1, 2/3, 2/3
    assert s["macro_f1"] == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)


def test_macro_f1_matches_sklearn() -> None:
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, 300)
    logits = rng.normal(size=(300, 6))  # predicts a class (5) that never occurs
    logits[np.arange(300), y] += rng.normal(1.0, 1.0, 300)
    s = score(y, logits, "classification")
    assert s["macro_f1"] == pytest.approx(sklearn_metrics.f1_score(y, logits.argmax(1), average="macro"))
    assert s["accuracy"] == pytest.approx(sklearn_metrics.accuracy_score(y, logits.argmax(1)))


def test_regression_scores_accept_n_and_n1() -> None:
    y = np.array([0.0, 1.0, 2.0, 3.0])
    pred = np.array([0.0, 1.0, 2.0, 5.0])
    s = score(y, pred, "regression")
    assert s == pytest.approx({"rmse": 1.0, "mae": 0.5})
    assert score(y, pred[:, None], "regression") == s


def test_non_finite_outputs_give_nan() -> None:
    logits = np.array([[np.nan, 0.0], [1.0, 0.0]])
    assert all(math.isnan(v) for v in score(np.array([0, 0]), logits, "classification").values())


def test_bad_shapes_raise() -> None:
    with pytest.raises(ValueError, match="classes"):
        score(np.array([0, 1]), np.array([0.2, 0.3]), "classification")
    with pytest.raises(ValueError, match="one prediction per target"):
        score(np.array([0, 1, 2]), np.zeros((2, 3)), "classification")
    with pytest.raises(ValueError, match=r"\(N,\)"):
        score(np.zeros(2), np.zeros((2, 3)), "regression")


def test_extra_metric_gets_labels() -> None:
    seen = {}

    def first_label(y_true: np.ndarray, y_pred: np.ndarray) -> float:
        seen["pred"] = y_pred
        return float(y_pred[0])

    extra = Metric("first", "classification", True, first_label)
    s = score(np.array([1, 0]), np.array([[0.0, 1.0], [1.0, 0.0]]), "classification", extra=[extra])
    assert s["first"] == 1.0 and list(seen["pred"]) == [1, 0]


def test_directions() -> None:
    assert METRICS["accuracy"].higher_is_better and METRICS["macro_f1"].higher_is_better
    assert not METRICS["rmse"].higher_is_better and not METRICS["mae"].higher_is_better
    with pytest.raises(UnknownNameError, match="accuracy"):
        METRICS["auc"]


def test_quality_drop_absolute_and_relative() -> None:
    assert quality_drop("accuracy", 0.95, 0.93) == pytest.approx(2.0)  # points
    assert quality_drop("accuracy", 0.95, 0.96) == pytest.approx(-1.0)
    assert quality_drop("accuracy", 0.90, 0.81, relative=True) == pytest.approx(0.1)
    assert quality_drop("rmse", 0.5, 0.6) == pytest.approx(0.1)  # higher error = worse
    assert quality_drop("rmse", 0.5, 0.4) == pytest.approx(-0.1)
    assert quality_drop("mae", 0.5, 0.6, True) == pytest.approx(0.2)
    custom = Metric("loss", "regression", False, lambda a, b: 0.0)
    assert quality_drop(custom, -2.0, -1.0, relative=True) == pytest.approx(0.5)
    assert quality_drop("mae", 0.0, 0.0, relative=True) == 0.0
    assert quality_drop("mae", 0.0, 0.1, relative=True) == math.inf


def test_a_constant_prediction_scores_the_majority_class_or_the_mean() -> None:
    from evoforge.workload.metrics import constant_prediction_scores

    labels = constant_prediction_scores(np.array([2, 2, 2, 0, 1]), "classification")
    assert labels["accuracy"] == pytest.approx(0.6)
    assert labels["macro_f1"] == pytest.approx((2 * 3 / (3 + 5)) / 3)  # class 2: tp 3, support 3, predicted 5
    per_position = constant_prediction_scores(np.array([[1, 1, IGNORE_LABEL], [0, 1, IGNORE_LABEL]]), "classification")
    assert per_position["accuracy"] == pytest.approx(0.75)  # the ignored positions do not count
    values = constant_prediction_scores(np.array([1.0, 3.0]), "regression")
    assert values == {"rmse": pytest.approx(1.0), "mae": pytest.approx(1.0)}


def test_a_model_no_better_than_a_constant_is_named_and_a_learnt_one_is_not() -> None:
    from evoforge.workload.metrics import learnt_nothing

    chance = {"accuracy": 0.1}
    said = learnt_nothing({"accuracy": 0.11}, chance, "classification", 300)
    assert said == "accuracy 0.110 is no better than always predicting the most frequent class (0.100)"
    assert learnt_nothing({"accuracy": 0.16}, chance, "classification", 300) is None  # 0.1 + 2 x 0.017 < 0.16
    assert learnt_nothing({"accuracy": 0.16}, chance, "classification", 30) is not None  # within noise on 30 examples
    assert learnt_nothing({"rmse": 0.97}, {"rmse": 1.0}, "regression", 100) is not None
    assert learnt_nothing({"rmse": 0.5}, {"rmse": 1.0}, "regression", 100) is None
    assert learnt_nothing({"score": 0.0}, chance, "classification", 100) is None  # a custom measure: nothing to compare
