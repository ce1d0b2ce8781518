"""Quality metrics computed from one inference pass, with their directions.

`score` turns raw model outputs (logits for classification, values for regression) into every
built-in metric of the task type at once. `METRICS` knows each metric's direction so that
`quality_drop` can say how much worse a candidate is than the baseline (positive = worse).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence

import numpy as np

from evoforge.registry import Registry

IGNORE_LABEL = -100
"""Class label of a position that does not count (losses and metrics skip it)."""

MetricFn = Callable[[np.ndarray, np.ndarray], float]


@dataclasses.dataclass(frozen=True)
class Metric:
    """A quality metric ``fn(y_true, y_pred) -> float``.

    ``y_pred`` is the predicted label per example for classification and the predicted value
    for regression. ``percent`` metrics live in [0, 1] and their absolute drop is given in points
    (100 x difference).
    """

    name: str
    task_type: str
    higher_is_better: bool
    fn: MetricFn
    percent: bool = False


def _accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(np.mean(y_true == y_pred))


def _macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Unweighted mean F1 over every class that occurs in ``y_true`` or ``y_pred``."""
    labels = np.union1d(y_true, y_pred)
    tp = np.array([np.sum((y_true == c) & (y_pred == c)) for c in labels], dtype=np.float64)
    support = np.array([np.sum(y_true == c) for c in labels], dtype=np.float64)
    predicted = np.array([np.sum(y_pred == c) for c in labels], dtype=np.float64)
    denom = support + predicted
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    return float(f1.mean())


def _rmse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(np.sqrt(np.mean((y_true - y_pred) ** 2)))


