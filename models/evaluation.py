"""Chronological splits and comparisons against the naive forecast.

Every model is judged on next-day *closes* beside the naive random walk (tomorrow's close = today's)
on the same days. The point metrics are the core's (:mod:`models.core.metrics`); this module adds
the date split used for training, the Diebold-Mariano test of equal predictive accuracy, and the
judgement over many tickers: per-ticker relative MAE and Hyndman's MASE, pooled by a geometric mean,
and a panel Diebold-Mariano test on scale-free losses (:func:`evaluate`), so that no ticker decides
a verdict because its prices are high.

Examples
--------
>>> import datetime as dt
>>> days = [dt.date(2024, 1, d) for d in range(1, 31)]
>>> split = split_by_date(days, test_days=10, validation_fraction=0.25)
>>> [str(d) for d in (split.train_end, split.validation_start, split.test_start, split.test_end)]
['2024-01-15', '2024-01-16', '2024-01-21', '2024-01-30']
"""

from __future__ import annotations

import bisect
import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from models.core import metrics

if TYPE_CHECKING:
    from models.dataset import Samples

# SciPy and matplotlib (slow to import) load inside the tests and the figures that use them.


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
    days = sorted(set(target_dates))
    if test_days is not None and test_days < 1:
        raise ValueError(f"test_days must be positive, got {test_days}")
    if not 0 < validation_fraction < 1:
        raise ValueError(f"validation_fraction must be in (0, 1), got {validation_fraction}")
    if test_start is None:
        if test_days is None:
            raise ValueError("give test_start or test_days")
        if test_days >= len(days):
            raise InsufficientHistory(f"a test period of {test_days:,} dates leaves none before it to train "
                                      f"on: the data have {len(days):,}")
        first_test = len(days) - test_days
    else:
        first_test = bisect.bisect_left(days, test_start)
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


def newey_west_lags(n: int) -> int:
    """Newey and West's (1994) rule of thumb for the Bartlett kernel's lags: ``floor(4 (n / 100)^(2/9))``.

    >>> newey_west_lags(252), newey_west_lags(180), newey_west_lags(60)
    (4, 4, 3)
    """
    return int(4 * (n / 100) ** (2 / 9))


def panel_diebold_mariano(dates: np.ndarray, model_loss: np.ndarray, naive_loss: np.ndarray, *,
                          lags: int | None = None) -> DieboldMariano:
    """Diebold-Mariano test over a panel: loss differentials averaged across tickers per date, then
    tested over dates with a Newey-West (Bartlett kernel, HAC) variance.

    The tickers of one date move together, so their differentials are not independent observations:
    averaging them per date leaves one number per date, whose serial dependence the HAC variance
    covers. Give scale-free losses (e.g. absolute errors over each ticker's naive scale) so that no
    ticker weighs more for its price. The statistic is compared with Student's t on ``dates - 1``
    degrees of freedom; two-sided p-value; negative: the model's losses are lower.

    Parameters
    ----------
    dates
        The date of each loss (one entry per ticker-day; any order).
    model_loss, naive_loss
        The two forecasts' losses on those ticker-days.
    lags
        Bartlett lags; default :func:`newey_west_lags` of the number of dates.

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> days = np.repeat(np.arange(300), 4)  # four tickers a day
    >>> naive = np.abs(rng.normal(size=1200))
    >>> test = panel_diebold_mariano(days, 0.8 * naive, naive)
    >>> test.statistic < 0, test.p_value < 0.001
    (True, True)
    >>> panel_diebold_mariano(days, naive, naive).p_value
    1.0
    """
    from scipy import stats

    dates, model_loss, naive_loss = (np.asarray(a) for a in (dates, model_loss, naive_loss))
    if not dates.shape == model_loss.shape == naive_loss.shape or dates.ndim != 1:
        raise ValueError(f"dates and losses must be 1-d and equal in length, got {dates.shape}, "
                         f"{model_loss.shape} and {naive_loss.shape}")
    _, day = np.unique(dates, return_inverse=True)
    per_date = (np.bincount(day, weights=model_loss - naive_loss) / np.bincount(day)).astype("float64")
    n = len(per_date)
    if n < 3:
        raise ValueError(f"the panel Diebold-Mariano test needs at least 3 dates, got {n}")
    lags = newey_west_lags(n) if lags is None else lags
    mean = per_date.mean()
    centered = per_date - mean
    variance = centered @ centered / n
    for lag in range(1, min(lags, n - 1) + 1):
        variance += 2 * (1 - lag / (lags + 1)) * (centered[lag:] @ centered[:-lag]) / n
    if variance <= 0:
        return DieboldMariano(statistic=0.0, p_value=1.0)  # identical losses: no evidence either way
    statistic = mean / math.sqrt(variance / n)
    return DieboldMariano(statistic=float(statistic), p_value=float(2 * stats.t.sf(abs(statistic), df=n - 1)))


