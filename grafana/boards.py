"""The three dashboards: forecast error (with calibration), drift, operations.

Every query reads the worker's metric contract (``stream_app/metrics.py``). Thresholds drawn on
the panels (PSI threshold, interval levels, coverage tolerance) are the defaults of
:class:`forecaster.settings.Settings`, so the pictures agree with the alert rules and the worker.
Panels use the template variables ``$ticker`` and ``$model``, and Grafana's ``$__rate_interval``.

Every panel, variable and annotation reads the datasource chosen in the ``datasource`` variable (of
type ``prometheus``, Grafana's ``${datasource}`` convention), so a dashboard imported into any
Grafana asks for its Prometheus; left empty, the variable takes the default Prometheus datasource,
which the stack's provisioning (``grafana/provisioning``) sets, so that stack opens with no click.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard, heatmap, prometheus, stat, statetimeline, timeseries
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models import prometheus as prom_model

from forecaster.settings import Settings

DATASOURCE_VARIABLE = "datasource"
DATASOURCE = model.DataSourceRef(type_val="prometheus", uid=f"${{{DATASOURCE_VARIABLE}}}")
WORKER_JOB = "forecaster-worker"
TICKER = 'ticker=~"$ticker"'
MODEL = 'model=~"$model"'
LATENCY_QUANTILES = (0.5, 0.99)
ERROR_QUANTILES = (0.5, 0.9, 0.99)
#: Window of the pooled skill and coverage lines: the alert rules' (deploy/prometheus/rules).
POOLED_WINDOW = "7d"


@dataclass(frozen=True)
class Query:
    """One PromQL expression of a panel and the legend of its series."""

    expr: str
    legend: str = ""


def _targets(queries: Sequence[Query],
             instant: bool = False) -> list[cogbuilder.Builder[cogvariants.Dataquery]]:
    targets: list[cogbuilder.Builder[cogvariants.Dataquery]] = []
    for index, query in enumerate(queries):
        ref_id = chr(ord("A") + index)
        target = prometheus.Dataquery().expr(query.expr).legend_format(query.legend).ref_id(ref_id)
        targets.append(target.instant() if instant else target.range())
    return targets


def _quantiles(metric: str, quantiles: Sequence[float], by: str = "", selector: str = "") -> list[Query]:
    """``histogram_quantile`` of a histogram, one query per quantile."""
    group = ", ".join(["le", *([by] if by else [])])
    legend_prefix = f"{{{{{by}}}}} " if by else ""
    return [
        Query(f"histogram_quantile({q}, sum by ({group}) "
              f"(rate({metric}_bucket{{{selector}}}[$__rate_interval])))",
              f"{legend_prefix}p{round(q * 100)}")
        for q in quantiles
    ]


def _threshold_lines(panel: timeseries.Panel, *steps: tuple[float | None, str]) -> timeseries.Panel:
    """Dashed horizontal lines at each step's value (the first step, ``None``, is the base colour)."""
    thresholds = (dashboard.ThresholdsConfig().mode(model.ThresholdsMode.ABSOLUTE)
                  .steps([model.Threshold(value=value, color=color) for value, color in steps]))
    style = common_builders.GraphThresholdsStyleConfig().mode(common.GraphThresholdsStyleMode.DASHED)
    return panel.thresholds(thresholds).thresholds_style(style)


def _timeseries(title: str, description: str, queries: Sequence[Query], unit: str = "short",
                width: int = 12) -> timeseries.Panel:
    return (timeseries.Panel().title(title).description(description).datasource(DATASOURCE)
            .targets(_targets(queries)).unit(unit).span(width).height(8))