def _mae(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(np.mean(np.abs(y_true - y_pred)))


METRICS: Registry[Metric] = Registry("metric")
for _metric in (
    Metric("accuracy", "classification", True, _accuracy, percent=True),
    Metric("macro_f1", "classification", True, _macro_f1, percent=True),
    Metric("rmse", "regression", False, _rmse),
    Metric("mae", "regression", False, _mae),
):
    METRICS.add(_metric.name, _metric)


def predictions(y_pred_raw: np.ndarray, task_type: str) -> np.ndarray:
    """Raw outputs -> what metrics take: argmax labels of (N, ..., C) logits, or (N,) values.

    Raises ``ValueError`` when the output shape does not fit the task type.
    """
    y_pred_raw = np.asarray(y_pred_raw)
    if task_type == "classification":
        if y_pred_raw.ndim < 2:
            raise ValueError(f"classification outputs must be (N, ..., classes) scores, got shape {y_pred_raw.shape}")
        labels: np.ndarray = np.argmax(y_pred_raw, axis=-1)
        return labels
    if task_type == "regression":
        if y_pred_raw.ndim == 2 and y_pred_raw.shape[1] == 1:
            return y_pred_raw[:, 0]
        if y_pred_raw.ndim != 1:
            raise ValueError(f"regression outputs must have shape (N,), got {y_pred_raw.shape}")
        return y_pred_raw
    raise ValueError(f"task_type must be 'classification' or 'regression', got {task_type!r}")


def score(
    y_true: np.ndarray, y_pred_raw: np.ndarray, task_type: str, *, extra: Sequence[Metric] = ()
) -> dict[str, float]:
    """Every built-in metric of ``task_type`` (plus ``extra`` ones) from one array of raw outputs.

    Non-finite outputs give NaN for every metric, so a diverged candidate can never look good.
    """
    return score_batches([(y_true, y_pred_raw)], task_type, extra=extra)


def score_batches(
    batches: Iterable[tuple[np.ndarray, np.ndarray]], task_type: str, *, extra: Sequence[Metric] = ()
) -> dict[str, float]:
    """`score` over ``(targets, raw outputs)`` batches, keeping only each batch's predictions
    (labels for classification), so that raw outputs never pile up across batches."""
    metrics = [m for m in METRICS.values() if m.task_type == task_type] + list(extra)
    trues, preds, finite = [], [], True
    for y_true, y_pred_raw in batches:
        y_true, y_pred_raw = np.asarray(y_true), np.asarray(y_pred_raw)
        if len(y_true) != len(y_pred_raw):
            raise ValueError(f"{len(y_true)} targets but {len(y_pred_raw)} predictions; give one prediction per target")
        finite = finite and bool(np.all(np.isfinite(y_pred_raw)))
        if finite:
            preds.append(predictions(y_pred_raw, task_type))
        trues.append(y_true)
    if not finite:
        return {m.name: float("nan") for m in metrics}
    y_true, y_pred = np.concatenate(trues), np.concatenate(preds)
    if task_type == "classification" and y_true.ndim > 1:  # per-position labels: score the counted positions
        if y_pred.shape != y_true.shape:
            raise ValueError(f"outputs give labels of shape {y_pred.shape} for targets of shape {y_true.shape}")
        counted = y_true != IGNORE_LABEL
        y_true, y_pred = y_true[counted], y_pred[counted]
    return {m.name: float(m.fn(y_true, y_pred)) for m in metrics}


def constant_prediction_scores(y_true: np.ndarray, task_type: str) -> dict[str, float]:
    """Every built-in metric of ``task_type`` for the best constant prediction on ``y_true``: its
    most frequent class (counted positions only), or its mean value."""
    y = np.asarray(y_true)
    if task_type == "classification":
        y = y[y != IGNORE_LABEL] if y.ndim > 1 else y
        values, counts = np.unique(y, return_counts=True)
        constant = np.full_like(y, values[np.argmax(counts)]) if len(y) else y
    else:
        y = y.astype(np.float64).reshape(len(y))
        constant = np.full_like(y, y.mean() if len(y) else 0.0)
    return {m.name: float(m.fn(y, constant)) for m in METRICS.values() if m.task_type == task_type}


UNLEARNT_RMSE_SHARE = 0.95
"""A regression model whose RMSE is at least this share of the mean prediction's explains under
about 10% of the targets' variance."""


def learnt_nothing(values: dict[str, float], constant: dict[str, float], task_type: str, examples: int) -> str | None:
    """A sentence saying that a model with quality ``values`` on ``examples`` examples is no better
    than the constant prediction with quality ``constant`` (`constant_prediction_scores`), or None.
    Classification: accuracy within two standard errors of the most frequent class's share;
    regression: RMSE at least `UNLEARNT_RMSE_SHARE` of the mean prediction's."""
    if task_type == "classification" and "accuracy" in values and "accuracy" in constant:
        share = constant["accuracy"]
        margin = 2.0 * float(np.sqrt(share * (1.0 - share) / max(examples, 1)))
        if values["accuracy"] <= share + margin:
            return (f"accuracy {values['accuracy']:.3f} is no better than always predicting the most frequent class "
                    f"({share:.3f})")
    if task_type == "regression" and "rmse" in values and constant.get("rmse"):
        if values["rmse"] >= UNLEARNT_RMSE_SHARE * constant["rmse"]:
            return f"RMSE {values['rmse']:.4g} is no better than always predicting the mean ({constant['rmse']:.4g})"
    return None


def unlearnt_warning(subject: str, said: str | None) -> str | None:
    """The run's warning about ``subject`` (the baseline, the original program) when `learnt_nothing`
    ``said`` something, else None."""
    if not said:
        return None
    return (f"{subject}'s validation {said}: the model looks untrained or its data mislabelled, so the front's quality "
            "changes mean little; check the weights and the labels")


def quality_drop_of(direction: tuple[bool, bool], baseline_value: float, value: float, *, relative: bool) -> float:
    """How much worse ``value`` is than ``baseline_value`` for a measure with ``direction``
    (higher is better, percent): in points (x100) for percent measures, else in the measure's
    units; with ``relative``, in percent of ``|baseline_value|``."""
    higher_is_better, percent = direction
    metric = Metric("quality", "", higher_is_better, _accuracy, percent=percent)
    drop = quality_drop(metric, baseline_value, value, relative=relative)
    return drop * 100.0 if relative else drop


def quality_drop(metric: Metric | str, baseline_value: float, value: float, relative: bool = False) -> float:
    """How much worse ``value`` is than ``baseline_value`` (positive = worse, negative = better).

    Absolute: the difference oriented by the metric's direction, in points (x100) for percent
    metrics such as accuracy. Relative: that difference divided by ``|baseline_value|``
    (``inf`` when the baseline is 0 and the candidate is worse).
    """
    m = METRICS[metric] if isinstance(metric, str) else metric
    diff = (baseline_value - value) if m.higher_is_better else (value - baseline_value)
    if relative:
        if baseline_value == 0:
            return 0.0 if diff == 0 else float(np.sign(diff)) * float("inf")
        return diff / abs(baseline_value)
    return 100.0 * diff if m.percent else diff
