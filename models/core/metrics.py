"""Point and interval forecast metrics as plain numpy functions.

Used by the backtest, the stream worker's rolling metrics and model evaluation alike, so that one
number means the same everywhere. Inputs are arrays of equal length; empty inputs give NaN.

Examples
--------
>>> import numpy as np
>>> actual, predicted = np.array([10.0, 11.0, 10.0]), np.array([10.5, 10.5, 10.5])
>>> naive = np.array([9.0, 10.0, 11.0])
>>> float(mae(actual, predicted)), float(mase(actual, predicted, naive))
(0.5, 0.5)
>>> float(directional_accuracy(actual, predicted, previous=naive))
1.0
>>> winkler(np.array([12.0]), np.array([10.0]), np.array([11.0]), 0.5).tolist()  # width 1 + (2 / 0.5) * 1
[5.0]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def _mean(values: np.ndarray) -> float:
    return float(np.mean(values)) if values.size else float("nan")


def mae(actual: np.ndarray, predicted: np.ndarray) -> float:
    """Mean absolute error."""
    return _mean(np.abs(actual - predicted))


def rmse(actual: np.ndarray, predicted: np.ndarray) -> float:
    """Root mean squared error."""
    return float(np.sqrt(_mean((actual - predicted) ** 2)))


def mape(actual: np.ndarray, predicted: np.ndarray) -> float:
    """Mean absolute percentage error, in percent (prices are positive)."""
    return 100.0 * _mean(np.abs(actual - predicted) / np.abs(actual))


def r2(actual: np.ndarray, predicted: np.ndarray) -> float:
    """Coefficient of determination of the predicted prices."""
    total = float(np.sum((actual - np.mean(actual)) ** 2)) if actual.size else 0.0
    return 1.0 - float(np.sum((actual - predicted) ** 2)) / total if total > 0 else float("nan")


def mase(actual: np.ndarray, predicted: np.ndarray, naive: np.ndarray) -> float:
    """MAE scaled by the naive forecast's MAE on the same days: below 1 beats naive."""
    scale = mae(actual, naive)
    return mae(actual, predicted) / scale if scale > 0 else float("nan")


def directional_accuracy(actual: np.ndarray, predicted: np.ndarray, previous: np.ndarray) -> float:
    """Share of the days that moved (actual != previous close) whose direction was predicted.

    A forecast of no move counts as wrong, so the naive forecast has none.
    """
    moved = actual != previous
    hits = np.sign(predicted[moved] - previous[moved]) == np.sign(actual[moved] - previous[moved])
    return _mean(hits.astype(float))


def inside(actual: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """Whether each actual lies in its closed interval."""
    return (lower <= actual) & (actual <= upper)


def coverage(actual: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> float:
    """Share of actuals inside their intervals."""
    return _mean(inside(actual, lower, upper).astype(float))


def mean_width(lower: np.ndarray, upper: np.ndarray) -> float:
    """Mean interval width."""
    return _mean(upper - lower)


def winkler(actual: np.ndarray, lower: np.ndarray, upper: np.ndarray,
            level: float | np.ndarray) -> np.ndarray:
    """Winkler (interval) score of each central interval at ``level``: width plus ``2 / (1 - level)``
    times the distance by which the actual falls outside. Lower is better. Arrays broadcast (e.g.
    ``[n, 1]`` actuals against ``[n, levels]`` bounds and ``[levels]`` levels)."""
    penalty = 2.0 / (1.0 - level)
    return (upper - lower) + penalty * (np.maximum(lower - actual, 0.0) + np.maximum(actual - upper, 0.0))


def summarize(scores: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Every metric of a set of score records (``schemas/score.schema.json``), model and naive.

    Keys: ``n``; ``mae``, ``rmse``, ``mape``, ``r2``, ``mase``, ``directional_accuracy`` of the
    model and the same with a ``naive_`` prefix for the naive forecast on the same days (but no
    naive directional accuracy: it never predicts a move); ``coverage_L``, ``mean_width_L`` and
    ``winkler_L`` for each interval level ``L`` the records carry. Empty input gives NaN metrics.
    """
    actual = np.array([s["actual_close"] for s in scores], dtype=float)
    predicted = np.array([s["predicted_close"] for s in scores], dtype=float)
    naive = np.array([s["naive_close"] for s in scores], dtype=float)
    out: dict[str, float] = {"n": float(len(scores))}
    for prefix, forecast in (("", predicted), ("naive_", naive)):
        out[prefix + "mae"] = mae(actual, forecast)
        out[prefix + "rmse"] = rmse(actual, forecast)
        out[prefix + "mape"] = mape(actual, forecast)
        out[prefix + "r2"] = r2(actual, forecast)
        out[prefix + "mase"] = mase(actual, forecast, naive)
    out["directional_accuracy"] = directional_accuracy(actual, predicted, naive)
    labels = [key[len("inside_"):] for key in scores[0] if key.startswith("inside_")] if scores else []
    for label in labels:
        out[f"coverage_{label}"] = _mean(np.array([s[f"inside_{label}"] for s in scores], dtype=float))
        out[f"mean_width_{label}"] = _mean(np.array([s[f"width_{label}"] for s in scores], dtype=float))
        out[f"winkler_{label}"] = _mean(np.array([s[f"winkler_{label}"] for s in scores], dtype=float))
    return out