def _stat(title: str, description: str, query: Query, unit: str = "short",
          text_mode: common.BigValueTextMode = common.BigValueTextMode.VALUE) -> stat.Panel:
    return (stat.Panel().title(title).description(description).datasource(DATASOURCE)
            .targets(_targets([query], instant=True)).unit(unit).text_mode(text_mode)
            .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"])).span(6).height(4))


def _states(title: str, description: str, query: Query, calm: str, alarmed: str) -> statetimeline.Panel:
    mapping = model.ValueMap(options={
        "0": model.ValueMappingResult(text=calm, color="green", index=0),
        "1": model.ValueMappingResult(text=alarmed, color="red", index=1),
    })
    return (statetimeline.Panel().title(title).description(description).datasource(DATASOURCE)
            .targets(_targets([query])).mappings([mapping]).span(12).height(8))


def _dashboard(uid: str, title: str, description: str,
               variables: Sequence[dashboard.QueryVariable]) -> dashboard.Dashboard:
    return (dashboard.Dashboard(title).uid(uid).description(description).tags(["stream-forecaster"])
            .time("now-6h", "now").refresh("30s").timezone("browser")
            .variables([datasource_variable(), *variables]))


def datasource_variable() -> dashboard.DatasourceVariable:
    """The Prometheus the panels query; no current value, so Grafana starts on its default one."""
    return dashboard.DatasourceVariable(DATASOURCE_VARIABLE).label("Prometheus").type("prometheus")


def _variable(name: str, label: str, metric: str) -> dashboard.QueryVariable:
    """A multi-value variable of ``metric``'s label ``name`` (All by default)."""
    return (dashboard.QueryVariable(name).label(label).datasource(DATASOURCE)
            .query(f"label_values({metric}, {name})").multi(True).include_all(True)
            .current(model.VariableOption(selected=True, text="All", value="$__all"))
            .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED).sort(model.VariableSort.ALPHABETICAL_ASC))


def _with_panels(board: dashboard.Dashboard, panels: Sequence[cogbuilder.Builder[model.Panel]]
                 ) -> dashboard.Dashboard:
    # Stable ids, so regenerating gives the same JSON and Grafana keeps panel links.
    for panel_id, panel in enumerate(panels, start=1):
        # Every panel builder has id(); the SDK's Builder base, their common type, does not declare it.
        board.with_panel(panel.id(panel_id))  # type: ignore[attr-defined]
    return board


def ticker_variable() -> dashboard.QueryVariable:
    # The tickers with series of their own; the per-worker pools ("all", "other") would show one
    # line per worker, so pooled figures come from counters summed over workers (POOLED_WINDOW).
    return _variable("ticker", "Ticker", "forecaster_predicted_close")


def model_variable() -> dashboard.QueryVariable:
    return _variable("model", "Model", "forecaster_predictions_total")


def coverage_bands(settings: Settings) -> list[float]:
    """Edges of the tolerated band around each nominal level, ascending (the dashed lines)."""
    edges = {round(level + sign * settings.coverage_tolerance, 6)
             for level in settings.interval_levels for sign in (-1, 1)}
    return sorted(edge for edge in edges if 0 <= edge <= 1)


def _coverage(settings: Settings, title: str, description: str, queries: Sequence[Query]) -> timeseries.Panel:
    """A panel of interval coverage: ``queries``, the nominal levels, and dashed lines at the edges of
    the tolerated band around each."""
    nominal = [Query(f"vector({level})", f"nominal {level}") for level in settings.interval_levels]
    return _threshold_lines(
        _timeseries(title, description, [*queries, *nominal], unit="percentunit").min(0).max(1),
        (None, "transparent"), *((edge, "orange") for edge in coverage_bands(settings)))


