"""Chronological splits and comparisons against the naive forecast.

Every model is judged on next-day *closes* beside the naive random walk (tomorrow's close = today's)
on the same days. The point metrics are the core's (:mod:`models.core.metrics`); this module adds
the date split used for training and the Diebold-Mariano test of equal predictive accuracy.

Examples
--------
>>> import datetime as dt
>>> days = [dt.date(2024, 1, d) for d in range(1, 31)]
>>> split = split_by_date(days, test_days=10, validation_fraction=0.25)
>>> [str(d) for d in (split.train_end, split.validation_start, split.test_start, split.test_end)]
['2024-01-15', '2024-01-16', '2024-01-21', '2024-01-30']
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class DateSplit:
    """Train, validation and test periods by *target* date (the day whose close is predicted).

    A sample whose target date is at most ``train_end`` only uses bars up to ``train_end``, so
    the training period never sees a validation or test close.
    """

    train_end: dt.date
    validation_start: dt.date
    test_start: dt.date
    test_end: dt.date


class InsufficientHistory(ValueError):
    """Too few dates or samples to train, validate and test a model: more history is needed."""


def split_by_date(target_dates: Sequence[dt.date], *, test_start: dt.date | None = None,
                  test_days: int | None = 252, validation_fraction: float = 0.1) -> DateSplit:
    """Split the distinct target dates chronologically into train, validation and test.

    Parameters
    ----------
    target_dates
        The target dates of all samples (any order, repeats allowed: one per ticker).
    test_start
        First test date; default: the test period is the last ``test_days`` dates.
    test_days
        Distinct dates in the test period; None with ``test_start``: every date from it on.
    validation_fraction
        Share of the dates before the test period that validate (early stopping); the rest train.

    Raises
    ------
    InsufficientHistory
        When a period would be empty.
    """
    days = np.array(sorted(set(target_dates)))
    if test_days is not None and test_days < 1:
        raise ValueError(f"test_days must be positive, got {test_days}")
    if not 0 < validation_fraction < 1:
        raise ValueError(f"validation_fraction must be in (0, 1), got {validation_fraction}")
    if test_start is None:
        if test_days is None:
            raise ValueError("give test_start or test_days")
        first_test = len(days) - test_days
    else:
        first_test = int(np.searchsorted(days, test_start))
    if first_test >= len(days):
        raise InsufficientHistory(f"no target dates on or after the test start {test_start}")
    last_test = len(days) - 1 if test_days is None else min(first_test + test_days, len(days)) - 1
    validation = math.ceil(first_test * validation_fraction)
    train = first_test - validation
    if train < 1:
        raise InsufficientHistory(f"only {first_test} dates before the test period: too few to train and "
                                  "validate")
    return DateSplit(train_end=days[train - 1], validation_start=days[train],
                     test_start=days[first_test], test_end=days[last_test])


@dataclass(frozen=True)
class DieboldMariano:
    """The Diebold-Mariano test of equal accuracy; negative ``statistic``: the model's losses are lower."""

    statistic: float
    p_value: float


def diebold_mariano(model_errors: np.ndarray, naive_errors: np.ndarray, *, horizon: int = 1,
                    power: int = 2) -> DieboldMariano:
    """Diebold-Mariano test with the Harvey-Leybourne-Newbold small-sample correction.

    The loss differential is ``|e_model|^power - |e_naive|^power``; its mean is divided by a
    long-run standard error with ``horizon - 1`` autocovariances, corrected by HLN (1997) and
    compared with Student's t on ``n - 1`` degrees of freedom. The p-value is two-sided.

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> naive = rng.normal(size=500)
    >>> test = diebold_mariano(0.5 * naive, naive)
    >>> test.statistic < 0, test.p_value < 0.001
    (True, True)
    >>> diebold_mariano(naive, naive).p_value
    1.0
    """
    from scipy import stats

    model_errors = np.asarray(model_errors, dtype="float64")
    naive_errors = np.asarray(naive_errors, dtype="float64")
    if model_errors.shape != naive_errors.shape or model_errors.ndim != 1:
        raise ValueError(f"error arrays must be 1-d and equal in length, got {model_errors.shape} "
                         f"and {naive_errors.shape}")
    n = len(model_errors)
    if n < 3:
        raise ValueError(f"the Diebold-Mariano test needs at least 3 paired errors, got {n}")
    differential = np.abs(model_errors) ** power - np.abs(naive_errors) ** power
    mean = differential.mean()
    centered = differential - mean
    variance = centered @ centered / n
    for lag in range(1, horizon):
        variance += 2 * (centered[lag:] @ centered[:-lag]) / n
    if variance <= 0:
        # Identical losses on every day: no evidence either way.
        return DieboldMariano(statistic=0.0, p_value=1.0)
    statistic = mean / math.sqrt(variance / n)
    statistic *= math.sqrt((n + 1 - 2 * horizon + horizon * (horizon - 1) / n) / n)
    p_value = float(2 * stats.t.sf(abs(statistic), df=n - 1))
    return DieboldMariano(statistic=float(statistic), p_value=p_value)


