"""The worker's Prometheus metrics: names, types, labels and buckets, in one place.

Names follow Prometheus conventions (snake_case, base units, ``_total`` on counters) and the list
in ``../shared/DESIGN.md``; the dashboards and alert rules in ``grafana/`` and
``deploy/prometheus/`` query exactly these. Each :class:`WorkerMetrics` has a registry of its own, so
several workers can live in one test process.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, start_http_server

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
ERROR_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0)
PCT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.2, 0.5)


class BatchHistogram(Histogram):
    """A :class:`~prometheus_client.Histogram` that also observes a batch of values at once.

    ``observe`` walks the buckets in Python and takes a lock for each value; the worker observes
    several values per bar. :meth:`observe_many` bins a batch with numpy and adds to each bucket
    once: the same bucket counts as ``observe`` value by value, and the same sum up to rounding.
    """

    def observe_many(self, amounts: Sequence[float] | np.ndarray) -> None:
        """Observe every value of ``amounts`` (NaN counts in no bucket and makes the sum NaN, as
        ``observe`` does)."""
        values = np.asarray(amounts, dtype=float)
        if values.size == 0:
            return
        self._raise_if_not_observable()
        self._sum.inc(float(values.sum()))
        # The first bucket whose upper bound is >= the value, as observe() finds it; NaN finds none.
        bucket = np.searchsorted(self._upper_bounds, values, side="left")
        counts = np.bincount(bucket, minlength=len(self._upper_bounds))
        for i, count in enumerate(counts[: len(self._upper_bounds)].tolist()):
            if count:
                self._buckets[i].inc(count)


#: The kinds of stored records the worker quarantines (``forecaster_quarantined_total{kind}``).
QUARANTINE_KINDS = ("state", "position")


class WorkerMetrics:
    """Every metric the worker exports, registered in ``self.registry``."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.bars_consumed = Counter("forecaster_bars_consumed", "Bars consumed from the bars topic",
                                     registry=r)
        self.predictions = Counter("forecaster_predictions", "Predictions emitted", ["model"], registry=r)
        self.scores = Counter("forecaster_scores", "Predictions scored against the actual close", ["model"],
                              registry=r)
        self.dead_letters = Counter("forecaster_dead_letters", "Messages dead-lettered, by reason",
                                    ["reason"], registry=r)
        self.redelivered = Counter("forecaster_redelivered",
                                   "Messages met again below their partition's handled position; skipped",
                                   registry=r)
        self.rewinds = Counter("forecaster_offset_rewinds",
                               "Times a partition was sought back to its handled position (the consumer "
                               "skipped offsets, or the partition stalled behind its high water mark)",
                               registry=r)
        self.refits = Counter("forecaster_refits", "ARIMA refits, by outcome", ["outcome"], registry=r)
        self.feature_drift_alarms = Counter("forecaster_feature_drift_alarms",
                                            "Times a feature's PSI crossed the threshold", ["feature"],
                                            registry=r)
        self.error_drift_alarms = Counter("forecaster_error_drift_alarms",
                                          "Page-Hinkley alarms on the standardized absolute error",
                                          ["ticker"], registry=r)
        self.processing = BatchHistogram("forecaster_processing_seconds", "Processing time per bar",
                                         buckets=LATENCY_BUCKETS, registry=r)
        self.bar_to_prediction = BatchHistogram(
            "forecaster_bar_to_prediction_seconds",
            "From the bar's Kafka timestamp to its prediction being delivered", buckets=LATENCY_BUCKETS,
            registry=r)
        self.abs_error = BatchHistogram("forecaster_abs_error", "Absolute error of scored predictions",
                                        ["model"], buckets=ERROR_BUCKETS, registry=r)
        self.abs_pct_error = BatchHistogram("forecaster_abs_pct_error", "Absolute percentage error (ratio)",
                                            ["model"], buckets=PCT_BUCKETS, registry=r)
        # Sums that Prometheus turns into windowed tests pooled over every worker: skill against
        # naive (a Diebold-Mariano statistic with forecaster_abs_error_sum) and interval coverage.
        self.naive_abs_error = Counter("forecaster_naive_abs_error",
                                       "Sum of the naive forecast's absolute errors on the days each model "
                                       "was scored", ["model"], registry=r)
        self.loss_differential_squared = Counter(
            "forecaster_loss_differential_squared",
            "Sum of the squared differences between the model's and the naive absolute errors", ["model"],
            registry=r)
        self.interval_hits = Counter("forecaster_interval_hits",
                                     "Scored predictions whose actual close fell inside the central interval",
                                     ["level"], registry=r)
        # Every horizon's scores (forecaster_scores and _interval_hits are the shortest horizon's):
        # a horizon's coverage is its hits over its scores, pooled over every worker.
        self.scores_by_horizon = Counter(
            "forecaster_scores_by_horizon",
            "Predictions scored against the actual close, by horizon (trading days)", ["horizon"], registry=r)
        self.interval_hits_by_horizon = Counter(
            "forecaster_interval_hits_by_horizon",
            "Scored predictions whose actual close fell inside the central interval, by horizon "
            "(trading days)", ["level", "horizon"], registry=r)
        # A horizon's label as a number, for the calibration alert: a horizon-h prediction's
        # interval hits overlap those of its h - 1 neighbours, which widens their sampling error.
        self.horizon_days = Gauge("forecaster_horizon_days",
                                  "Trading days ahead of each horizon of the scores (the label as a value)",
                                  ["horizon"], registry=r)
        self.rolling_mae = Gauge("forecaster_rolling_mae", "Rolling mean absolute error", ["ticker", "model"],
                                 registry=r)
        self.rolling_mape = Gauge("forecaster_rolling_mape", "Rolling mean absolute percentage error (ratio)",
                                  ["ticker", "model"], registry=r)
        self.rolling_mase = Gauge("forecaster_rolling_mase",
                                  "Rolling MAE over the naive MAE on the same days (<1: beats naive)",
                                  ["ticker", "model"], registry=r)
        self.rolling_naive_mae = Gauge("forecaster_rolling_naive_mae", "Rolling MAE of the naive forecast",
                                       ["ticker"], registry=r)
        self.interval_coverage = Gauge("forecaster_interval_coverage",
                                       "Rolling share of actual closes inside the central interval",
                                       ["level", "ticker"], registry=r)
        self.interval_coverage_by_regime = Gauge(
            "forecaster_interval_coverage_by_regime",
            "Rolling share of actual closes inside the central interval, all tickers, by the volatility "
            "regime (calm, middle, volatile) the prediction was made in", ["level", "regime"], registry=r)
        self.interval_relative_width = Gauge("forecaster_interval_relative_width",
                                             "Rolling mean interval width over the predicted close",
                                             ["level", "ticker"], registry=r)
        self.predicted_close = Gauge("forecaster_predicted_close", "Latest predicted close", ["ticker"],
                                     registry=r)
        self.actual_close = Gauge("forecaster_actual_close", "Latest actual close", ["ticker"], registry=r)
        self.feature_drift_score = Gauge("forecaster_feature_drift_score",
                                         "PSI of the recent window against the training reference (once the "
                                         "window is full)",
                                         ["feature"], registry=r)
        self.feature_drift_state = Gauge("forecaster_feature_drift_state",
                                         "1 while the feature's PSI is above the threshold", ["feature"],
                                         registry=r)
        self.error_drift_state = Gauge("forecaster_error_drift_state",
                                       "1 within a rolling window after a Page-Hinkley alarm",
                                       ["ticker"], registry=r)
        self.model_info = Info("forecaster_model", "Model serving the predictions", registry=r)
        self.event_time_lag = Gauge("forecaster_event_time_lag_seconds",
                                    "Wall clock minus the end of the latest bar's trading day", registry=r)
        self.consumer_lag = Gauge("forecaster_consumer_lag", "Messages behind the end of the bars topic",
                                  ["partition"], registry=r)
        self.quarantined = Counter("forecaster_quarantined",
                                   "Stored records that could not be decoded, dead-lettered with their bytes "
                                   "and started afresh, by kind (state: a ticker's, position: a bars "
                                   "partition's)", ["kind"], registry=r)
        self.registry_up = Gauge("forecaster_registry_up",
                                 "1 while the model registry answered its last query, 0 while it does not "
                                 "(the worker keeps serving the model it has)", registry=r)
        self.registry_errors = Counter("forecaster_registry_errors",
                                       "Registry queries that failed (unreachable or unreadable)", registry=r)
        # Challengers in shadow (stream_app/shadow.py): sums that Prometheus pools over every worker
        # into the panel relative MAE against the champion, and each worker's running panel test.
        challenger = ["alias", "version"]
        self.shadow_pairs = Counter("forecaster_shadow_pairs",
                                    "Score pairs (same ticker, day and horizon; no warm-up) of a challenger "
                                    "and the champion", challenger, registry=r)
        self.shadow_champion_loss = Counter(
            "forecaster_shadow_champion_loss",
            "Sum of the champion's absolute errors over the prediction day's close, on the pairs", challenger,
            registry=r)
        self.shadow_challenger_loss = Counter(
            "forecaster_shadow_challenger_loss",
            "Sum of the challenger's absolute errors over the prediction day's close, on the pairs",
            challenger, registry=r)
        self.shadow_panel_dm = Gauge(
            "forecaster_shadow_panel_dm",
            "This worker's panel Diebold-Mariano statistic of the challenger's losses against the "
            "champion's over the last 250 days of pairs (negative: the challenger's are lower)", challenger,
            registry=r)
        self.last_bar_timestamp = Gauge("forecaster_last_bar_timestamp_seconds",
                                        "Unix time when the last bar was processed", registry=r)

    def serve(self, host: str, port: int) -> None:
        """Expose ``/metrics`` on ``host:port`` (a daemon thread)."""
        start_http_server(port, addr=host, registry=self.registry)
