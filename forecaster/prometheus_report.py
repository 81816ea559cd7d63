"""The key panels of the dashboards, drawn from a Prometheus server instead of Grafana.

Predicted against actual close of one ticker, its rolling MAE against the naive forecast's, and
every feature's drift score (PSI) against its threshold, over the last minutes of what Prometheus
scraped from the workers. For a machine without Grafana, and for attaching a picture to a report.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from forecaster.report import html_page

Series = dict[str, list[tuple[dt.datetime, float]]]


def query_range(url: str, expr: str, minutes: float, step_s: float) -> list[dict]:
    """``/api/v1/query_range`` over the last ``minutes``: the result list, or ValueError saying why."""
    end = dt.datetime.now(dt.UTC).timestamp()
    params = urllib.parse.urlencode({"query": expr, "start": end - 60 * minutes, "end": end, "step": step_s})
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/api/v1/query_range?{params}", timeout=30) as response:
            answer = json.load(response)
    except urllib.error.HTTPError as error:
        answer = json.load(error)
    except OSError as error:
        raise ValueError(f"Prometheus at {url} does not answer: {error}") from None
    if answer.get("status") != "success":
        raise ValueError(f"Prometheus refused {expr!r}: {answer.get('error', answer)}")
    return answer["data"]["result"]


def series(url: str, expr: str, label: str, minutes: float, step_s: float) -> Series:
    """Each result series of ``expr`` by the value of ``label``, as (time, value) points."""
    return {
        result["metric"].get(label, expr): [(dt.datetime.fromtimestamp(float(t), dt.UTC), float(v))
                                            for t, v in result["values"]]
        for result in query_range(url, expr, minutes, step_s)
    }


def busiest_ticker(url: str, minutes: float, step_s: float) -> str:
    tickers = series(url, "forecaster_predicted_close", "ticker", minutes, step_s)
    if not tickers:
        raise ValueError(f"Prometheus at {url} has no forecaster_predicted_close in the last {minutes:g} "
                         "minutes: is it scraping a worker?")
    return max(sorted(tickers), key=lambda t: len(tickers[t]))


def render_prometheus(url: str, path: Path, *, ticker: str | None, minutes: float, psi_threshold: float,
                      step_s: float = 5.0) -> str:
    """Draw the panels to ``path`` (.png, or .html with the picture inside); returns the ticker."""
    # matplotlib loads here, when a picture is drawn, not with the module (half a second of start-up).
    from matplotlib.figure import Figure

    if path.suffix.lower() not in (".png", ".html"):
        raise ValueError(f"report file must end in .png or .html; got {path}")
    ticker = ticker or busiest_ticker(url, minutes, step_s)
    selector = f'ticker="{ticker}"'
    closes = {**series(url, f"forecaster_predicted_close{{{selector}}}", "__name__", minutes, step_s),
              **series(url, f"forecaster_actual_close{{{selector}}}", "__name__", minutes, step_s)}
    errors = {**series(url, f"forecaster_rolling_mae{{{selector}}}", "model", minutes, step_s),
              **series(url, f"forecaster_rolling_naive_mae{{{selector}}}", "__name__", minutes, step_s)}
    drift = series(url, "forecaster_feature_drift_score", "feature", minutes, step_s)
    if not closes:
        raise ValueError(f"Prometheus at {url} has no series of {ticker!r} in the last {minutes:g} minutes")

    figure = Figure(figsize=(11, 8.5), layout="constrained")
    price, error, psi = figure.subplots(3, 1, sharex=True, height_ratios=(2, 1.3, 1.3))
    names = {"forecaster_predicted_close": "predicted (for the next day)",
             "forecaster_actual_close": "actual"}
    for name, points in closes.items():
        price.plot(*zip(*points, strict=True), label=names.get(name, name), linewidth=0.9)
    price.set_ylabel("close")
    price.set_title(f"{ticker}: latest closes as the worker saw them (Prometheus, last {minutes:g} min)")
    price.legend(loc="upper left", fontsize=8)
    for name, points in errors.items():
        label = "naive" if name == "forecaster_rolling_naive_mae" else name
        error.plot(*zip(*points, strict=True), label=label, linewidth=0.9)
    error.set_ylabel("rolling MAE")
    error.legend(loc="upper left", fontsize=8)
    for name, points in sorted(drift.items()):
        psi.plot(*zip(*points, strict=True), label=name, linewidth=0.9)
    psi.axhline(psi_threshold, color="red", linestyle=":", linewidth=0.9, label="threshold")
    psi.set_ylabel("feature drift (PSI)")
    psi.legend(loc="upper left", fontsize=7, ncol=3)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    png = buffer.getvalue()
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".png":
        path.write_bytes(png)
    else:
        summary = [("Prometheus", url), ("ticker", ticker), ("minutes", f"{minutes:g}"),
                   ("features scored", str(len(drift)))]
        path.write_text(html_page(f"{ticker}: stream report", png, summary), encoding="utf-8")
    return ticker