def forecast_error(settings: Settings) -> dashboard.Dashboard:
    series = f"{{{TICKER}, {MODEL}}}"
    coverage = _coverage(
        settings, "Calibration: interval coverage against nominal",
        "Rolling share of actual closes inside each central interval per ticker, and over the last "
        "7 days of every worker; the dashed lines are nominal plus or minus "
        "FORECASTER_COVERAGE_TOLERANCE.",
        [Query(f"forecaster_interval_coverage{{{TICKER}}}", "{{ticker}} {{level}}"),
         Query(f"sum by (level) (increase(forecaster_interval_hits_total[{POOLED_WINDOW}])) "
               f"/ ignoring (level) group_left sum(increase(forecaster_scores_total[{POOLED_WINDOW}]))",
               f"all workers {{{{level}}}}, {POOLED_WINDOW}")])
    coverage_by_regime = _coverage(
        settings, "Calibration by volatility regime",
        "Rolling share of actual closes inside each central interval, all tickers, split by the "
        "regime each prediction was made in: the ticker's trailing 21-day volatility in the lower "
        "(calm), middle or upper (volatile) third of its own past year. Calibrated intervals stay "
        "near nominal in all three.",
        [Query("forecaster_interval_coverage_by_regime", "{{regime}} {{level}}")])
    coverage_by_horizon = _coverage(
        settings, "Interval coverage by horizon",
        f"Share of actual closes inside each central interval over the last {POOLED_WINDOW} of every "
        "worker, per forecast horizon in trading days (FORECASTER_HORIZONS; the panels above watch "
        "the shortest). Each horizon's intervals are calibrated on their own, so each should stay "
        "near nominal.",
        [Query(f"sum by (level, horizon) (increase(forecaster_interval_hits_by_horizon_total"
               f"[{POOLED_WINDOW}])) / ignoring (level) group_left sum by (horizon) "
               f"(increase(forecaster_scores_by_horizon_total[{POOLED_WINDOW}]))",
               f"{{{{horizon}}}}d {{{{level}}}}, {POOLED_WINDOW}")])
    relative_mae = _threshold_lines(
        _timeseries("Rolling relative MAE (below 1 beats naive)",
                    "Rolling MAE over the naive forecast's MAE on the same days, per ticker and over the "
                    "last 7 days of every worker (whether it is significantly above 1: the "
                    "ForecasterWorseThanNaive alert).",
                    [Query(f"forecaster_rolling_mase{series}", "{{ticker}} {{model}}"),
                     Query(f"sum by (model) (increase(forecaster_abs_error_sum{{{MODEL}}}[{POOLED_WINDOW}])) "
                           f"/ sum by (model) (increase(forecaster_naive_abs_error_total{{{MODEL}}}"
                           f"[{POOLED_WINDOW}]))", f"all workers {{{{model}}}}, {POOLED_WINDOW}")]),
        (None, "green"), (1.0, "red"))
    shadow_relative_mae = _threshold_lines(
        _timeseries("Challengers in shadow: relative MAE against the champion",
                    "Each challenger alias run beside the champion on the same bars: its summed absolute "
                    "errors over the prediction day's close, over the champion's on the same ticker-days "
                    f"(no warm-up), over the last {POOLED_WINDOW} of every worker. Below 1: smaller errors; "
                    "`forecaster promote --from-shadow` decides on the whole record.",
                    [Query(f"sum by (alias, version) (increase(forecaster_shadow_challenger_loss_total"
                           f"[{POOLED_WINDOW}])) / sum by (alias, version) (increase("
                           f"forecaster_shadow_champion_loss_total[{POOLED_WINDOW}]))",
                           "{{alias}} v{{version}}")]),
        (None, "green"), (1.0, "red"))
    shadow_dm = _threshold_lines(
        _timeseries("Challengers in shadow: panel Diebold-Mariano per worker",
                    "Each worker's panel Diebold-Mariano statistic of a challenger's losses against the "
                    "champion's over its last 250 days of pairs (its tickers only). Below -1.65: "
                    "significantly smaller at 5 %, one-sided.",
                    [Query("forecaster_shadow_panel_dm", "{{alias}} v{{version}} {{instance}}")]),
        (None, "transparent"), (-1.65, "green"))
    shadow_pairs = _stat("Challengers in shadow: pairs scored",
                         f"Score pairs of each challenger and the champion over the last {POOLED_WINDOW}, "
                         "every worker.",
                         Query("sum by (alias, version) (increase(forecaster_shadow_pairs_total"
                               f"[{POOLED_WINDOW}]))", "{{alias}} v{{version}}"))
    error_heatmap = (
        heatmap.Panel().title("Absolute error distribution").datasource(DATASOURCE)
        .description("Scored predictions per absolute-error bucket (price units).")
        .targets([prometheus.Dataquery().expr(
            f"sum by (le) (increase(forecaster_abs_error_bucket{{{MODEL}}}[$__rate_interval]))")
            .legend_format("{{le}}").format(prom_model.PromQueryFormat.HEATMAP).ref_id("A")])
        .calculate(False).span(24).height(8)
    )
    board = _dashboard("forecaster-error", "Forecast error",
                       "Predictions against actual closes, rolling error against the naive forecast, "
                       "error distribution and interval calibration.",
                       [ticker_variable(), model_variable()])
    return _with_panels(board, [
        _timeseries("Predicted vs actual close",
                    "Latest next-close prediction and latest actual close per ticker.",
                    [Query(f"forecaster_predicted_close{{{TICKER}}}", "{{ticker}} predicted"),
                     Query(f"forecaster_actual_close{{{TICKER}}}", "{{ticker}} actual")], width=24),
        _timeseries("Rolling MAE against naive", "Rolling mean absolute error of the model and of "
                    "tomorrow = today on the same days.",
                    [Query(f"forecaster_rolling_mae{series}", "{{ticker}} {{model}}"),
                     Query(f"forecaster_rolling_naive_mae{{{TICKER}}}", "{{ticker}} naive")]),
        relative_mae,
        _timeseries("Rolling MAPE", "Rolling mean absolute percentage error.",
                    [Query(f"forecaster_rolling_mape{series}", "{{ticker}} {{model}}")], unit="percentunit"),
        _timeseries("Absolute percentage error quantiles", "Over the scored predictions of the interval.",
                    _quantiles("forecaster_abs_pct_error", ERROR_QUANTILES, by="model", selector=MODEL),
                    unit="percentunit"),
        shadow_relative_mae,
        shadow_dm,
        shadow_pairs,
        error_heatmap,
        coverage,
        coverage_by_regime,
        _timeseries("Calibration: interval relative width",
                    "Rolling mean interval width over the predicted close, per level.",
                    [Query(f"forecaster_interval_relative_width{{{TICKER}}}", "{{ticker}} {{level}}")],
                    unit="percentunit"),
        # Last, so that the panels before it keep their ids (Grafana's panel links).
        coverage_by_horizon,
    ])


