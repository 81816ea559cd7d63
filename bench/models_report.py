"""Every model family against naive on real data: the numbers of ``docs/models.md``.

Run from the repository root (about 10 minutes on 2 shared CPU cores)::

    .venv/bin/python bench/models_report.py --update docs/models.md

Two datasets, each with the split of ``docs/models.md``:

- ``601988.SH.csv`` (Bank of China) with the reference paper's split: test = the 180 target days from
  2021-06-22, everything before trains (the last 10 % of it validates, for early stopping);
- a fixed sample of ten S&P 500 tickers (:data:`SP500_SAMPLE`), the last 252 target days as test.

For each family it calls :func:`models.training.train_on_table` (the code ``forecaster train`` runs,
logging to a throw-away MLflow store), then replays the same bars through the core's
:func:`models.backtest.run_backtest` with the trained model in the core's model slot, which gives the
coverage, width and Winkler score of the intervals around its predictions on the test days (and
checks that the core serving the model predicts what the evaluation scored). ``naive`` and
``arima (core)`` are the core's own models on the same days. Inference time is the model's
``predict_returns`` per window, batched over the test window and one window per call (what a
one-ticker stream batch costs).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from forecaster import settings as settings_module
from models.backtest import run_backtest
from models.core.bar import Bar
from models.core.config import CoreConfig
from models.dataset import feature_table
from models.training import naive_scales, split_samples, train_on_table
from producers.readers import read_csv_bars

#: Large, long-listed S&P 500 members from several sectors, fixed so the report is reproducible.
SP500_SAMPLE = ("AAPL", "AMZN", "JPM", "XOM", "JNJ", "PG", "GE", "KO", "INTC", "WMT")
FAMILIES = ("arima", "arima_residual", "xgboost", "cnn_bilstm_attention", "bigru", "attention_xgboost")
#: The part of docs/models.md this script writes.
MARKERS = ("<!-- models-report:start -->", "<!-- models-report:end -->")
#: Upper bound of epochs for the networks; early stopping (patience 5) usually ends far sooner.
EPOCHS = 30


def single_window_us(model: Any, windows: np.ndarray, calls: int = 200) -> float:
    """Median microseconds of ``predict_returns`` on one window."""
    times = []
    for i in range(calls):
        window = windows[i % len(windows)][None]
        start = time.perf_counter()
        model.predict_returns(window)
        times.append(time.perf_counter() - start)
    return 1e6 * float(np.median(times))


def interval_summary(bars: list[Bar], config: CoreConfig, model: Any, first: dt.date, last: dt.date,
                     ) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Point and interval metrics of the core's scored predictions with target dates in the test
    period, and those scores."""
    from models.core.metrics import summarize

    result = run_backtest(bars, config, model)
    scores = [s for s in result.scores
              if first <= dt.date.fromisoformat(s["target_date"]) <= last and not s["warmup"]]
    return summarize(scores), scores


def core_panel(scores: list[dict[str, Any]], scales: dict[str, float]) -> dict[str, Any]:
    """The scale-free panel figures of the core's own model, as :func:`models.evaluation.evaluate`
    gives them for a trained one (same per-ticker training scales)."""
    from models.dataset import Samples
    from models.evaluation import evaluate

    field = {key: np.array([s[key] for s in scores])
             for key in ("naive_close", "actual_close", "predicted_close")}
    dates = np.array([s["target_date"] for s in scores], dtype="datetime64[D]")
    samples = Samples(np.zeros((len(scores), 1, 1)), np.zeros(len(scores)), field["naive_close"],
                      field["actual_close"], np.array([s["ticker"] for s in scores]), dates, dates)
    return panel_row(evaluate(np.log(field["predicted_close"] / field["naive_close"]), samples, scales).panel)


def panel_row(panel: Any) -> dict[str, Any]:
    """The report's columns of a :class:`models.evaluation.PanelScore`."""
    worse = panel.dm.statistic > 0
    significant = panel.dm.p_value < 0.05
    verdict = ("**significantly worse**" if significant and worse else "**significantly better**"
               if significant else "worse (n.s.)" if panel.relative_mae > 1 else "better (n.s.)"
               if panel.relative_mae < 1 else "same")
    return {"relative_mae": panel.relative_mae, "mase": panel.mase, "naive_mase": panel.naive_mase,
            "wins": f"{panel.beating_naive}/{panel.tickers}",
            "dm_tickers": f"{panel.significantly_better}/{panel.significantly_worse}",
            "dm_statistic": panel.dm.statistic, "dm_p_value": panel.dm.p_value, "verdict": verdict}


#: The intervals around each model's prediction: served by default they are centred on the last
#: close, the same for every model (the naive row's).
AROUND_MODEL = {"interval_centre": "model"}


