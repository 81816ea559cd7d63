"""Turns each batch's results into the worker's metrics: errors, skill, calibration and drift.

Per-ticker series exist for the first ``metrics_ticker_limit`` tickers seen; the others are pooled
under ``ticker="other"``, and every ticker also counts in ``ticker="all"``, so the number of series
stays bounded whatever the universe. Coverage is also pooled by the volatility regime each scored
prediction was made in (its ``vol_regime``), which shows calibration in calm and in storm. With
several horizons configured (``horizons``) every figure is the shortest horizon's, so that the
metrics mean the same whatever else is forecast, except the counts of scores and of interval hits
by horizon, which count every horizon's. The rolling windows live here, in memory: they are figures
for people to watch, not state the predictions depend on, so a restart may reset them.

A worker exports per-ticker and per-partition series only for the partitions it owns: after a
rebalance, :meth:`ForecastMonitor.retain_partitions` removes the series (and forgets the rolling
figures) of the tickers and partitions that went to another worker, so that with several workers
each ticker has one live series, not one more frozen at its last value per former owner.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from itertools import chain, compress
from operator import itemgetter
from typing import Any

import numpy as np

from forecaster.settings import Settings
from models.core.bar import REASONS, Bar
from models.core.intervals import level_label
from models.core.step import StepResult
from models.drift import PSI, PageHinkleys, Reference
from stream_app.metrics import QUARANTINE_KINDS, WorkerMetrics

ALL = "all"
OTHER = "other"
#: Pooled groups keep a longer window: they mix many tickers' errors.
POOLED_WINDOW_FACTOR = 10


class RollingErrors:
    """The last ``window`` rows of figures of one group's scored predictions (one ticker, "other",
    "all" or a regime), in a ring buffer; a batch's rows go in at once.

    Means are taken over the buffer when exported, not kept as running sums, so no rounding
    accumulates however long the worker runs.
    """

    def __init__(self, window: int, levels: Iterable[str]) -> None:
        self.window = window
        # abs error, abs pct error, naive abs error, then (inside, relative width) per level
        self.rows = np.zeros((window, 3 + 2 * len(tuple(levels))))
        self.filled = 0
        self._next = 0  # the row the next score overwrites

    def add(self, rows: np.ndarray) -> None:
        """Append ``rows`` (oldest first), dropping the oldest beyond the window."""
        rows = rows[len(rows) - self.window:] if len(rows) > self.window else rows
        end = self._next + len(rows)
        if end <= self.window:
            self.rows[self._next:end] = rows
        else:
            split = self.window - self._next
            self.rows[self._next:] = rows[:split]
            self.rows[: end - self.window] = rows[split:]
        self._next = end % self.window
        self.filled = min(self.window, self.filled + len(rows))

    def means(self) -> list[float]:
        if not self.filled:
            return [0.0] * self.rows.shape[1]
        # The sum and division that ndarray.mean does, without its Python wrapper: once per group per batch.
        return (np.add.reduce(self.rows[: self.filled], axis=0) / self.filled).tolist()


class ForecastMonitor:
    """Updates :class:`~stream_app.metrics.WorkerMetrics` from the worker's batches."""

    def __init__(self, settings: Settings, metrics: WorkerMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.levels = tuple(map(level_label, settings.interval_levels))  # as the records' fields name them
        self._level_keys = [(f"inside_{level}", f"width_{level}") for level in self.levels]
        self._inside_fields = tuple(inside for inside, _ in self._level_keys)
        self.level_labels = {name: str(level) for name, level in zip(self.levels, settings.interval_levels,
                                                                     strict=True)}
        self.labelled: set[str] = set()
        self._children: dict[tuple[Any, str], Any] = {}
        # The labelled series of each ticker label, to remove them when the ticker moves away.
        self._series: dict[str, dict[tuple[Any, tuple[str, ...]], Any]] = {}
        # The rolling figures' series of each group and model, in the order _export_group sets them.
        self._exported: dict[str, dict[str, list[Any]]] = {}
        self.partition_of: dict[str, int] = {}
        self._lag_partitions: set[int] = set()
        self.groups: dict[str, RollingErrors] = {}
        self.regimes: dict[str, RollingErrors] = {}
        self.error_detectors = PageHinkleys(settings.page_hinkley_threshold)
        self.since_alarm: dict[str, int] = {}
        # Errors are standardized by the sigma that the widest interval implies.
        self._sigma_per_width = 1.0 / (2 * _normal_quantile(settings.interval_levels[-1]))
        self.psi: dict[str, PSI] = {}
        self.drifted: dict[str, bool] = {}
        self._warm_reference: list[np.ndarray] = []
        self._feature_names: tuple[str, ...] = ()
        # Known label values get their series at zero now: a rate over a series that appears only
        # with its first event misses that event, and dashboards would show "no data" for "none".
        for reason in REASONS:
            metrics.dead_letters.labels(reason)
        for outcome in ("ok", "failed"):
            metrics.refits.labels(outcome)
        for kind in QUARANTINE_KINDS:
            metrics.quarantined.labels(kind)
        for level in self.levels:
            metrics.interval_hits.labels(self.level_labels[level])
        # Each horizon's score count and hit counts per level, in the order of self.levels.
        self._by_horizon: dict[int, tuple[Any, list[Any]]] = {}
        for horizon in settings.horizons:
            self._horizon_children(horizon)

    # -- model and reference ---------------------------------------------------------------

    def set_model(self, name: str, version: str, reference: Mapping[str, Reference] | None,
                  feature_names: tuple[str, ...]) -> None:
        """A new model serves: label it and compare the inputs with its training reference.

        Without a reference (no champion, or one trained without it) the first
        ``4 * drift_window`` feature rows the worker sees become the reference, so that drift is
        still measured against where the stream started.
        """
        self.metrics.model_info.info({"name": name, "version": version})
        self._feature_names = feature_names
        self._warm_reference = []
        self.psi = {}
        for feature in feature_names:  # series exist from the start, at zero, not at the first alarm
            self.metrics.feature_drift_alarms.labels(feature)
        m = self.metrics  # the skill counters too: the alerts take their increase over a window
        for metric in (m.predictions, m.scores, m.abs_error, m.naive_abs_error, m.loss_differential_squared):
            metric.labels(name)
        if reference:
            self.psi = {f: PSI(ref, self.settings.drift_window) for f, ref in reference.items()
                        if f in feature_names}

    def _learn_warm_reference(self, rows: list[np.ndarray]) -> None:
        self._warm_reference.extend(rows)
        if len(self._warm_reference) >= 4 * self.settings.drift_window:
            sample = np.vstack(self._warm_reference)
            self._warm_reference = []
            for j, name in enumerate(self._feature_names):
                try:
                    self.psi[name] = PSI(Reference.from_sample(sample[:, j]), self.settings.drift_window)
                except ValueError:
                    continue  # a feature without enough finite values has no reference yet

    # -- per batch ---------------------------------------------------------------------------

    def label(self, ticker: str) -> str:
        if ticker in self.labelled:
            return ticker
        label = ticker if len(self.labelled) < self.settings.metrics_ticker_limit else OTHER
        if label not in self.labelled:
            self.labelled.add(label)
            self._labels(label, self.metrics.error_drift_alarms, label)
            self._labels(label, self.metrics.error_drift_state, label).set(0.0)
        return label

    def _group(self, name: str) -> RollingErrors:
        group = self.groups.get(name)
        if group is None:
            window = self.settings.rolling_window
            if name in (ALL, OTHER):
                window *= POOLED_WINDOW_FACTOR
            group = self.groups[name] = RollingErrors(window, self.levels)
        return group

    def observe_batch(self, results: list[tuple[Bar, StepResult]], seconds: float) -> None:
        """Record one processed batch (``seconds`` is its processing time).

        A batch's figures are taken a column at a time, not a bar at a time: each gauge is set once
        per batch, to its last value in the batch (what a scrape would read after it).
        """
        if not results:
            return
        m = self.metrics
        now = time.time()
        m.bars_consumed.inc(len(results))
        m.processing.observe_many(np.full(len(results), seconds / len(results)))
        m.last_bar_timestamp.set(now)
        latest = max(bar.date for bar, _ in results)
        close_of_day = dt.datetime.combine(latest, dt.time(23, 59, 59), dt.UTC).timestamp()
        m.event_time_lag.set(max(0.0, now - close_of_day))
        # Tickers get their labels in the order they first appear, as bar by bar.
        labels = {ticker: self.label(ticker) for ticker in dict.fromkeys(bar.ticker for bar, _ in results)}
        # The figures are the shortest horizon's: its records come first in a bar's, ascending.
        predictions = Counter(result.predictions[0]["model"] for _, result in results)
        refits = Counter(result.refit for _, result in results if result.refit is not None)
        for counter, metric in ((predictions, m.predictions), (refits, m.refits)):
            for name, count in counter.items():
                metric.labels(name).inc(count)
        last = {bar.ticker: (bar, result) for bar, result in results}
        for ticker, (bar, result) in last.items():
            label = labels[ticker]
            if label != OTHER:
                self._labels(label, m.predicted_close, label).set(result.predictions[0]["predicted_close"])
                self._labels(label, m.actual_close, label).set(bar.close)
        shortest = self.settings.horizons[0]
        # A prediction made before FORECASTER_INTERVAL_LEVELS changed is scored at its own levels, in
        # fields of other names: left out, for at most the longest horizon's days after the change.
        ours = self._at_these_levels
        scored = [(bar.ticker, score) for bar, result in results
                  if result.scores and (score := result.scores[0])["horizon"] == shortest and ours(score)]
        if scored:
            serving = results[-1][1].predictions[0]["model"]
            self._observe_scores(scored, labels, serving)
        if len(self.settings.horizons) > 1:  # one horizon: _observe_scores counted them all
            self._count_other_horizons([score for _, result in results for score in result.scores
                                        if score["horizon"] != shortest and ours(score)])
        # Warm-up rows (ARIMA not fitted yet) would make a reference no later row resembles.
        self._input_drift([result.features for _, result in results if not result.predictions[0]["warmup"]])

    def _observe_scores(self, scored: Sequence[tuple[str, Mapping]], labels: Mapping[str, str],
                        model: str) -> None:
        """The skill counters, error histograms, rolling figures and error drift of a batch's scores
        (``scored``: ``(ticker, score)`` in order; ``labels``: each ticker's label; ``model``: the
        one now serving, whose series the rolling figures update)."""
        m = self.metrics
        tickers = [ticker for ticker, _ in scored]
        scores = [score for _, score in scored]
        rows, sigma = self._rows(scores)
        abs_error, abs_pct_error, naive_abs_error = rows[:, 0], rows[:, 1], rows[:, 2]
        for name, mine in _positions([score["model"] for score in scores]).items():
            m.scores.labels(name).inc(len(mine))
            # Records carry percent (as the backtest prints it); metrics carry ratios (Prometheus' base unit).
            self._child(m.abs_error, name).observe_many(abs_error[mine])
            self._child(m.abs_pct_error, name).observe_many(abs_pct_error[mine])
            m.naive_abs_error.labels(name).inc(float(naive_abs_error[mine].sum()))
            m.loss_differential_squared.labels(name).inc(
                float(((abs_error[mine] - naive_abs_error[mine]) ** 2).sum()))
        hits = np.add.reduce(rows[:, 3::2], axis=0).tolist()
        for level, hit in zip(self.levels, hits, strict=True):
            m.interval_hits.labels(self.level_labels[level]).inc(int(hit))
        self._count_horizon(self.settings.horizons[0], len(scores), hits)
        self._group(ALL).add(rows)
        self._export_group(ALL, model)
        for label, mine in _positions([labels[ticker] for ticker in tickers]).items():
            self._group(label).add(rows[mine])
            self._export_group(label, model)
        for regime, mine in _positions([score.get("vol_regime") for score in scores]).items():
            if regime is None:
                continue
            group = self._regime(regime)
            group.add(rows[mine])
            means = group.means()
            for i, level in enumerate(self.levels):
                m.interval_coverage_by_regime.labels(self.level_labels[level], regime).set(means[3 + 2 * i])
        self._error_drift(tickers, labels, abs_error, sigma)

    def _at_these_levels(self, score: Mapping) -> bool:
        """Whether ``score`` has a field for each of the configured interval levels."""
        return all(map(score.__contains__, self._inside_fields))

    def _count_other_horizons(self, scores: Sequence[Mapping]) -> None:
        """The counts by horizon of ``scores``, those of the horizons other than the shortest."""
        if not scores:
            return
        table = _columns(scores, ["horizon", *(inside for inside, _ in self._level_keys)])
        horizons, which = np.unique(table[:, 0], return_inverse=True)
        for i, horizon in enumerate(horizons.tolist()):
            mine = table[which == i, 1:]
            self._count_horizon(int(horizon), len(mine), np.add.reduce(mine, axis=0).tolist())

    def _count_horizon(self, horizon: int, scores: int, hits: Sequence[float]) -> None:
        """Add ``scores`` scores of ``horizon`` and their ``hits`` inside each level's interval."""
        scored, hit_children = self._horizon_children(horizon)
        scored.inc(scores)
        for child, hit in zip(hit_children, hits, strict=True):
            child.inc(int(hit))

    def _horizon_children(self, horizon: int) -> tuple[Any, list[Any]]:
        """The series of ``horizon``'s score count and hit counts (looked up once, see :meth:`_child`)."""
        children = self._by_horizon.get(horizon)
        if children is None:
            m, label = self.metrics, str(horizon)
            m.horizon_days.labels(label).set(horizon)
            children = self._by_horizon[horizon] = (
                m.scores_by_horizon.labels(label),
                [m.interval_hits_by_horizon.labels(self.level_labels[level], label) for level in self.levels])
        return children

    def _rows(self, scores: Sequence[Mapping]) -> tuple[np.ndarray, np.ndarray]:
        """The :class:`RollingErrors` rows of ``scores`` (abs error, abs pct error as a ratio, naive
        abs error, then per level inside and width over the predicted close), and the sigma each
        score's widest interval implies."""
        keys = ["error", "abs_pct_error", "naive_error", "predicted_close"]
        for inside, width in self._level_keys:
            keys += [inside, width]
        table = _columns(scores, keys)
        rows = np.empty((len(scores), 3 + 2 * len(self.levels)))
        rows[:, 0] = np.abs(table[:, 0])
        rows[:, 1] = table[:, 1] / 100.0
        rows[:, 2] = np.abs(table[:, 2])
        rows[:, 3::2] = table[:, 4::2]
        rows[:, 4::2] = table[:, 5::2] / table[:, 3:4]
        return rows, table[:, keys.index(self._level_keys[-1][1])] * self._sigma_per_width

    def observe_partitions(self, partition_of: Mapping[str, int]) -> None:
        """Note the ``bars`` partition of each ticker seen (``ticker -> partition``)."""
        self.partition_of.update(partition_of)

    def observe_consumer_lag(self, partition: int, lag: int) -> None:
        self._lag_partitions.add(partition)
        self.metrics.consumer_lag.labels(str(partition)).set(lag)

    def retain_partitions(self, owned: set[int]) -> None:
        """After a rebalance: drop the series and rolling figures of every ticker and partition of
        ``bars`` outside ``owned`` (their new owner exports them)."""
        for partition in self._lag_partitions - owned:
            self.metrics.consumer_lag.remove(str(partition))
        self._lag_partitions &= owned
        for ticker in [t for t, partition in self.partition_of.items() if partition not in owned]:
            del self.partition_of[ticker]
            self.error_detectors.forget(ticker)
            self.since_alarm.pop(ticker, None)
            if ticker in self.labelled:  # not pooled under "other": its own series go
                self.labelled.discard(ticker)
                self.groups.pop(ticker, None)
                self._exported.pop(ticker, None)
                for metric, values in self._series.pop(ticker, {}):
                    metric.remove(*values)

    def observe_registry(self, answered: bool) -> None:
        """The model registry answered a query, or did not (unreachable, unreadable)."""
        self.metrics.registry_up.set(1.0 if answered else 0.0)
        if not answered:
            self.metrics.registry_errors.inc()

    def observe_quarantined(self, kind: str, count: int = 1) -> None:
        """``count`` stored records of ``kind`` (one of :data:`~stream_app.metrics.QUARANTINE_KINDS`)
        could not be decoded and were quarantined."""
        self.metrics.quarantined.labels(kind).inc(count)

    def observe_dead_letters(self, reasons: Iterable[str]) -> None:
        for reason in reasons:
            self.metrics.dead_letters.labels(reason).inc()

    def observe_delivery(self, bar_timestamps: Iterable[float | None]) -> None:
        """Bar-to-prediction latency: from each bar's Kafka timestamp to its prediction's delivery."""
        now = time.time()
        latencies = np.array([now - ts for ts in bar_timestamps if ts])
        self.metrics.bar_to_prediction.observe_many(np.maximum(latencies, 0.0))

    # -- helpers -----------------------------------------------------------------------------

    def _child(self, metric: Any, label: str) -> Any:
        """``metric.labels(label)``, looked up once: ``labels`` takes a lock and builds its key on
        every call, several times per bar."""
        child = self._children.get((metric, label))
        if child is None:
            child = self._children[(metric, label)] = metric.labels(label)
        return child

    def _regime(self, name: str) -> RollingErrors:
        group = self.regimes.get(name)
        if group is None:
            group = self.regimes[name] = RollingErrors(
                self.settings.rolling_window * POOLED_WINDOW_FACTOR, self.levels)
        return group

    def _labels(self, group: str, metric: Any, *values: str) -> Any:
        """``metric.labels(*values)``, looked up once (see :meth:`_child`) and remembered as a series
        of the ticker label ``group``."""
        series = self._series.setdefault(group, {})
        child = series.get((metric, values))
        if child is None:
            child = series[(metric, values)] = metric.labels(*values)
        return child

    def _export_group(self, name: str, model: str) -> None:
        children = self._exported.setdefault(name, {}).get(model)
        if children is None:
            m = self.metrics
            children = [self._labels(name, m.rolling_mae, name, model),
                        self._labels(name, m.rolling_mape, name, model),
                        self._labels(name, m.rolling_naive_mae, name),
                        self._labels(name, m.rolling_mase, name, model)]
            for level in self.levels:
                label = self.level_labels[level]
                children += [self._labels(name, m.interval_coverage, label, name),
                             self._labels(name, m.interval_relative_width, label, name)]
            self._exported[name][model] = children
        means = self._group(name).means()
        mae, naive_mae = means[0], means[2]
        mase = mae / naive_mae if naive_mae > 0 else math.nan
        # The means' columns after the third are (coverage, relative width) per level, as the children.
        for child, value in zip(children, [mae, means[1], naive_mae, mase, *means[3:]], strict=True):
            child.set(value)

    def _error_drift(self, tickers: Sequence[str], labels: Mapping[str, str], abs_error: np.ndarray,
                     sigma: np.ndarray) -> None:
        """Page-Hinkley on each ticker's scores of the batch in order (``abs_error`` and ``sigma`` of
        each score; a score without a positive sigma is skipped)."""
        # The error is standardized by the interval's implied sigma, so one threshold fits every
        # ticker and price level: a calm ticker's errors are about |N(0,1)|.
        judged = ~(sigma <= 0)  # a NaN sigma is judged (and skipped by the test), as a NaN error
        with np.errstate(divide="ignore", invalid="ignore"):
            standardized = abs_error[judged] / sigma[judged]
        judged_tickers = list(compress(tickers, judged.tolist()))
        alarms = self.error_detectors.update_many(judged_tickers, standardized)
        raised: Counter[str] = Counter()
        last_alarm: dict[str, int] = {}
        for i in np.flatnonzero(alarms).tolist():
            raised[judged_tickers[i]] += 1
            last_alarm[judged_tickers[i]] = i
        counts = Counter(judged_tickers)
        for ticker, alarmed in raised.items():
            # Counted from 0 at the last alarm, as one score after another would count.
            self.since_alarm[ticker] = judged_tickers[last_alarm[ticker] + 1:].count(ticker)
            self._labels(labels[ticker], self.metrics.error_drift_alarms, labels[ticker]).inc(alarmed)
        for ticker in counts.keys() & self.since_alarm.keys() - raised.keys():
            self.since_alarm[ticker] += counts[ticker]
        window = self.settings.rolling_window
        for ticker in counts:
            label = labels[ticker]
            if label != OTHER:
                # The state stays up for a rolling window after an alarm, long enough to be scraped.
                recent = self.since_alarm.get(ticker, window) < window
                self._labels(label, self.metrics.error_drift_state, label).set(1.0 if recent else 0.0)

    def _input_drift(self, rows: list[np.ndarray]) -> None:
        if not rows:
            return
        if not self.psi:
            needed = 4 * self.settings.drift_window - len(self._warm_reference)
            self._learn_warm_reference(rows[:needed])
            rows = rows[needed:]  # the rows after the reference are the first ones it judges
            if not self.psi or not rows:
                return
        names = self._feature_names
        block = np.array(rows)  # as np.vstack of the 1-D rows, without its call per row
        m = self.metrics
        for j, name in enumerate(names):
            psi = self.psi.get(name)
            if psi is None:
                continue
            psi.update_many(block[:, j])
            if not psi.full:  # a part-filled window's score is the noise of small counts (PSI.full)
                continue
            score = psi.score()
            drifted = score > self.settings.psi_threshold
            m.feature_drift_score.labels(name).set(score)
            m.feature_drift_state.labels(name).set(1.0 if drifted else 0.0)
            if drifted and not self.drifted.get(name, False):
                m.feature_drift_alarms.labels(name).inc()
            self.drifted[name] = drifted


def _columns(records: Sequence[Mapping], keys: list[str]) -> np.ndarray:
    """The numeric fields ``keys`` of ``records`` as floats, one row per record: one pass in C."""
    table = np.fromiter(chain.from_iterable(map(itemgetter(*keys), records)), float, len(records) * len(keys))
    return table.reshape(len(records), len(keys))


def _positions(keys: list[Any]) -> dict[Any, list[int]]:
    """The positions of each distinct key in ``keys``, keys in order of first appearance."""
    positions: dict[Any, list[int]] = {}
    for i, key in enumerate(keys):
        positions.setdefault(key, []).append(i)
    return positions


def _normal_quantile(level: float) -> float:
    """Two-sided standard normal quantile of a central interval level (0.95 -> 1.96)."""
    from statistics import NormalDist

    return NormalDist().inv_cdf(0.5 + level / 2)
