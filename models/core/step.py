"""One bar of one ticker: score the predictions it settles, update the ARIMA, predict the next closes.

:func:`step` is a pure function of ``(state, bar, config, model)``; :func:`step_many` is the same for
a batch of tickers (one bar each), vectorised with numpy. :func:`step` *is* a batch of one, and every
batched operation is element-wise (or per ticker), so the two give identical records whatever the
batch composition: the stream worker's batches and the backtest's days produce the same numbers.
The worker and the backtest call :func:`step_guarded`: ``step_many`` with a bar the step raises on set
aside.

What happens to a bar of day ``t`` of a ticker, in order (the function of each phase in brackets):

1. for each horizon ``h`` (``config.horizons``, trading days = bars of the ticker), the prediction made
   ``h`` bars ago is scored against this close (error, naive error, whether the close fell inside each
   interval, width, Winkler score), and its standardized residual updates that horizon's interval
   calibration (``_due``, ``_score_pending``, ``_calibrate``);
2. the ARIMA, once fitted, takes one Kalman step: its innovation at ``t`` and the forecast for
   ``t + 1`` (``_kalman_step``);
3. the log close joins the fitting window; when the window is full and a refit is due (every
   ``refit_every`` bars) the ARIMA is refitted on it (see :mod:`models.core.arima`); a failed fit
   keeps the previous parameters and is counted (``_extend_windows``). A state whose ARIMA is of
   another order than the configuration's drops it and refits at once (``_arima_checked``), and one
   made by another volatility model or feature set (other array widths) starts afresh (``_checked``);
4. the feature row of day ``t`` is computed (:mod:`models.core.features`, ``_extend_features``);
5. for each horizon ``h`` the configured model predicts the close ``h`` bars ahead, dated the ``h``-th
   next weekday (``_point_forecast``): naive the last close, the ARIMA its ``h``-step mean, an
   external model its one-day return and then no change (its slot predicts one day only). Each has
   calibrated intervals (:mod:`models.core.intervals`, ``_intervals``) around the last close (or around
   the prediction, with ``interval_centre="model"``), scaled by the volatility model's forecast of the
   ``h``-day return's spread (:mod:`models.core.volatility`, ``_update_volatility`` and ``_scale``),
   which every bar updates whatever the model. A model that is not ready yet (ARIMA window not full,
   too few feature rows for an external model) gives way to the naive forecast, and the prediction
   says so with ``warmup: true``, as it does while its horizon's intervals still lack calibration
   residuals;
6. the predictions are kept in the ticker's new state until their horizon's bar scores them, and
   written as records, ascending horizon (``_made``, ``_new_states``).

No wall-clock time enters the records, so streaming and backtest agree exactly.

Examples
--------
>>> import datetime as dt
>>> from models.core.bar import Bar
>>> from models.core.config import CoreConfig
>>> config = CoreConfig(model="naive")
>>> first = step(None, Bar("ACME", dt.date(2024, 1, 5), 10.0, 10.4, 9.8, 10.2, 1000), config)
>>> [(p["horizon"], p["target_date"], p["predicted_close"], p["warmup"]) for p in first.predictions]
[(1, '2024-01-08', 10.2, True)]
>>> monday = Bar("ACME", dt.date(2024, 1, 8), 10.2, 10.6, 10.1, 10.5, 900)
>>> second = step(first.state, monday, config)
>>> [(round(s["error"], 6), s["inside_95"], s["target_date"]) for s in second.scores]
[(0.3, True, '2024-01-08')]
>>> weekly = step(None, monday, CoreConfig(model="naive", horizons=(1, 5)))
>>> [(p["horizon"], p["target_date"]) for p in weekly.predictions], weekly.scores
([(1, '2024-01-09'), (5, '2024-01-15')], [])
>>> step(second.state, monday, config)  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
models.core.step.OutOfOrderBar: out_of_order: ACME bar of 2024-01-08 is not after the last ... of 2024-01-08
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from functools import cache, partial
from itertools import accumulate, repeat
from typing import Any, TypeVar

import numpy as np

from models.core.arima import Arima, ArimaFitError, kalman_update
from models.core.bar import Bar
from models.core.config import CoreConfig
from models.core.features import FEATURE_NAMES, feature_rows
from models.core.intervals import MIN_SCALE, Calibration, level_label
from models.core.model_slot import PointModel
from models.core.scoring import IsoDates, score
from models.core.state import HORIZON, LEVELS, Pending, TickerState
from models.core.volatility import daily_variance, forecast, regimes, trailing_vol_rank, update

NAIVE_VERSION = "1"
_T = TypeVar("_T")
#: A fitted ARIMA's parameters, filter state and its covariance.
_Filtered = tuple[np.ndarray, np.ndarray, np.ndarray]


class OutOfOrderBar(ValueError):
    """A bar dated on or before the last bar applied to its ticker; the caller's state is untouched."""

    reason = "out_of_order"

    def __init__(self, bar: Bar, last_date: dt.date) -> None:
        super().__init__(f"out_of_order: {bar.ticker} bar of {bar.date.isoformat()} is not after the "
                         f"last applied bar of {last_date.isoformat()}")
        self.bar = bar
        self.last_date = last_date


