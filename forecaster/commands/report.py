"""``forecaster report PREDS.csv | --prometheus URL``: the picture of a backtest or of the stream.

From a backtest file, for one ticker, it draws the actual close with the predicted close and its
interval bands, the rolling absolute error of the model against the naive forecast's, and the
rolling coverage of each interval against its nominal level. The input is the file ``forecaster
backtest --out`` writes; the backtest's ``--report`` and the demo call :func:`write_report` on the
records directly. From Prometheus, see :mod:`forecaster.prometheus_report`. PNG, or HTML with the
PNG inside.
"""

from __future__ import annotations

import argparse
import base64
import csv
import datetime as dt
import html
import io
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from forecaster.settings import Settings

#: Scored predictions in the rolling error and coverage.
ROLLING = 21
#: Predictions drawn by default: a year of trading days, so the bands stay visible.
LAST = 250
_BOUND = re.compile(r"^(lower|upper)_([0-9]+(?:\.[0-9]+)?)$")
_TEXT_FIELDS = {"ticker", "as_of", "target_date", "actual_date", "model", "model_version", "vol_regime"}


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "report", help="draw predictions without Grafana: from a backtest file or from Prometheus",
        description="Draw the predictions written by `forecaster backtest --out` for one ticker: actual "
        "and predicted close with the interval bands, the rolling error against the naive forecast's "
        "and the rolling interval coverage. Or, with --prometheus, what a Prometheus server scraped from "
        "the workers: closes, rolling error against naive, and the feature drift scores. PNG, or HTML "
        "with the PNG embedded.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("predictions", type=Path, nargs="?", metavar="PREDS.csv",
                        help="output of backtest --out")
    source.add_argument("--prometheus", metavar="URL", help="a Prometheus server scraping the workers")
    parser.add_argument("--out", type=Path, required=True, metavar="FILE.html|.png", help="file to write")
    parser.add_argument("--ticker", default=None,
                        help="ticker to draw (default: the one with most predictions)")
    parser.add_argument("--last", type=int, default=LAST, metavar="N",
                        help=f"draw the ticker's last N predictions, 0 for all (default: {LAST})")
    parser.add_argument("--minutes", type=float, default=60.0,
                        help="with --prometheus: the time drawn, in minutes (default: 60)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.prometheus:
        from forecaster.prometheus_report import render_prometheus

        ticker = render_prometheus(args.prometheus, args.out, ticker=args.ticker, minutes=args.minutes,
                                   psi_threshold=settings.psi_threshold)
    else:
        ticker = render(read_rows(args.predictions), args.out, ticker=args.ticker, last=args.last)
    print(f"wrote {args.out} ({ticker})")
    return 0


def write_report(predictions: Iterable[dict[str, Any]], scores: Iterable[dict[str, Any]], path: Path, *,
                 ticker: str | None = None, last: int = LAST) -> str:
    """Draw prediction and score records (a backtest's or the stream's) to ``path``; returns the ticker."""
    from models.backtest import prediction_rows

    return render(prediction_rows(predictions, scores), path, ticker=ticker, last=last)


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of a ``backtest --out`` file with numbers, booleans and empty cells (None) restored."""
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if not {"ticker", "predicted_close", "actual_close"} <= set(reader.fieldnames or ()):
            raise ValueError(f"{path} holds no predictions (expected a `forecaster backtest --out` file)")
        return [{k: _value(k, v) for k, v in row.items()} for row in reader]


def _value(key: str, text: str) -> Any:
    if text == "":
        return None
    if key in _TEXT_FIELDS:
        return text
    if key == "warmup":
        return text == "True"
    return float(text)


def render(rows: Sequence[dict[str, Any]], path: Path, *, ticker: str | None = None, last: int = LAST) -> str:
    """Draw one ticker's last ``last`` rows (0: all) to ``path`` (.png or .html); returns the ticker."""
    if path.suffix.lower() not in (".png", ".html"):
        raise ValueError(f"report file must end in .png or .html; got {path}")
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
    from matplotlib.figure import Figure

    from models.core import metrics

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
    """A page with a title, a table of (name, value) and the picture embedded."""
    cells = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in summary)
    title = html.escape(title)
    image = base64.b64encode(png).decode("ascii")
    return (f"<!doctype html>\n<html><head><meta charset='utf-8'><title>{title}</title>"
            "<style>body{font-family:sans-serif;margin:2em}th{text-align:left;padding-right:1em}</style>"
            f"</head><body><h1>{title}</h1><table>{cells}</table>"
            f"<p><img alt='{title}' src='data:image/png;base64,{image}'></p></body></html>\n")
