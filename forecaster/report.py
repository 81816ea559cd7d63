"""The picture and the printed verdict of a run's predictions: what ``forecaster backtest``,
``forecaster report`` and ``forecaster demo`` show.

:func:`render` draws the rows of a backtest (:meth:`models.backtest.BacktestResult.rows`, or
:func:`models.backtest.prediction_rows` of the stream's records that the demo reads back) for one
ticker: the actual close with the predicted close and its interval bands, the rolling absolute
error of the model against the naive forecast's, and the rolling coverage of each interval against
its nominal level; PNG, or HTML with the PNG inside (:func:`html_page`, also the page of
:mod:`forecaster.prometheus_report`).
:func:`metrics_table` and :func:`panel_line` are the printed comparison with naive.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from forecaster.redaction import redact
from models.core import metrics

#: Scored predictions in the rolling error and coverage.
ROLLING = 21
#: Predictions drawn by default: a year of trading days, so the bands stay visible.
LAST = 250
#: The printed point metrics: (label, key of the pooled summary), the model's column beside naive's.
POINT_METRICS = (("MAE $ (pooled)", "mae"), ("RMSE $ (pooled)", "rmse"), ("MAPE %", "mape"), ("R²", "r2"),
                 ("relative MAE (pooled)", "relative_mae"), ("directional accuracy", "directional_accuracy"))
_BOUND = re.compile(r"^(lower|upper)_([0-9]+(?:\.[0-9]+)?)$")


def render(rows: Sequence[dict[str, Any]], path: Path, *, ticker: str | None = None, last: int = LAST) -> str:
    """Draw one ticker's last ``last`` rows (0: all) to ``path`` (.png or .html); returns the ticker.

    Only the shortest horizon's rows are drawn (rows written before horizons existed are one day
    ahead): one prediction per day, as the picture's rolling figures assume.
    """
    if path.suffix.lower() not in (".png", ".html"):
        raise ValueError(f"report file must end in .png or .html; got {path}")
    shortest = min((row.get("horizon", 1) for row in rows), default=1)
    rows = [row for row in rows if row.get("horizon", 1) == shortest]
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["ticker"]] = counts.get(row["ticker"], 0) + 1
    if not counts:
        raise ValueError("no predictions to draw")
    ticker = ticker or max(sorted(counts), key=counts.__getitem__)
    own = [r for r in rows if r["ticker"] == ticker]
    if not own:
        raise ValueError(f"no predictions of {ticker!r}; tickers: {', '.join(sorted(counts)[:20])}")
    if last < 0:
        raise ValueError(f"last must be >= 0; got {last}")
    own = own[-last:] if last else own
    png, summary = _draw(own, ticker)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".png":
        path.write_bytes(png)
    else:
        title = f"{ticker}: {own[0]['model']} {own[0]['model_version']} backtest"
        path.write_text(html_page(title, png, summary), encoding="utf-8")
    return ticker


def _levels(row: dict[str, Any]) -> list[str]:
    """Interval level labels of a row, widest first."""
    return sorted({m.group(2) for key in row if (m := _BOUND.match(key))}, key=float, reverse=True)


def _draw(rows: list[dict[str, Any]], ticker: str) -> tuple[bytes, list[tuple[str, str]]]:
    # matplotlib loads here, when a picture is drawn, not with the module (half a second of start-up).
    from matplotlib.figure import Figure

    scored = [r for r in rows if r["actual_close"] is not None]
    judged = [r for r in scored if not r["warmup"]]
    levels = _levels(rows[0])
    figure = Figure(figsize=(11, 8.5), layout="constrained")
    price, error, cover = figure.subplots(3, 1, sharex=True, height_ratios=(3, 1.3, 1.3))

    day = [dt.date.fromisoformat(r["actual_date"] or r["target_date"]) for r in rows]
    for shade, label in zip((0.18, 0.35, 0.5), levels, strict=False):
        price.fill_between(day, [r[f"lower_{label}"] for r in rows], [r[f"upper_{label}"] for r in rows],
                           color="tab:blue", alpha=shade, linewidth=0, step="mid",
                           label=f"{label} % interval")
    price.plot(day, [r["predicted_close"] for r in rows], color="tab:blue", linewidth=0.8, label="predicted")
    price.plot([dt.date.fromisoformat(r["actual_date"]) for r in scored], [r["actual_close"] for r in scored],
               color="black", linewidth=0.8, label="actual")
    first_ready = next((d for d, r in zip(day, rows, strict=True) if not r["warmup"]), None)
    if first_ready is not None and first_ready != day[0]:
        price.axvspan(day[0], first_ready, color="grey", alpha=0.12, label="warm-up (naive)")
    price.set_ylabel("close")
    price.set_title(f"{ticker}: {rows[0]['model']} {rows[0]['model_version']}, one day ahead")
    price.legend(loc="upper left", fontsize=8)

    summary = [("predictions", str(len(rows))), ("scored after warm-up", str(len(judged)))]
    if judged:
        when = [dt.date.fromisoformat(r["actual_date"]) for r in judged]
        actual = np.array([r["actual_close"] for r in judged])
        predicted = np.array([r["predicted_close"] for r in judged])
        naive = np.array([r["naive_close"] for r in judged])
        error.plot(when, _rolling(np.abs(actual - predicted)), color="tab:blue", label=f"{rows[0]['model']}")
        error.plot(when, _rolling(np.abs(actual - naive)), color="tab:orange", label="naive")
        error.set_ylabel(f"MAE, last {ROLLING}")
        error.legend(loc="upper left", fontsize=8)
        summary += [("MAE", f"{metrics.mae(actual, predicted):.4f}"),
                    ("naive MAE", f"{metrics.mae(actual, naive):.4f}"),
                    ("relative MAE", f"{metrics.relative_mae(actual, predicted, naive):.3f}")]
        for label in levels:
            inside = metrics.inside(actual, np.array([r[f"lower_{label}"] for r in judged]),
                                    np.array([r[f"upper_{label}"] for r in judged]))
            line = cover.plot(when, _rolling(inside.astype(float)), label=f"{label} %")[0]
            cover.axhline(float(label) / 100, color=line.get_color(), linestyle=":", linewidth=0.8)
            summary.append((f"coverage {label} %", f"{inside.mean():.1%}"))
        cover.set_ylabel(f"coverage, last {ROLLING}")
        cover.set_ylim(0, 1.05)
        cover.legend(loc="lower left", fontsize=8)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue(), summary


def _rolling(values: np.ndarray) -> np.ndarray:
    """Mean of the last :data:`ROLLING` values (fewer at the start)."""
    sums = np.cumsum(np.r_[0.0, values])
    ends = np.arange(1, values.size + 1)
    starts = np.maximum(ends - ROLLING, 0)
    return (sums[ends] - sums[starts]) / (ends - starts)


def html_page(title: str, png: bytes, summary: list[tuple[str, str]]) -> str:
    """A page with a title, a table of (name, value) and the picture embedded; a value naming a URI
    (a Prometheus server's, a registry's) shows it without its user information, as pages are shared.

    >>> "secret" in html_page("t", b"", [("Prometheus", "http://bob:secret@prometheus:9090")])
    False
    """
    cells = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(redact(v))}</td></tr>"
                    for k, v in summary)
    title = html.escape(title)
    image = base64.b64encode(png).decode("ascii")
    return (f"<!doctype html>\n<html><head><meta charset='utf-8'><title>{title}</title>"
            "<style>body{font-family:sans-serif;margin:2em}th{text-align:left;padding-right:1em}</style>"
            f"</head><body><h1>{title}</h1><table>{cells}</table>"
            f"<p><img alt='{title}' src='data:image/png;base64,{image}'></p></body></html>\n")


def metrics_table(pooled: dict[str, float], name: str) -> list[str]:
    """The printed comparison: one line per metric, the model's column then naive's."""
    lines = [f"{'':<24}{name:>12}{'naive':>12}"]
    for label, key in POINT_METRICS:
        naive = pooled.get("naive_" + key, float("nan"))
        lines.append(f"{label:<24}{_number(pooled[key]):>12}{_number(naive):>12}")
    levels = [key[len("coverage_"):] for key in pooled if key.startswith("coverage_")]
    for level in levels:
        lines.append(f"{f'{level} % interval':<24}coverage {_number(pooled[f'coverage_{level}'])}  "
                     f"mean width {_number(pooled[f'mean_width_{level}'])}  "
                     f"Winkler {_number(pooled[f'winkler_{level}'])}")
    return lines


def panel_line(panel: dict[str, float]) -> str:
    """The scale-free verdict over tickers.

    >>> panel_line({"tickers": 10.0, "tickers_beating_naive": 3.0, "relative_mae": 1.0123})
    'relative MAE over 10 tickers (geometric mean) 1.0123; MAE below naive on 3 of 10 tickers'
    """
    tickers = int(panel["tickers"])
    return (f"relative MAE over {tickers} tickers (geometric mean) {_number(panel['relative_mae'])}; "
            f"MAE below naive on {int(panel['tickers_beating_naive'])} of {tickers} tickers")


def _number(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.4f}"