class ModelError(RuntimeError):
    """The external model failed on a batch: it raised, or gave no prediction per window. The model's
    own fault, not the bars' or the states': the caller may serve another model for them."""


class BatchError(ValueError):
    """A batch the caller put together wrongly: lengths that differ, a ticker twice, a bar given with
    another ticker's state, a model that does not match the configuration. No bar of it is at fault."""


@dataclass(frozen=True, slots=True)
class StepFailure:
    """A bar :func:`step_guarded` set aside: the step raised ``error`` on this bar alone. Its
    ticker's state is the one before it."""

    bar: Bar
    error: Exception

    reason = "step_failed"

    @property
    def detail(self) -> str:
        """One line for people: which bar, and what the step raised."""
        return (f"{self.bar.ticker} {self.bar.date.isoformat()}: the forecasting step raised "
                f"{type(self.error).__name__}: {self.error}; not applied, the ticker's state stays at its "
                "last applied bar")


@dataclass(frozen=True, slots=True)
class StepResult:
    """What one bar produced.

    Attributes
    ----------
    state
        The ticker's new state (the input state is unchanged).
    predictions
        The predictions of this bar, one per configured horizon, ascending: the JSON encodings
        (``to_dict``) of :class:`~models.core.records.Prediction`, built directly as dicts because it
        is cheaper.
    scores
        The scores of the predictions this bar settles (made ``h`` bars ago for horizon ``h``),
        ascending horizon, encoded as :class:`~models.core.records.Score`; empty on a first bar.
    features
        The feature row of this bar's day, ``len(FEATURE_NAMES)`` floats.
    refit
        ``"ok"`` or ``"failed"`` when an ARIMA refit was attempted at this bar, else None.
    """

    state: TickerState
    predictions: list[dict[str, Any]]
    scores: list[dict[str, Any]]
    features: np.ndarray
    refit: str | None


def next_weekday(day: dt.date) -> dt.date:
    """The target date of a prediction made at ``day``: the next Monday-to-Friday (holidays unknown).

    >>> next_weekday(dt.date(2024, 1, 5)).isoformat()  # a Friday
    '2024-01-08'
    """
    ahead = {4: 3, 5: 2}.get(day.weekday(), 1)
    return day + dt.timedelta(days=ahead)


def weekday_after(day: dt.date, horizon: int) -> dt.date:
    """The target date of a prediction ``horizon`` trading days ahead of ``day``: the ``horizon``-th
    next weekday (holidays unknown).

    >>> weekday_after(dt.date(2024, 1, 5), 1).isoformat(), weekday_after(dt.date(2024, 1, 6), 6).isoformat()
    ('2024-01-08', '2024-01-15')
    """
    day = next_weekday(day)
    weeks, days = divmod(horizon - 1, 5)
    day += dt.timedelta(days=7 * weeks)  # from a weekday, five weekdays on is a week on
    for _ in range(days):
        day = next_weekday(day)
    return day


def step(state: TickerState | None, bar: Bar, config: CoreConfig,
         model: PointModel | None = None) -> StepResult:
    """Apply one bar to one ticker's state (None for a ticker's first bar).

    Raises
    ------
    OutOfOrderBar
        ``bar.date`` is not after ``state.last_date``.
    ValueError
        The bar's ticker is not the state's, or ``model`` does not match ``config.model``.
    """
    return step_many([state], [bar], config, model)[0]


def step_guarded(states: Sequence[TickerState | None], bars: Sequence[Bar], config: CoreConfig,
                 model: PointModel | None = None) -> list[StepResult | StepFailure]:
    """:func:`step_many`, with a bar on which the step raises set aside: ``results[i]`` is
    ``step_many``'s result for ``bars[i]``, or a :class:`StepFailure` where stepping that bar alone
    raised. A bug of the core that one ticker's numbers meet must not stop every other ticker (nor,
    in the worker, stop it again on the same batch at every restart).

    The batch is halved until the failing bars stand alone: one failure costs about twice the
    halving's depth in more steps of smaller batches, and when every bar fails, ``2 n - 1`` steps
    for ``n`` bars. Every other bar's result is ``step_many``'s (a ticker's does not depend on its
    batch).

    Raises
    ------
    OutOfOrderBar, BatchError, ModelError
        As :func:`step_many`: the caller's or the model's fault, not a bar's. The caller's are found
        before any bar is stepped.
    """
    return _guarded(_checked(states, bars, config, model), bars, config, model)


