"""Offline replay of bars through the per-bar core: the records the stream would emit, and their metrics.

:func:`run_backtest` feeds bars in the order given (a reader's ``(date, ticker)`` order) to
:func:`~models.core.step.step_guarded`, one batch per run of bars of the same date with distinct
tickers. Batches give the same records as single steps, so the result is record for record what the
stream worker emits for the same bars. A bar dated on or before its ticker's last applied bar is not
applied and is listed in ``rejected`` with the reason ``out_of_order``, and one the step raised on
with ``step_failed``, as the worker dead-letters them.

Metrics compare the model with the naive forecast on the same days: every scored prediction that was
not a warm-up one (during warm-up the model *is* naive). They are summarised per horizon
(``by_horizon``); ``pooled``, ``per_ticker`` and ``panel`` are the shortest horizon's.

Examples
--------
>>> import datetime as dt
>>> from models.core.bar import Bar
>>> from models.core.config import CoreConfig
>>> day = dt.date(2024, 1, 1)
>>> bars = [Bar("ACME", day + dt.timedelta(days=k), c, c, c, c, 100.0)
...         for k, c in enumerate([10.0, 10.5] * 12)]
>>> result = run_backtest(bars + bars[-1:], CoreConfig(model="naive"))
>>> len(result.predictions), len(result.scores), [reason for _, reason in result.rejected]
(24, 23, ['out_of_order'])
>>> # The first 20 predictions are warm-up ones: the intervals need 20 residuals (models.core.intervals).
>>> result.pooled["n"], round(result.pooled["mae"], 4), result.pooled["relative_mae"]
(3.0, 0.5, 1.0)
>>> result.panel
{'tickers': 1.0, 'tickers_beating_naive': 0.0, 'relative_mae': 1.0}
>>> weekly = run_backtest(bars, CoreConfig(model="naive", horizons=(1, 5)))
>>> len(weekly.predictions), len(weekly.scores), sorted(weekly.by_horizon)  # 24 + 24; 23 + 19
(48, 42, [1, 5])
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from models.core.bar import Bar
from models.core.config import CoreConfig
from models.core.metrics import panel, summarize
from models.core.model_slot import PointModel
from models.core.state import TickerState
from models.core.step import StepFailure, step_guarded

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HorizonSummary:
    """One horizon's metrics: :func:`~models.core.metrics.summarize` of its non-warm-up scores, pooled
    and per ticker, and :func:`~models.core.metrics.panel` of the latter."""

    pooled: dict[str, float]
    per_ticker: dict[str, dict[str, float]]
    panel: dict[str, float]

    @classmethod
    def of(cls, scores: Iterable[dict[str, Any]]) -> HorizonSummary:
        judged = [s for s in scores if not s["warmup"]]
        by_ticker: dict[str, list[dict[str, Any]]] = {}
        for score in judged:
            by_ticker.setdefault(score["ticker"], []).append(score)
        per_ticker = {ticker: summarize(scores) for ticker, scores in sorted(by_ticker.items())}
        return cls(pooled=summarize(judged), per_ticker=per_ticker, panel=panel(per_ticker))


@dataclass
class BacktestResult:
    """What a backtest produced.

    Attributes
    ----------
    predictions, scores
        The prediction and score records, in emission order (a bar's in ascending horizon).
    features
        The feature row of each prediction's day (``features[i]`` goes with ``predictions[i]``; a
        bar's predictions of several horizons share its row): the causal features a model trains
        on, the same rows the stream computes.
    rejected
        Bars not applied, with the reason (``out_of_order``).
    states
        Each ticker's final state.
    pooled, per_ticker
        :func:`~models.core.metrics.summarize` of the shortest horizon's non-warm-up scores, pooled
        and per ticker (pooled MAE and RMSE are in the prices' currency: the highest-priced tickers
        weigh most).
    panel
        :func:`~models.core.metrics.panel` of ``per_ticker``: the scale-free figures over tickers.
    by_horizon
        The same three summaries for each horizon: ``{h: HorizonSummary}``, ascending.
    """

    predictions: list[dict[str, Any]] = field(default_factory=list)
    scores: list[dict[str, Any]] = field(default_factory=list)
    features: list[np.ndarray] = field(default_factory=list)
    rejected: list[tuple[Bar, str]] = field(default_factory=list)
    states: dict[str, TickerState] = field(default_factory=dict)
    pooled: dict[str, float] = field(default_factory=dict)
    per_ticker: dict[str, dict[str, float]] = field(default_factory=dict)
    panel: dict[str, float] = field(default_factory=dict)
    by_horizon: dict[int, HorizonSummary] = field(default_factory=dict)

    def rows(self) -> list[dict[str, Any]]:
        """:func:`prediction_rows` of this backtest, for ``forecaster backtest --out``."""
        return prediction_rows(self.predictions, self.scores)


#: Outcome columns :func:`prediction_rows` adds to a prediction's fields, and the score field of each.
OUTCOME_FIELDS = {"naive_close": "naive_close", "actual_date": "target_date", "actual_close": "actual_close",
                  "error": "error", "naive_error": "naive_error"}


def prediction_rows(predictions: Iterable[dict[str, Any]],
                    scores: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per prediction: its fields (less ``record_type`` and ``produced_at``) and its outcome,
    :data:`OUTCOME_FIELDS` (None while unscored). Works on the stream's records as on a backtest's
    (records written before horizons existed have none: they are one day ahead)."""
    outcome = {(s["ticker"], s["as_of"], s.get("horizon", 1)): s for s in scores}
    rows = []
    for prediction in predictions:
        score = outcome.get((prediction["ticker"], prediction["as_of"], prediction.get("horizon", 1)))
        row = {k: v for k, v in prediction.items() if k not in ("record_type", "produced_at")}
        row.update({column: score[name] if score else None for column, name in OUTCOME_FIELDS.items()})
        rows.append(row)
    return rows


def run_backtest(bars: Iterable[Bar], config: CoreConfig, model: PointModel | None = None) -> BacktestResult:
    """Run the core over ``bars`` and measure the model against naive on the same days."""
    result = BacktestResult()
    states = result.states
    batch: list[Bar] = []
    first_failure: StepFailure | None = None  # the first bar the step raised on, for the log

    def flush() -> None:
        nonlocal first_failure
        priors = [states.get(b.ticker) for b in batch]
        for bar, stepped in zip(batch, step_guarded(priors, batch, config, model), strict=True):
            if isinstance(stepped, StepFailure):
                first_failure = first_failure or stepped
                result.rejected.append((bar, stepped.reason))
                continue
            states[bar.ticker] = stepped.state
            result.scores.extend(stepped.scores)
            result.predictions.extend(stepped.predictions)
            result.features.extend([stepped.features] * len(stepped.predictions))
        batch.clear()

    in_batch: set[str] = set()
    for bar in bars:
        if batch and (bar.date != batch[0].date or bar.ticker in in_batch):
            flush()
            in_batch.clear()
        state = states.get(bar.ticker)
        if state is not None and state.last_date is not None and bar.date <= state.last_date:
            result.rejected.append((bar, "out_of_order"))
            continue
        batch.append(bar)
        in_batch.add(bar.ticker)
    if batch:
        flush()
    if first_failure is not None:  # once: a bug that every bar meets must not write a traceback per bar
        log.error("the forecasting step failed on %d bar(s), rejected as step_failed; the first: %s",
                  sum(reason == StepFailure.reason for _, reason in result.rejected), first_failure.detail,
                  exc_info=first_failure.error)

    by_horizon: dict[int, list[dict[str, Any]]] = {h: [] for h in config.horizons}
    for score in result.scores:
        by_horizon[score["horizon"]].append(score)
    result.by_horizon = {h: HorizonSummary.of(scores) for h, scores in by_horizon.items()}
    shortest = result.by_horizon[config.horizons[0]]
    result.pooled, result.per_ticker, result.panel = shortest.pooled, shortest.per_ticker, shortest.panel
    return result