def run_dataset(label: str, bars: list[Bar], settings: Any, test_start: dt.date | None, test_days: int,
                families: tuple[str, ...]) -> list[dict[str, Any]]:
    core = CoreConfig.from_settings(settings, model="arima")
    table = feature_table(bars, core)
    rows = []
    split = None
    for family in families:
        print(f"[{label}] {family} ...", file=sys.stderr, flush=True)
        outcome = train_on_table(table, family, settings, experiment=f"report-{label}", epochs=EPOCHS,
                                 test_start=test_start, test_days=test_days)
        split = outcome.split
        test = split_samples(table.samples(outcome.model.lookback), split)["test"]
        start = time.perf_counter()
        outcome.model.predict_returns(test.windows)
        batched_us = 1e6 * (time.perf_counter() - start) / len(test)
        served, _ = interval_summary(bars, CoreConfig.from_settings(settings, model="external",
                                                                    **AROUND_MODEL),
                                     outcome.model, split.test_start, split.test_end)
        evaluation = outcome.evaluation
        rows.append({
            "model": family, **evaluation.metrics, "n": outcome.counts["test"], **panel_row(evaluation.panel),
            "naive_mae": evaluation.naive_metrics["mae"], "naive_rmse": evaluation.naive_metrics["rmse"],
            "train_s": outcome.train_seconds, "batched_us": batched_us,
            "single_us": single_window_us(outcome.model, test.windows),
            "served_mae": served["mae"], "served_n": served["n"],
            **{k: v for k, v in served.items() if k.startswith(("coverage_", "mean_width_", "winkler_"))},
            "epochs": getattr(outcome.model, "epochs_trained", None)
            or getattr(getattr(outcome.model, "attention", None), "epochs_trained", None),
        })
    assert split is not None
    scales = naive_scales(table, split.train_end)
    for model in ("naive", "arima"):
        config = CoreConfig.from_settings(settings, model=model, **AROUND_MODEL)
        served, scores = interval_summary(bars, config, None, split.test_start, split.test_end)
        rows.append({"model": f"{model} (core)", "mae": served["mae"], "rmse": served["rmse"],
                     "mape": served["mape"], "r2": served["r2"], **core_panel(scores, scales),
                     "directional_accuracy": served["directional_accuracy"], "n": served["n"],
                     "served_mae": served["mae"], "served_n": served["n"],
                     **{k: v for k, v in served.items()
                        if k.startswith(("coverage_", "mean_width_", "winkler_"))}})
    return rows


#: (header, row key, format) of the point-metric and speed table.
POINT_COLUMNS = (("rel. MAE", "relative_mae", ".4f"), ("MASE", "mase", ".4f"),
                 ("beats naive on", "wins", "s"), ("DM better/worse", "dm_tickers", "s"),
                 ("panel DM", "dm_statistic", ".3f"), ("panel DM p", "dm_p_value", ".3f"),
                 ("vs naive", "verdict", "s"),
                 ("MAE $", "mae", ".5f"), ("RMSE $", "rmse", ".5f"), ("MAPE %", "mape", ".3f"),
                 ("dir. acc.", "directional_accuracy", ".3f"),
                 ("train s", "train_s", ".1f"), ("epochs", "epochs", "d"),
                 ("µs/pred batched", "batched_us", ".1f"), ("µs/pred single", "single_us", ".0f"))
#: (header, row key, format) of the interval table.
INTERVAL_COLUMNS = (("served MAE", "served_mae", ".5f"), ("n", "served_n", ".0f"),
                    ("coverage 80", "coverage_80", ".3f"), ("width 80", "mean_width_80", ".4f"),
                    ("Winkler 80", "winkler_80", ".4f"), ("coverage 95", "coverage_95", ".3f"),
                    ("width 95", "mean_width_95", ".4f"), ("Winkler 95", "winkler_95", ".4f"))


def _cell(value: Any, fmt: str) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "–"
    return format(value, fmt)


def _table(rows: list[dict[str, Any]], columns: tuple[tuple[str, str, str], ...]) -> list[str]:
    lines = ["| model | " + " | ".join(h for h, _, _ in columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for r in rows:
        lines.append(f"| {r['model']} | " + " | ".join(_cell(r.get(k), f) for _, k, f in columns) + " |")
    return lines


def markdown(label: str, rows: list[dict[str, Any]]) -> str:
    naive = next(r for r in rows if r["model"] == "naive (core)")
    lines = [f"### {label}", "", *_table(rows, POINT_COLUMNS), "",
             f"Naive on these days: MASE {naive['naive_mase']:.4f}, MAE $ {naive['mae']:.5f}. "
             "Intervals the core puts around each model "
             "(centred on its prediction, `interval_centre=model`: by default the core centres "
             "every model's on the last close, the naive row's; same test days; *served MAE* is the core "
             "serving the model, a check that it "
             "predicts what the evaluation scored):", "", *_table(rows, INTERVAL_COLUMNS)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES)
    parser.add_argument("--datasets", nargs="+", default=["paper", "sp500"], choices=["paper", "sp500"])
    parser.add_argument("--update", type=Path, default=None, metavar="MARKDOWN",
                        help="replace the text between the models-report markers of this file "
                        "instead of printing")
    args = parser.parse_args(argv)
    base = settings_module.load()
    data = Path(base.data_dir)
    out = [f"Generated by `.venv/bin/python bench/models_report.py` on {platform.machine()}, "
           f"{os.cpu_count()} CPUs, Python {platform.python_version()}; networks: at most {EPOCHS} "
           "epochs, early stopping with patience 5 on the validation loss.\n"]
    with tempfile.TemporaryDirectory() as home:
        settings = base.replace(home=home, mlflow_tracking_uri="", mlflow_env_tracking_uri="",
                                mlflow_env_registry_uri="", model_name="report")
        if "paper" in args.datasets:
            bars = read_csv_bars([data / "601988.SH.csv"]).bars
            rows = run_dataset("paper", bars, settings, dt.date(2021, 6, 22), 180, tuple(args.families))
            out.append(markdown("601988.SH (Bank of China), test 2021-06-22..2022-03-17 (180 days)", rows))
        if "sp500" in args.datasets:
            bars = read_csv_bars([data / "sp500-5yr-sample.csv.gz"], tickers=SP500_SAMPLE).bars
            rows = run_dataset("sp500", bars, settings, None, 252, tuple(args.families))
            out.append(markdown(f"S&P 500 sample ({', '.join(SP500_SAMPLE)}), test: the last 252 days", rows))
    report = "\n".join(out)
    if args.update is None:
        print(report)
        return 0
    text = args.update.read_text()
    start, end = text.index(MARKERS[0]) + len(MARKERS[0]), text.index(MARKERS[1])
    args.update.write_text(text[:start] + "\n" + report + text[end:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