def _guarded(priors: list[TickerState], bars: Sequence[Bar], config: CoreConfig,
             model: PointModel | None) -> list[StepResult | StepFailure]:
    try:
        return list(_stepped(priors, bars, config, model))
    except ModelError:
        raise
    except Exception as error:
        failed = error
    # Halved outside the handler: a half's error would otherwise chain this one (and a bar's error
    # every batch it was in), and its traceback print them all.
    if len(bars) == 1:
        return [StepFailure(bars[0], failed)]
    half = len(bars) // 2
    return (_guarded(priors[:half], bars[:half], config, model)
            + _guarded(priors[half:], bars[half:], config, model))


def step_many(states: Sequence[TickerState | None], bars: Sequence[Bar], config: CoreConfig,
              model: PointModel | None = None) -> list[StepResult]:
    """Apply one bar to each of many tickers at once; ``results[i]`` equals ``step(states[i], bars[i])``.

    ``model.predict_returns`` is called at most once, with the windows of all ready tickers.

    Raises
    ------
    OutOfOrderBar
        Some bar is not after its state's ``last_date``; no bar of the batch is applied.
    ModelError
        The external model raised, or did not give one prediction per window.
    BatchError
        Lengths differ, a ticker appears twice, a bar does not belong to its state, or ``model`` does
        not match ``config.model``.
    """
    return _stepped(_checked(states, bars, config, model), bars, config, model)


def _stepped(priors: list[TickerState], bars: Sequence[Bar], config: CoreConfig,
             model: PointModel | None) -> list[StepResult]:
    """:func:`step_many` of the prior states :func:`_checked` gave: each line is one phase of the
    module docstring's list, batched over the tickers."""
    if not priors:
        return []
    plan = _plan(config)
    prices = _Prices.of(bars, priors)
    iso = plan.iso
    due, due_rows, kept = _due(priors, plan)
    scores, abs_residuals = _score_pending(due, due_rows, bars, prices.log_close, iso, plan)
    variance_ewmas = _update_volatility(priors, prices, config)
    filtered, arima_residual = _kalman_step(priors, prices.log_close, plan.arima)
    fit_windows, refits, fits = _extend_windows(priors, prices.log_close, config, plan.arima)
    filtered.update(fits)  # a refit's end-of-window state replaces the Kalman-stepped one
    rows, buffers = _extend_features(priors, prices, arima_residual, _feature_history(config, model))
    log_prediction, ready = _point_forecast(prices.log_close, filtered, fit_windows, buffers, config,
                                            plan.arima, model)
    # [n, horizons] from here on. Naive predicts the close itself: exp(log(close)) could differ from
    # it in the last bit.
    close = np.repeat(prices.close[:, None], len(config.horizons), axis=1)
    predicted_close = np.where(ready[:, None] & (config.model != "naive"), np.exp(log_prediction), close)
    scale = _scale(variance_ewmas, priors, config)
    calibration = _calibrate(priors, abs_residuals, config)
    on_model = config.interval_centre == "model"
    log_centre = log_prediction if on_model else np.repeat(prices.log_close[:, None], len(config.horizons), 1)
    lower, upper, short = _intervals(log_centre.ravel(), (predicted_close if on_model else close).ravel(),
                               scale.ravel(), calibration, config)
    warmup = np.repeat(~ready, len(config.horizons)) | short
    regime = regimes(trailing_vol_rank(fit_windows))
    made, predictions = _made(bars, log_centre, scale, predicted_close, lower, upper, warmup, regime, config,
                              model, plan, iso)
    new_states = _new_states(priors, bars, made, kept, refits, fit_windows, filtered, variance_ewmas,
                             calibration, buffers, config, plan)
    return [StepResult(state=state, predictions=predictions_i, scores=scores_i, features=row, refit=outcome)
            for state, predictions_i, scores_i, row, outcome
            in zip(new_states, predictions, scores, rows, refits, strict=True)]


@dataclass(frozen=True, slots=True)
class _Prices:
    """The batch's bars as arrays, with each ticker's previous close and volume (NaN on a first bar)."""

    open_: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    log_close: np.ndarray
    volume: np.ndarray
    prev_close: np.ndarray
    prev_volume: np.ndarray

    @classmethod
    def of(cls, bars: Sequence[Bar], priors: list[TickerState]) -> _Prices:
        close = np.array([b.close for b in bars])
        return cls(open_=np.array([b.open for b in bars]), high=np.array([b.high for b in bars]),
                   low=np.array([b.low for b in bars]), close=close, log_close=np.log(close),
                   volume=np.array([b.volume for b in bars]),
                   prev_close=np.array([s.last_close for s in priors]),
                   prev_volume=np.array([s.last_volume for s in priors]))