#: The pooled point metrics of :func:`point_metrics`, in the order reports show them. MAE, RMSE and
#: MSE are in the prices' currency (dollars for the S&P data): over several tickers the highest-priced
#: ones decide them, so the verdicts use :class:`PanelScore` instead.
METRICS = ("mae", "rmse", "mse", "mape", "r2", "directional_accuracy")
#: Per-ticker DM p-values below this count a ticker as significantly better or worse than naive.
TICKER_ALPHA = 0.05


def point_metrics(actual: np.ndarray, predicted: np.ndarray, naive: np.ndarray) -> dict[str, float]:
    """The core's point metrics of predicted closes, pooled (direction relative to ``naive``).

    Examples
    --------
    >>> m = point_metrics(np.array([10.0, 11.0]), np.array([10.5, 10.5]), np.array([10.0, 10.0]))
    >>> m["mae"], m["mse"]
    (0.5, 0.25)
    """
    rmse = metrics.rmse(actual, predicted)
    return {
        "mae": metrics.mae(actual, predicted),
        "rmse": rmse,
        "mse": rmse**2,
        "mape": metrics.mape(actual, predicted),
        "r2": metrics.r2(actual, predicted),
        "directional_accuracy": metrics.directional_accuracy(actual, predicted, previous=naive),
    }


@dataclass(frozen=True)
class TickerScore:
    """A model against naive on one ticker's test days.

    ``mae`` and ``naive_mae`` are in the ticker's currency; ``relative_mae`` is their ratio (below 1
    beats naive); ``mase`` and ``naive_mase`` are Hyndman's, scaled by the naive MAE of the training
    period (NaN when the ticker had no training days); ``dm`` is the Diebold-Mariano test on
    absolute errors (NaN with fewer than 3 days).
    """

    ticker: str
    n: int
    mae: float
    naive_mae: float
    relative_mae: float
    mase: float
    naive_mase: float
    dm: DieboldMariano

    def metrics(self) -> dict[str, float]:
        """Flat numbers (a run's ``per_ticker.json``)."""
        return {"n": float(self.n), "mae": self.mae, "naive_mae": self.naive_mae,
                "relative_mae": self.relative_mae, "mase": self.mase, "naive_mase": self.naive_mase,
                "dm_statistic": self.dm.statistic, "dm_p_value": self.dm.p_value}


@dataclass(frozen=True)
class PanelScore:
    """A model against naive over every ticker, with measures no single ticker's price level decides.

    Attributes
    ----------
    tickers, beating_naive
        Tickers judged, and those where the model's MAE is below naive's.
    significantly_better, significantly_worse
        Tickers whose own Diebold-Mariano test is significant at :data:`TICKER_ALPHA`, either way.
    relative_mae
        Geometric mean of the per-ticker relative MAEs: below 1 beats naive.
    mase, naive_mase
        Mean of the per-ticker MASEs (tickers with a training scale).
    dm
        :func:`panel_diebold_mariano` on absolute errors over each ticker's training naive scale.
    """

    tickers: int
    beating_naive: int
    significantly_better: int
    significantly_worse: int
    relative_mae: float
    mase: float
    naive_mase: float
    dm: DieboldMariano

    def metrics(self) -> dict[str, float]:
        """The model's flat numbers (MLflow's ``test_*``): ``relative_mae``, ``mase``, ticker counts."""
        return {"relative_mae": self.relative_mae, "mase": self.mase,
                "tickers": float(self.tickers), "tickers_beating_naive": float(self.beating_naive),
                "tickers_significantly_better": float(self.significantly_better),
                "tickers_significantly_worse": float(self.significantly_worse)}

    def summary(self) -> str:
        """One line: relative MAE, MASE, the tickers won, the panel test.

        Examples
        --------
        >>> print(PanelScore(10, 3, 0, 1, 1.004, 0.71, 0.708, DieboldMariano(1.2, 0.23)).summary())
        relative MAE 1.0040 (geometric mean), MASE 0.7100 vs naive 0.7080, MAE below naive's on 3 of 10 \
tickers (significantly on 0, significantly above on 1 at p < 0.05), panel Diebold-Mariano 1.200 (p = 0.23)
        """
        return (f"relative MAE {self.relative_mae:.4f} (geometric mean), MASE {self.mase:.4f} vs naive "
                f"{self.naive_mase:.4f}, MAE below naive's on {self.beating_naive} of {self.tickers} tickers "
                f"(significantly on {self.significantly_better}, significantly above on "
                f"{self.significantly_worse} at p < {TICKER_ALPHA}), panel Diebold-Mariano "
                f"{self.dm.statistic:.3f} (p = {self.dm.p_value:.3g})")


@dataclass(frozen=True)
class Evaluation:
    """A model and the naive forecast judged on the same samples, as next closes.

    ``metrics`` and ``naive_metrics`` are pooled over every sample (MAE and RMSE in the prices'
    currency); ``per_ticker`` and ``panel`` are the scale-free judgement.
    """

    metrics: dict[str, float]
    naive_metrics: dict[str, float]
    per_ticker: list[TickerScore]
    panel: PanelScore
    predicted_closes: np.ndarray
    actual_closes: np.ndarray
    naive_closes: np.ndarray

    def beats_naive(self) -> bool:
        """Panel relative MAE below 1 (significance is ``panel.dm``'s to judge)."""
        return self.panel.relative_mae < 1