def drift(settings: Settings) -> dashboard.Dashboard:
    alarm_annotation = (
        dashboard.AnnotationQuery().name("Error drift alarms").datasource(DATASOURCE).enable(True)
        .icon_color("red")
        .expr(f"sum by (ticker) (increase(forecaster_error_drift_alarms_total{{{TICKER}}}"
              "[$__rate_interval])) > 0")
    )
    psi = _threshold_lines(
        _timeseries("Feature drift score (PSI)",
                    "Population stability index of each feature's recent window against the champion's "
                    "training reference; the dashed line is FORECASTER_PSI_THRESHOLD.",
                    [Query("forecaster_feature_drift_score", "{{feature}}")]),
        (None, "green"), (settings.psi_threshold, "red"))
    board = _dashboard("forecaster-drift", "Drift",
                       "Feature drift against the champion's training data, error drift per ticker, "
                       "and the model in service.", [ticker_variable()]).annotation(alarm_annotation)
    return _with_panels(board, [
        _stat("Model in service", "Registered model name and version the workers serve.",
              Query("max by (name, version) (forecaster_model_info)", "{{name}} v{{version}}"),
              text_mode=common.BigValueTextMode.NAME).span(24),
        psi,
        _states("Features in drift", "1 while a feature's PSI is above the threshold.",
                Query("max by (feature) (forecaster_feature_drift_state)", "{{feature}}"),
                calm="stable", alarmed="drifted"),
        _states("Error drift (Page-Hinkley)", "1 after a Page-Hinkley alarm on the standardized absolute "
                "error, until the error calms down.",
                Query(f"max by (ticker) (forecaster_error_drift_state{{{TICKER}}})", "{{ticker}}"),
                calm="calm", alarmed="drifting"),
        _timeseries("Drift alarms", "Alarms raised in each interval.",
                    [Query("sum by (feature) (increase(forecaster_feature_drift_alarms_total"
                           "[$__rate_interval]))", "feature {{feature}}"),
                     Query(f"sum by (ticker) (increase(forecaster_error_drift_alarms_total{{{TICKER}}}"
                           "[$__rate_interval]))", "error {{ticker}}")]),
    ])