def _due(priors: list[TickerState], plan: _Plan
         ) -> tuple[list[Pending], list[int], list[list[tuple[Pending, ...]] | None]]:
    """The pending predictions this bar settles (per ticker, the one made ``h`` bars ago for each
    horizon ``h``, ascending), flat, with the batch row of each; and per ticker, per horizon, those
    still pending after it (oldest first), or None where the ticker's pending predictions have the
    steady layout (each horizon ``h`` its last ``h``: those are ``plan.pending_kept`` of them)."""
    horizons, full, starts, width = plan.horizons, plan.pending_full, plan.pending_starts, len(plan.horizons)
    due: list[Pending] = []
    rows: list[int] = []
    kept: list[list[tuple[Pending, ...]] | None] = []
    for i, prior in enumerate(priors):
        pending = prior.pending
        if len(pending) == full:
            due.extend(map(pending.__getitem__, starts))
            rows.extend(repeat(i, width))
            kept.append(None)
            continue
        kept_i: list[tuple[Pending, ...]] = []
        for h in horizons:  # a young ticker, or horizons just configured: some queues are short
            queue = tuple(p for p in pending if p[HORIZON] == h)
            if len(queue) >= h:
                due.append(queue[0])
                rows.append(i)
                queue = queue[1:]
            kept_i.append(queue)
        kept.append(kept_i)
    return due, rows, kept


def _score_pending(due: list[Pending], rows: list[int], bars: Sequence[Bar], log_close: np.ndarray,
                   iso: IsoDates, plan: _Plan) -> tuple[list[list[dict[str, Any]]], np.ndarray]:
    """Score the predictions ``due`` (of the batch ``rows``) against this close: each ticker's score
    records and the absolute standardized residuals ``[n, horizons]`` (NaN where nothing was due)
    that the calibration takes."""
    n, width = len(bars), len(plan.horizons)
    if len(due) == n * width:  # every horizon of every ticker: the steady state
        records, standardized = score(due, [bars[i] for i in rows], log_close[rows], iso)
        return _per_ticker(records, width), np.abs(standardized).reshape(n, width)
    scores: list[list[dict[str, Any]]] = [[] for _ in range(n)]
    abs_residuals = np.full((n, width), np.nan)
    if rows:
        records, standardized = score(due, [bars[i] for i in rows], log_close[rows], iso)
        abs_residuals[rows, [plan.horizon_index[p[HORIZON]] for p in due]] = np.abs(standardized)
        for i, record in zip(rows, records, strict=True):
            scores[i].append(record)
    return scores, abs_residuals


def _update_volatility(priors: list[TickerState], prices: _Prices, config: CoreConfig) -> np.ndarray:
    """The volatility model's weighted sums of daily variance after this bar, whatever the model."""
    variance = daily_variance(prices.open_, prices.high, prices.low, prices.close, prices.prev_close,
                              config.vol_range_weight)
    variance_ewmas = update(np.array([s.variance_ewmas for s in priors]), variance, config.vol_decays)
    variance_ewmas.flags.writeable = False
    return variance_ewmas


def _kalman_step(priors: list[TickerState], log_close: np.ndarray,
                 arima: Arima) -> tuple[dict[int, _Filtered], np.ndarray]:
    """One Kalman step for every fitted ARIMA: ``{row: (params, state, cov)}`` after this close, and
    the standardized innovations (0 where no ARIMA is fitted yet)."""
    n = len(priors)
    arima_residual = np.zeros(n)
    fitted = [i for i, s in enumerate(priors) if s.arima_params is not None]
    if not fitted:
        return {}, arima_residual
    at = _index(fitted, n)
    params = np.array([priors[i].arima_params for i in fitted])
    lags = np.array([priors[i].log_closes[len(priors[i].log_closes) - arima.d:] for i in fitted])
    phi, selection, sigma2 = arima.system(params)
    a, cov, innovation, variance = kalman_update(
        np.array([priors[i].arima_state for i in fitted]), np.array([priors[i].arima_cov for i in fitted]),
        phi, selection, sigma2, arima.differenced(log_close[at], lags))
    arima_residual[at] = innovation / np.sqrt(variance)
    for array in (params, a, cov):
        array.flags.writeable = False
    return {i: (params[j], a[j], cov[j]) for j, i in enumerate(fitted)}, arima_residual


def _extend_windows(priors: list[TickerState], log_close: np.ndarray, config: CoreConfig, arima: Arima
                    ) -> tuple[list[np.ndarray], list[str | None], dict[int, _Filtered]]:
    """Each ticker's fitting window with this log close, the refit outcome (``"ok"``, ``"failed"``
    or None when none was due) and the successful refits by row (per ticker: a refit is a small
    regression)."""
    windows: list[np.ndarray] = []
    refits: list[str | None] = []
    fits: dict[int, _Filtered] = {}
    keep_closes = config.window - 1
    for i, prior in enumerate(priors):
        window = np.concatenate((prior.log_closes[-keep_closes:], log_close[i : i + 1]))
        window.flags.writeable = False
        windows.append(window)
        outcome = None
        if window.size == config.window and (prior.since_refit + 1 >= config.refit_every
                                             or prior.refits + prior.failed_refits == 0):
            fit = _fit(arima, window)
            if fit is not None:
                fits[i] = fit
            outcome = "failed" if fit is None else "ok"
        refits.append(outcome)
    return windows, refits, fits