#: The point metrics of :func:`point_metrics`, in the order reports show them.
METRICS = ("mae", "rmse", "mse", "mape", "r2", "mase", "directional_accuracy")


def point_metrics(actual: np.ndarray, predicted: np.ndarray, naive: np.ndarray) -> dict[str, float]:
    """The core's point metrics of predicted closes (MASE and direction relative to ``naive``).

    Examples
    --------
    >>> m = point_metrics(np.array([10.0, 11.0]), np.array([10.5, 10.5]), np.array([10.0, 10.0]))
    >>> m["mae"], m["mse"], m["mase"]
    (0.5, 0.25, 1.0)
    """
    from models.core import metrics

    rmse = metrics.rmse(actual, predicted)
    return {
        "mae": metrics.mae(actual, predicted),
        "rmse": rmse,
        "mse": rmse**2,
        "mape": metrics.mape(actual, predicted),
        "r2": metrics.r2(actual, predicted),
        "mase": metrics.mase(actual, predicted, naive),
        "directional_accuracy": metrics.directional_accuracy(actual, predicted, previous=naive),
    }


@dataclass(frozen=True)
class Evaluation:
    """A model and the naive forecast judged on the same samples, as next closes."""

    metrics: dict[str, float]
    naive_metrics: dict[str, float]
    dm: DieboldMariano
    predicted_closes: np.ndarray
    actual_closes: np.ndarray
    naive_closes: np.ndarray

    def beats_naive(self) -> bool:
        """Lower MAE than naive on these days (significance is ``dm.p_value``'s to judge)."""
        return self.metrics["mae"] < self.naive_metrics["mae"]


def evaluate(predicted_returns: np.ndarray, closes: np.ndarray, next_closes: np.ndarray) -> Evaluation:
    """Judge predicted log-returns as closes ``close_t * exp(r)`` against naive (``close_t``).

    Examples
    --------
    >>> closes, nxt = np.array([10.0, 10.0, 10.0, 10.0]), np.array([10.2, 9.9, 10.1, 10.3])
    >>> e = evaluate(np.log(np.array([10.1, 9.95, 10.05, 10.1]) / 10.0), closes, nxt)
    >>> e.beats_naive(), round(e.metrics["mase"], 3)
    (True, 0.571)
    """
    predicted = closes * np.exp(predicted_returns)
    return Evaluation(
        metrics=point_metrics(next_closes, predicted, closes),
        naive_metrics=point_metrics(next_closes, closes, closes),
        dm=diebold_mariano(next_closes - predicted, next_closes - closes),
        predicted_closes=predicted, actual_closes=next_closes, naive_closes=closes,
    )


def figures(evaluation: Evaluation, title: str) -> dict[str, object]:
    """Matplotlib figures of a test evaluation: predicted vs actual closes, error distributions."""
    import matplotlib

    matplotlib.use("Agg")  # files only; never a display
    from matplotlib import pyplot as plt

    scatter, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(evaluation.actual_closes, evaluation.predicted_closes, s=6, alpha=0.5, label="model")
    low, high = evaluation.actual_closes.min(), evaluation.actual_closes.max()
    ax.plot([low, high], [low, high], color="black", linewidth=0.8, label="perfect")
    ax.set(xlabel="actual close", ylabel="predicted close", title=f"{title}: predicted vs actual")
    ax.legend()
    errors, ax = plt.subplots(figsize=(6, 4))
    model_pct = 100 * (evaluation.predicted_closes / evaluation.actual_closes - 1)
    naive_pct = 100 * (evaluation.naive_closes / evaluation.actual_closes - 1)
    bins = np.linspace(*np.percentile(np.r_[model_pct, naive_pct], [0.5, 99.5]), 50)
    ax.hist(naive_pct, bins=bins, alpha=0.5, label="naive")
    ax.hist(model_pct, bins=bins, alpha=0.5, label="model")
    ax.set(xlabel="error, % of the actual close", ylabel="days", title=f"{title}: error distribution")
    ax.legend()
    return {"predicted_vs_actual.png": scatter, "error_distribution.png": errors}