def operations(settings: Settings) -> dashboard.Dashboard:
    board = _dashboard("forecaster-operations", "Operations",
                       "Throughput, latency, lags, dead letters and refits of the workers.",
                       [model_variable()])
    return _with_panels(board, [
        _stat("Workers up", "Worker replicas answering Prometheus scrapes.",
              Query(f'sum(up{{job="{WORKER_JOB}"}})')),
        _stat("Since the last bar", "Wall-clock time since any worker processed a bar.",
              Query("time() - max(forecaster_last_bar_timestamp_seconds)"), unit="s"),
        _stat("Dead letters, last hour", "Records rejected to the dead-letter topic.",
              Query("sum(increase(forecaster_dead_letters_total[1h])) or vector(0)")),
        _stat("Failed refits, last hour", "ARIMA refits that failed (the previous fit is kept).",
              Query('sum(increase(forecaster_refits_total{outcome="failed"}[1h])) or vector(0)')),
        _stat("Workers reaching the registry", "Workers whose last query of the model registry was "
              "answered, of those up; one that is not keeps serving the model it has.",
              Query("sum(forecaster_registry_up)")),
        _timeseries("Throughput", "Bars consumed, predictions emitted and predictions scored per second.",
                    [Query("sum(rate(forecaster_bars_consumed_total[$__rate_interval]))", "bars consumed"),
                     Query(f"sum by (model) (rate(forecaster_predictions_total{{{MODEL}}}"
                           "[$__rate_interval]))", "{{model}} predictions"),
                     Query(f"sum by (model) (rate(forecaster_scores_total{{{MODEL}}}[$__rate_interval]))",
                           "{{model}} scores")], unit="ops"),
        _timeseries("Processing time per bar", "Quantiles over all workers.",
                    _quantiles("forecaster_processing_seconds", LATENCY_QUANTILES), unit="s"),
        _timeseries("Bar to prediction latency", "From the bar's Kafka timestamp to its prediction "
                    "being delivered; quantiles over all workers.",
                    _quantiles("forecaster_bar_to_prediction_seconds", LATENCY_QUANTILES), unit="s"),
        _timeseries("Event-time lag", "Wall clock minus the end of the latest bar's trading day, per worker.",
                    [Query("forecaster_event_time_lag_seconds", "{{instance}}")], unit="s"),
        _timeseries("Consumer lag per partition", "Messages behind the end of the bars topic.",
                    [Query("max by (partition) (forecaster_consumer_lag)", "partition {{partition}}")]),
        _timeseries("Dead letters by reason", "Records rejected per second.",
                    [Query("sum by (reason) (rate(forecaster_dead_letters_total[$__rate_interval]))",
                           "{{reason}}")], unit="ops"),
        _timeseries("Refits by outcome", "ARIMA refits in each interval.",
                    [Query("sum by (outcome) (increase(forecaster_refits_total[$__rate_interval]))",
                           "{{outcome}}")]),
        _timeseries("Redeliveries and rewinds", "Messages met again below a partition's handled position "
                    "(after a restart or rebalance; skipped), and seeks back to it over offsets the "
                    "consumer skipped or from a partition stalled behind its high water mark (each "
                    "would have been lost or late bars).",
                    [Query("sum(increase(forecaster_redelivered_total[$__rate_interval]))", "redelivered"),
                     Query("sum(increase(forecaster_offset_rewinds_total[$__rate_interval]))",
                           "offset rewinds")]),
        _timeseries("Quarantines and registry errors", "Stored states and positions that could not be "
                    "decoded (dead-lettered with their bytes; the ticker starts afresh, the partition is "
                    "read again from its start), and failed queries of the model registry.",
                    [Query("sum by (kind) (increase(forecaster_quarantined_total[$__rate_interval]))",
                           "{{kind}} quarantined"),
                     Query("sum(increase(forecaster_registry_errors_total[$__rate_interval]))",
                           "registry errors")]),
    ])


def all_dashboards(settings: Settings | None = None) -> dict[str, model.Dashboard]:
    """Every dashboard, built, by uid (the JSON file's name)."""
    settings = settings or Settings()
    boards = [forecast_error(settings), drift(settings), operations(settings)]
    built = [board.build() for board in boards]
    return {str(board.uid): board for board in built}
