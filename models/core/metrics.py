"""Point and interval forecast metrics as plain numpy functions.

Used by the backtest, the stream worker's rolling metrics and model evaluation alike, so that one
number means the same everywhere. Inputs are arrays of equal length; empty inputs give NaN.

Examples
--------
>>> import numpy as np
>>> actual, predicted = np.array([10.0, 11.0, 10.0]), np.array([10.5, 10.5, 10.5])
>>> naive = np.array([9.0, 10.0, 11.0])
>>> float(mae(actual, predicted)), float(relative_mae(actual, predicted, naive))
(0.5, 0.5)
>>> float(mase(actual, predicted, scale=0.25)), float(geometric_mean(np.array([0.5, 2.0])))
(2.0, 1.0)
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


def relative_mae(actual: np.ndarray, predicted: np.ndarray, naive: np.ndarray) -> float:
    """MAE divided by the naive forecast's MAE on the same days: below 1 beats naive.

    Scale-free within a ticker, but not Hyndman's MASE (:func:`mase`), whose scale comes from the
    training period.
    """
    scale = mae(actual, naive)
    return mae(actual, predicted) / scale if scale > 0 else float("nan")


def mase(actual: np.ndarray, predicted: np.ndarray, scale: float) -> float:
    """Hyndman's mean absolute scaled error: MAE divided by ``scale``, the mean absolute error of the
    naive forecast over the *training* period (:func:`naive_scale`). NaN when the scale is not positive."""
    return mae(actual, predicted) / scale if scale > 0 else float("nan")


def naive_scale(closes: np.ndarray, next_closes: np.ndarray) -> float:
    """The scale of :func:`mase`: the naive forecast's mean absolute error ``|next close - close|``."""
    return mae(next_closes, closes)


def geometric_mean(values: np.ndarray) -> float:
    """Geometric mean of positive ratios (e.g. per-ticker relative MAEs); NaN if empty or one is not > 0.

    The pooling of ratios that no single ticker's price level can dominate, and that treats 0.5 and
    2 as opposite errors of equal size.
    """
    values = np.asarray(values, dtype=float)
    if not values.size or not (values > 0).all():
        return float("nan")
    return float(np.exp(np.mean(np.log(values))))


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

    Keys: ``n``; ``mae``, ``rmse`` (in the prices' currency), ``mape``, ``r2``, ``relative_mae``,
    ``directional_accuracy`` of the model and the same with a ``naive_`` prefix for the naive
    forecast on the same days (but no naive directional accuracy: it never predicts a move);
    ``coverage_L``, ``mean_width_L`` and ``winkler_L`` for each interval level ``L`` the records
    carry. Empty input gives NaN metrics.
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
        out[prefix + "relative_mae"] = relative_mae(actual, forecast, naive)
    out["directional_accuracy"] = directional_accuracy(actual, predicted, naive)
    labels = [key[len("inside_"):] for key in scores[0] if key.startswith("inside_")] if scores else []
    for label in labels:
        out[f"coverage_{label}"] = _mean(np.array([s[f"inside_{label}"] for s in scores], dtype=float))
        out[f"mean_width_{label}"] = _mean(np.array([s[f"width_{label}"] for s in scores], dtype=float))
        out[f"winkler_{label}"] = _mean(np.array([s[f"winkler_{label}"] for s in scores], dtype=float))
    return out


def panel(per_ticker: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Scale-free figures over tickers from their :func:`summarize` results: ``tickers`` (those
    with a defined relative MAE), ``tickers_beating_naive`` (relative MAE below 1) and
    ``relative_mae``, the geometric mean of the per-ticker relative MAEs.

    Unlike the pooled MAE, no ticker weighs more here because its prices are higher.

    Examples
    --------
    >>> panel({"A": {"relative_mae": 0.5}, "B": {"relative_mae": 2.0}, "C": {"relative_mae": float("nan")}})
    {'tickers': 2.0, 'tickers_beating_naive': 1.0, 'relative_mae': 1.0}
    """
    ratios = np.array([m["relative_mae"] for m in per_ticker.values()], dtype=float)
    ratios = ratios[np.isfinite(ratios)]
    return {"tickers": float(ratios.size), "tickers_beating_naive": float(np.sum(ratios < 1)),
            "relative_mae": geometric_mean(ratios)}