_NO_TEST = DieboldMariano(statistic=math.nan, p_value=math.nan)


def _ticker_score(ticker: str, actual: np.ndarray, predicted: np.ndarray, naive: np.ndarray,
                  scale: float) -> TickerScore:
    return TickerScore(
        ticker=ticker, n=len(actual), mae=metrics.mae(actual, predicted),
        naive_mae=metrics.mae(actual, naive),
        relative_mae=metrics.relative_mae(actual, predicted, naive),
        mase=metrics.mase(actual, predicted, scale), naive_mase=metrics.mase(actual, naive, scale),
        dm=diebold_mariano(actual - predicted, actual - naive, power=1) if len(actual) >= 3 else _NO_TEST)


def _panel(scores: list[TickerScore], dm: DieboldMariano) -> PanelScore:
    ratios = np.array([s.relative_mae for s in scores])
    scaled = [s for s in scores if np.isfinite(s.mase)]
    tested = [s.dm for s in scores if s.dm.p_value < TICKER_ALPHA]
    return PanelScore(
        tickers=len(scores), beating_naive=int(np.sum(ratios < 1)),
        significantly_better=sum(t.statistic < 0 for t in tested),
        significantly_worse=sum(t.statistic > 0 for t in tested),
        relative_mae=metrics.geometric_mean(ratios[np.isfinite(ratios)]),
        mase=float(np.mean([s.mase for s in scaled])) if scaled else math.nan,
        naive_mase=float(np.mean([s.naive_mase for s in scaled])) if scaled else math.nan, dm=dm)


def evaluate(predicted_returns: np.ndarray, test: Samples, scales: Mapping[str, float]) -> Evaluation:
    """Judge predicted log-returns as closes ``close_t * exp(r)`` against naive (``close_t``).

    Parameters
    ----------
    predicted_returns
        One predicted log-return per sample of ``test``.
    test
        The test samples (closes, next closes, tickers, target dates).
    scales
        Each ticker's naive MAE over the training period (:func:`models.core.metrics.naive_scale`),
        the scale of MASE and of the panel test's losses; a ticker without one is left out of both.

    Examples
    --------
    >>> from models.dataset import Samples
    >>> days = np.array(["2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05"] * 2, dtype="datetime64[D]")
    >>> closes = np.array([10.0, 10.2, 9.9, 10.1, 1000.0, 1020.0, 990.0, 1010.0])
    >>> moves = np.array([1.02, 0.97, 1.02, 1.02] * 2)  # B is A at 100 times the price
    >>> test = Samples(np.zeros((8, 1, 1)), np.zeros(8), closes, closes * moves,
    ...                np.array(["A"] * 4 + ["B"] * 4), days - 1, days)
    >>> e = evaluate(np.full(8, 0.01), test, {"A": 0.2, "B": 20.0})
    >>> e.beats_naive(), round(e.panel.relative_mae, 3), e.panel.beating_naive, round(e.panel.mase, 3)
    (True, 0.78, 2, 0.884)
    """
    predicted = test.closes * np.exp(predicted_returns)
    actual, naive = test.next_closes, test.closes
    per_ticker = []
    model_loss, naive_loss = np.full(len(test), math.nan), np.full(len(test), math.nan)
    for ticker in sorted(set(test.tickers.tolist())):
        rows = test.tickers == ticker
        scale = float(scales.get(ticker, math.nan))
        per_ticker.append(_ticker_score(ticker, actual[rows], predicted[rows], naive[rows], scale))
        if scale > 0:
            model_loss[rows] = np.abs(actual[rows] - predicted[rows]) / scale
            naive_loss[rows] = np.abs(actual[rows] - naive[rows]) / scale
    scaled = np.isfinite(model_loss)
    panel_dm = (panel_diebold_mariano(test.target_dates[scaled], model_loss[scaled], naive_loss[scaled])
                if len(set(test.target_dates[scaled].tolist())) >= 3 else _NO_TEST)
    return Evaluation(
        metrics=point_metrics(actual, predicted, naive), naive_metrics=point_metrics(actual, naive, naive),
        per_ticker=per_ticker, panel=_panel(per_ticker, panel_dm),
        predicted_closes=predicted, actual_closes=actual, naive_closes=naive,
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
    edges = np.percentile(np.r_[model_pct, naive_pct], [0.5, 99.5])
    bins = np.linspace(edges[0], edges[1], 50).tolist()  # matplotlib types its bins as a sequence
    ax.hist(naive_pct, bins=bins, alpha=0.5, label="naive")
    ax.hist(model_pct, bins=bins, alpha=0.5, label="model")
    ax.set(xlabel="error, % of the actual close", ylabel="days", title=f"{title}: error distribution")
    ax.legend()
    return {"predicted_vs_actual.png": scatter, "error_distribution.png": errors}