def _extend_features(priors: list[TickerState], prices: _Prices, arima_residual: np.ndarray,
                     keep: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """The feature rows of day ``t``, and each ticker's last ``keep`` rows with this one (a first
    bar's row, whose changes are NaN, is not kept)."""
    rows = feature_rows(open_=prices.open_, high=prices.high, low=prices.low, close=prices.close,
                        volume=prices.volume, prev_close=prices.prev_close, prev_volume=prices.prev_volume,
                        arima_residual=arima_residual)
    rows.flags.writeable = False
    first = np.isnan(prices.prev_close)
    buffers = [prior.features if first[i]
               else np.concatenate((prior.features[max(len(prior.features) - keep + 1, 0):], rows[i : i + 1]))
               for i, prior in enumerate(priors)]
    for buffer in buffers:
        buffer.flags.writeable = False
    return rows, buffers


def _feature_history(config: CoreConfig, model: PointModel | None) -> int:
    """Feature rows each ticker keeps: enough for the model's lookback and for ``feature_history``."""
    return max(model.lookback if model is not None else 0, config.feature_history)


def _point_forecast(log_close: np.ndarray, filtered: dict[int, _Filtered],
                    fit_windows: list[np.ndarray], buffers: list[np.ndarray], config: CoreConfig,
                    arima: Arima, model: PointModel | None) -> tuple[np.ndarray, np.ndarray]:
    """The predicted log close ``[n, horizons]`` of each ticker at each horizon and whether the
    configured model made them (where it is not ready the prediction is naive's: today's log close)."""
    n = len(log_close)
    log_prediction = np.repeat(log_close[:, None], len(config.horizons), axis=1)
    ready = np.full(n, config.model == "naive")
    if config.model == "arima" and filtered:
        ids = sorted(filtered)
        at = _index(ids, n)
        mean = arima.forecast(
            np.array([filtered[i][0] for i in ids]), np.array([filtered[i][1] for i in ids]),
            np.array([fit_windows[i][fit_windows[i].size - arima.d:] for i in ids]),
            steps=config.horizons[-1])
        log_prediction[at] = mean[:, [h - 1 for h in config.horizons]]
        ready[at] = True
    elif config.model == "external":
        assert model is not None  # _checked guarantees it
        ids = [i for i, buffer in enumerate(buffers) if len(buffer) >= model.lookback]
        if ids:
            feature_windows = np.array([buffers[i][len(buffers[i]) - model.lookback :] for i in ids])
            returns = _predict_returns(model, feature_windows)
            usable = np.isfinite(returns)
            ids_arr = np.array(ids)[usable]
            # The slot predicts one day: after it, no change is the forecast (a random walk's).
            log_prediction[ids_arr] = (log_close[ids_arr] + returns[usable])[:, None]
            ready[ids_arr] = True
    return log_prediction, ready


def _scale(variance_ewmas: np.ndarray, priors: list[TickerState], config: CoreConfig) -> np.ndarray:
    """The volatility model's forecast of the standard deviation of each horizon's log return
    ``[n, horizons]``, floored."""
    bar_counts = np.array([s.bars + 1 for s in priors])
    variance = forecast(variance_ewmas, bar_counts, config.vol_decays, config.vol_weights, config.horizons)
    return np.maximum(np.sqrt(variance), MIN_SCALE)


def _calibrate(priors: list[TickerState], abs_residuals: np.ndarray, config: CoreConfig) -> Calibration:
    """Each ticker's interval calibration after the standardized residuals this bar scored, one row per
    ticker and horizon (``n * horizons`` rows, ticker-major)."""
    prior = Calibration(
        sums=np.array([s.residual_sum for s in priors]).ravel(),
        weights=np.array([s.residual_weight for s in priors]).ravel(),
        zeros=np.array([s.zero_weight for s in priors]).ravel(),
        counts=np.array([s.residuals for s in priors]).ravel(),
        offsets=np.concatenate([s.interval_offsets for s in priors]))
    return prior.update(abs_residuals.ravel(), config.calibration_decay, config.calibration_rate,
                        config.interval_levels, config.interval_df)


def _intervals(log_centre: np.ndarray, centre_close: np.ndarray, scale: np.ndarray,
               calibration: Calibration, config: CoreConfig
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Calibrated interval bounds around each centre (``centre_close``, in logs ``log_centre``): the
    lower and the upper ones ``[n * horizons, levels]``, and which rows are still warming up (their
    intervals are the wider Gaussian fallback)."""
    quantiles, short = calibration.quantiles(config.interval_levels, config.interval_df)
    half_width = quantiles * scale[:, None]
    # The min/max only matter at the scale floor, where exp() rounding could put a bound a hair
    # on the wrong side of the centre. An upper bound past the float range (closes near
    # 1e300) is infinite, an unbounded interval, written as null: no warning for it.
    with np.errstate(over="ignore"):
        lower = np.minimum(np.exp(log_centre[:, None] - half_width), centre_close[:, None])
        upper = np.maximum(np.exp(log_centre[:, None] + half_width), centre_close[:, None])
    return lower, upper, short


def _made(bars: Sequence[Bar], log_centre: np.ndarray, scale: np.ndarray, predicted_close: np.ndarray,
          lower: np.ndarray, upper: np.ndarray, warmup: np.ndarray, regime: list[str | None],
          config: CoreConfig, model: PointModel | None, plan: _Plan, iso: IsoDates
          ) -> tuple[list[Pending], list[list[dict[str, Any]]]]:
    """The predictions made at this bar, a row per ticker and horizon (ticker-major, ascending
    horizon): as the states keep them until they are scored (plain Python values from here on), and
    each ticker's records (:class:`~models.core.records.Prediction` encodings), from the same values."""
    name, version = _model_identity(config, model)
    levels, horizons, keys = config.interval_levels, plan.horizons, plan.prediction_keys
    width = len(horizons)
    # Columns over the rows, each ticker's values repeated per horizon.
    days, tickers = (_repeated([bar.date for bar in bars], width),
                     _repeated([bar.ticker for bar in bars], width))
    naive_closes, regimes_ = _repeated([float(bar.close) for bar in bars], width), _repeated(regime, width)
    row_horizons, scales, closes, warmups = (horizons * len(bars), scale.ravel().tolist(),
                                             predicted_close.ravel().tolist(), warmup.tolist())
    made = [(day, h, centre, scale_k, close, naive_close, levels, lower_k, upper_k, name, version, warmup_k,
             regime_k)
            for day, h, centre, scale_k, close, naive_close, lower_k, upper_k, warmup_k, regime_k in zip(
                days, row_horizons, log_centre.ravel().tolist(), scales, closes, naive_closes,
                _row_tuples(lower), _row_tuples(upper), warmups, regimes_, strict=True)]
    bounds = np.stack((lower, upper), axis=2).reshape(len(lower), -1)  # as the records have them
    # One dict from one list of values: cheaper than a dict filled field by field.
    records = [dict(zip(keys, ["prediction", ticker, iso[day], plan.targets[h][day], h, close, *bounds_k,
                               scale_k, regime_k, name, version, warmup_k], strict=True))
               for ticker, day, h, close, bounds_k, scale_k, regime_k, warmup_k in zip(
                   tickers, days, row_horizons, closes, _row_tuples(bounds), scales, regimes_, warmups,
                   strict=True)]
    return made, _per_ticker(records, width)


def _per_ticker(rows: list[_T], width: int) -> list[list[_T]]:
    """``rows`` (ticker-major, ``width`` per ticker) as a list per ticker."""
    if width == 1:
        return [[row] for row in rows]
    return [rows[k : k + width] for k in range(0, len(rows), width)]


def _repeated(column: list[_T], times: int) -> list[_T]:
    """Each value of ``column`` ``times`` times in a row."""
    return column if times == 1 else [value for value in column for _ in range(times)]


def _row_tuples(array: np.ndarray) -> Iterator[tuple[float, ...]]:
    """The rows of a 2-D array as tuples of floats, made from one list per column: no list per row
    (each a container the garbage collector would track while the batch is built)."""
    return zip(*array.T.tolist(), strict=True)


def _new_states(priors: list[TickerState], bars: Sequence[Bar], made: list[Pending],
                kept: list[list[tuple[Pending, ...]] | None], refits: list[str | None],
                fit_windows: list[np.ndarray], filtered: dict[int, _Filtered], variance_ewmas: np.ndarray,
                calibration: Calibration, buffers: list[np.ndarray], config: CoreConfig, plan: _Plan
                ) -> list[TickerState]:
    """Each ticker's state after this bar, holding the predictions still pending and those it made
    (``made``: a row per ticker and horizon)."""
    states = []
    made_rows = iter(made)
    shape = (len(priors), len(config.horizons))
    sums, weights, zeros, counts = (list(_rows(array.astype(float, copy=False), shape)) for array in (
        calibration.sums, calibration.weights, calibration.zeros, calibration.counts))
    offsets = list(_rows(calibration.offsets, (*shape, len(config.interval_levels))))
    for i, (prior, bar, kept_i, outcome) in enumerate(zip(priors, bars, kept, refits, strict=True)):
        params_i, a_i, cov_i = filtered.get(i, (prior.arima_params, prior.arima_state, prior.arima_cov))
        pending: tuple[Pending, ...] = ()
        for queue in kept_i if kept_i is not None else map(prior.pending.__getitem__, plan.pending_kept):
            pending += (*queue, next(made_rows))
        states.append(TickerState(
            ticker=bar.ticker, last_date=bar.date, bars=prior.bars + 1,
            refits=prior.refits + (outcome == "ok"),
            failed_refits=prior.failed_refits + (outcome == "failed"),
            since_refit=0 if outcome else prior.since_refit + 1,
            last_close=float(bar.close), last_volume=float(bar.volume), log_closes=fit_windows[i],
            arima_params=params_i, arima_state=a_i, arima_cov=cov_i, arima_order=config.order,
            variance_ewmas=variance_ewmas[i], horizons=config.horizons,
            residual_sum=sums[i], residual_weight=weights[i], zero_weight=zeros[i], residuals=counts[i],
            interval_offsets=offsets[i], features=buffers[i],
            feature_rows=prior.feature_rows + (prior.bars > 0), pending=pending))
    return states


def _rows(array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``array`` as ``shape`` (one row per ticker), read-only."""
    array = array.reshape(shape)
    array.flags.writeable = False
    return array


def refit(state: TickerState, config: CoreConfig) -> tuple[TickerState, str]:
    """Refit a ticker's ARIMA now, on demand, on its current window.

    Returns the new state and ``"ok"`` or ``"failed"`` (a failed fit keeps the parameters). The
    pending prediction is kept; the next bar is filtered with the new parameters.

    Raises
    ------
    ValueError
        The window is not full yet.
    """
    if state.log_closes.size < config.window:
        raise ValueError(f"{state.ticker}: window has {state.log_closes.size} of {config.window} bars; "
                         "nothing to refit yet")
    fit = _fit(_plan(config).arima, state.log_closes)
    changes: dict[str, Any] = {"since_refit": 0}
    if fit is None:
        changes.update(failed_refits=state.failed_refits + 1)
    else:
        changes.update(arima_params=fit[0], arima_state=fit[1], arima_cov=fit[2], arima_order=config.order,
                       refits=state.refits + 1)
    return replace(state, **changes), "failed" if fit is None else "ok"


def _fit(arima: Arima, window: np.ndarray) -> _Filtered | None:
    """Parameters and end-of-window filter state, or None when the fit is unusable."""
    try:
        params = arima.fit(window)
    except ArimaFitError:
        return None
    a, cov = arima.initial_state(params, window)
    for array in (params, a, cov):
        array.flags.writeable = False
    return params, a, cov


@dataclass(frozen=True)
class _Plan:
    """What a configuration implies, computed once per configuration."""

    arima: Arima
    prediction_keys: tuple[str, ...]   # a prediction record's fields in order
    horizons: tuple[int, ...]
    horizon_index: dict[int, int]      # a horizon's column in the [n, horizons] arrays
    pending_starts: tuple[int, ...]    # where each horizon's predictions start in a full ``pending``
    pending_full: int                  # predictions pending once every horizon has its h
    pending_kept: tuple[slice, ...]    # per horizon, those of a full ``pending`` that stay pending
    # Dates as text, kept across calls (a worker's batch is often a few tickers): a bar's date, and
    # per horizon its target date. They grow by one entry per trading day seen.
    iso: IsoDates
    targets: dict[int, IsoDates]


@cache
def _plan(config: CoreConfig) -> _Plan:
    labels = [level_label(level) for level in config.interval_levels]
    horizons = config.horizons
    starts = tuple(accumulate(horizons[:-1], initial=0))
    bounds = [key for label in labels for key in ("lower_" + label, "upper_" + label)]
    return _Plan(arima=Arima(config.order),
                 prediction_keys=("record_type", "ticker", "as_of", "target_date", "horizon",
                                  "predicted_close", *bounds, "sigma", "vol_regime", "model", "model_version",
                                  "warmup"),
                 horizons=horizons,
                 horizon_index={h: j for j, h in enumerate(horizons)},
                 pending_starts=starts, pending_full=sum(horizons),
                 pending_kept=tuple(slice(start + 1, start + h)
                                    for start, h in zip(starts, horizons, strict=True)),
                 iso=IsoDates(), targets={h: IsoDates(partial(weekday_after, horizon=h)) for h in horizons})


def _index(ids: list[int], n: int) -> list[int] | slice:
    """Index of the batch rows ``ids`` (sorted): a slice when they are all rows, which numpy takes
    several times faster than a list."""
    return slice(None) if len(ids) == n else ids


def _model_identity(config: CoreConfig, model: PointModel | None) -> tuple[str, str]:
    if model is not None:
        return model.name, model.version
    if config.model == "arima":
        return "arima", ",".join(str(k) for k in config.order)
    return "naive", NAIVE_VERSION


def _checked(states: Sequence[TickerState | None], bars: Sequence[Bar], config: CoreConfig,
             model: PointModel | None) -> list[TickerState]:
    """The batch's prior states (empty ones for new tickers), after every check that can refuse it."""
    if len(states) != len(bars):
        raise BatchError(f"{len(states)} states for {len(bars)} bars")
    if (config.model == "external") != (model is not None):
        raise BatchError("a model must be passed exactly when config.model is 'external'; "
                         f"got config.model={config.model!r} and model={model!r}")
    lookback = getattr(model, "lookback", None)
    if model is not None and (not isinstance(lookback, int) or lookback < 1):
        raise BatchError(f"model {getattr(model, 'name', model)!r} lookback must be a positive int; "
                         f"got {lookback!r}")
    if len({b.ticker for b in bars}) != len(bars):
        raise BatchError("a batch takes one bar per ticker; some ticker appears twice")
    priors = []
    offsets_shape = (len(config.horizons), len(config.interval_levels))
    for state, bar in zip(states, bars, strict=True):
        if state is None:
            state = TickerState.empty(bar.ticker, len(FEATURE_NAMES), len(config.vol_decays))
        elif state.ticker != bar.ticker:
            raise BatchError(f"bar of {bar.ticker!r} given with the state of {state.ticker!r}")
        elif state.last_date is not None and bar.date <= state.last_date:
            raise OutOfOrderBar(bar, state.last_date)
        if (state.variance_ewmas.shape != (len(config.vol_decays),)
                or state.features.shape[1] != len(FEATURE_NAMES)):
            # Made by another volatility model or feature set: what it holds means nothing here.
            state = TickerState.empty(bar.ticker, len(FEATURE_NAMES), len(config.vol_decays))
        if (state.horizons != config.horizons or state.interval_offsets.shape != offsets_shape
                or (state.pending and state.pending[-1][LEVELS] != config.interval_levels)):
            state = _realigned(state, config)
        if state.arima_order != config.order and state.arima_params is not None:
            state = _arima_checked(state, config)
        priors.append(state)
    return priors


def _realigned(state: TickerState, config: CoreConfig) -> TickerState:
    """``state`` for ``config``'s horizons and levels: pending predictions of other horizons dropped, a
    new horizon uncalibrated, offsets of other levels reset (a ticker's first bar meets no horizon).
    The levels a state was made with are those of its last prediction; its pending predictions keep
    theirs, and are scored at them."""
    rows = {h: j for j, h in enumerate(state.horizons)}
    levels = len(config.interval_levels)
    same_levels = (state.interval_offsets.shape[1:] == (levels,)
                   and (not state.pending or state.pending[-1][LEVELS] == config.interval_levels))

    def take(array: np.ndarray) -> np.ndarray:
        return np.array([array[rows[h]] if h in rows else 0.0 for h in config.horizons], dtype=float)

    offsets = np.zeros((len(config.horizons), levels))
    for j, h in enumerate(config.horizons):
        if h in rows and same_levels:
            offsets[j] = state.interval_offsets[rows[h]]
    return replace(state, horizons=config.horizons, residual_sum=take(state.residual_sum),
                   residual_weight=take(state.residual_weight), zero_weight=take(state.zero_weight),
                   residuals=take(state.residuals), interval_offsets=offsets,
                   pending=tuple(p for p in state.pending if p[HORIZON] in config.horizons))


def _arima_checked(state: TickerState, config: CoreConfig) -> TickerState:
    """``state`` with an ARIMA of ``config``'s order: its own when it has that order (a state of
    format 3 or 4, which did not record it, is taken to when its arrays have that order's sizes),
    otherwise none, and a refit due at this bar. Another order's parameters would be read in this
    order's layout: wrong predictions, or arrays of the wrong shape."""
    arima = _plan(config).arima
    if (state.arima_order is None and state.arima_params is not None and state.arima_state is not None
            and state.arima_params.size == arima.p + arima.q + 1 and state.arima_state.size == arima.r
            and state.log_closes.size >= arima.d):
        return state
    return replace(state, arima_params=None, arima_state=None, arima_cov=None,
                   since_refit=max(state.since_refit, config.refit_every - 1))


def _predict_returns(model: PointModel, windows: np.ndarray) -> np.ndarray:
    try:
        returns = np.asarray(model.predict_returns(windows), dtype=float).reshape(-1)
    except Exception as error:
        raise ModelError(f"model {model.name!r} version {model.version} raised {type(error).__name__}: "
                         f"{error}") from error
    if returns.shape != (windows.shape[0],):
        raise ModelError(f"model {model.name!r} version {model.version} returned {returns.shape[0]} "
                         f"predictions for {windows.shape[0]} windows")
    return returns


