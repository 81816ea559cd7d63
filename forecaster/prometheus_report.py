"""The key panels of the dashboards, drawn from a Prometheus server instead of Grafana.

Predicted against actual close of one ticker, its rolling MAE against the naive forecast's, and
every feature's drift score (PSI) against its threshold, over the last minutes of what Prometheus
scraped from the workers. For a machine without Grafana, and for attaching a picture to a report.
"""

from __future__ import annotations

import datetime as dt
import http.client
import io
import json
import threading
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import Future, wait
from pathlib import Path
from typing import Any

from forecaster.redaction import hide, printable, redact, uri_password
from forecaster.report import html_page

Series = dict[str, list[tuple[dt.datetime, float]]]
#: One series of a query_range answer: its labels and its points.
Result = tuple[dict[str, str], list[tuple[dt.datetime, float]]]

#: How long one answer may take in all, from connecting to its last byte. Prometheus answers a
#: report's queries in well under a second; a socket timeout alone bounds each read, not the answer,
#: so a server that sent a byte now and then held the report for ever.
ANSWER_TIMEOUT_S = 30.0
#: The most bytes of one answer read: the largest query of a report, every ticker's predicted close
#: (51 series at the default FORECASTER_METRICS_TICKER_LIMIT) over 900 minutes at 5 s, is some 22 MB.
MAX_ANSWER_BYTES = 64 * 2**20


def server_url(url: str) -> str:
    """``url`` if it can be a Prometheus server's (http or https, a host, a port if any), else ValueError.

    >>> server_url("")
    Traceback (most recent call last):
    ...
    ValueError: '' is not the URL of a Prometheus server (e.g. http://localhost:9090)
    """
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port  # ValueError for a port that is no number, or past 65535
        usable = parts.scheme in ("http", "https") and bool(parts.hostname) and port != 0
    except ValueError:  # and urlsplit's own refusals, e.g. an unclosed "[" of an IPv6 address
        usable = False
    if not usable:
        raise ValueError(f"{redact(url)!r} is not the URL of a Prometheus server (e.g. http://localhost:9090)")
    return url


def query_range(url: str, expr: str, minutes: float, step_s: float, *, timeout_s: float = ANSWER_TIMEOUT_S,
                max_bytes: int = MAX_ANSWER_BYTES) -> list[Result]:
    """``/api/v1/query_range`` over the last ``minutes``: each series of the answer, or ValueError
    saying why there is none (also for an answer not whole within ``timeout_s`` or over ``max_bytes``)."""
    end = dt.datetime.now(dt.UTC).timestamp()
    params = urllib.parse.urlencode({"query": expr, "start": end - 60 * minutes, "end": end, "step": step_s})
    try:
        status, body = _get(f"{url.rstrip('/')}/api/v1/query_range?{params}", timeout_s, max_bytes)
    except TimeoutError:  # the deadline, or a read of the socket past it
        raise ValueError(f"Prometheus at {url} sent no whole answer to {expr!r} "
                         f"within {timeout_s:g} s") from None
    except _TooLarge:
        raise ValueError(f"Prometheus at {url} answered {expr!r} with more than {max_bytes:,} bytes, "
                         "more than any answer a report asks for") from None
    except OSError as error:
        raise ValueError(f"Prometheus at {url} does not answer: {error}") from None
    except http.client.HTTPException as error:  # a status line or headers that are no HTTP
        said = printable(redact(str(error)), 100)
        raise _unlike(url, expr, f"not HTTP: {type(error).__name__} {said}") from None

    def unlike(why: str) -> ValueError:
        return _unlike(url, expr, f"HTTP {status}, {why}")

    try:
        answer = json.loads(body)
    except ValueError:  # UnicodeDecodeError too
        raise unlike("not JSON") from None
    if not isinstance(answer, dict) or answer.get("status") not in ("success", "error"):
        raise unlike('no "status" of success or error')
    if answer["status"] == "error":
        raise ValueError(f"Prometheus at {url} refused {expr!r}: {answer.get('error', answer)}")
    data = answer.get("data")
    if not (isinstance(data, dict) and data.get("resultType") == "matrix"
            and isinstance(data.get("result"), list)):
        raise unlike('no "data" of resultType matrix with a result list')
    results = []
    for result in data["result"]:
        labels = result.get("metric") if isinstance(result, dict) else None
        if not (isinstance(labels, dict) and all(isinstance(v, str) for v in labels.values())):
            raise unlike('a series without "metric" labels')
        try:
            points = [(dt.datetime.fromtimestamp(float(t), dt.UTC), float(v)) for t, v in result["values"]]
        except (KeyError, TypeError, ValueError, OverflowError, OSError):
            # The last two: a time past what a datetime (or the C library) holds.
            raise unlike('a series without "values" of [time, "number"] pairs') from None
        results.append((labels, points))
    return results


def _unlike(url: str, expr: str, why: str) -> ValueError:
    return ValueError(f"{url} answered {expr!r} with what is not a Prometheus query_range answer ({why}): "
                      "is it the URL of a Prometheus server?")


class _TooLarge(Exception):
    """An answer over the bytes it may have."""


def _get(url: str, timeout_s: float, max_bytes: int) -> tuple[int, bytearray]:
    """GET ``url``: the status and the body (of an error status too, where Prometheus says why).

    TimeoutError unless all of it came within ``timeout_s``, :class:`_TooLarge` past ``max_bytes``,
    OSError when the server does not answer, :class:`http.client.HTTPException` when it answers no HTTP.
    The request runs in a daemon thread, waited for until the deadline: a socket timeout bounds each
    read, not the whole answer (its headers and TLS handshake included). A thread given up on stops at
    its next read of the body, or once the server is silent for ``timeout_s``.
    """
    answer: Future[tuple[int, bytearray]] = Future()
    given_up = threading.Event()

    def fetch() -> None:
        try:
            answer.set_result(_read(url, timeout_s, max_bytes, given_up))
        except Exception as error:  # handed to the waiting caller, which raises it
            answer.set_exception(error)

    threading.Thread(target=fetch, name="prometheus-answer", daemon=True).start()
    if not wait([answer], timeout=timeout_s).done:
        given_up.set()
        raise TimeoutError(f"no whole answer within {timeout_s:g} s")
    return answer.result()


def _read(url: str, timeout_s: float, max_bytes: int, given_up: threading.Event) -> tuple[int, bytearray]:
    try:
        response: Any = urllib.request.urlopen(url, timeout=timeout_s)
    except urllib.error.HTTPError as error:
        response = error
    with response:
        body = bytearray()  # grown in place: no second copy of the whole answer when it ends
        # read1 returns what one read of the socket brought: a trickle is seen byte by byte.
        while not given_up.is_set() and (chunk := response.read1(65536)):
            body += chunk
            if len(body) > max_bytes:
                raise _TooLarge
        return int(response.status), body


def series(url: str, expr: str, label: str, minutes: float, step_s: float) -> Series:
    """Each result series of ``expr`` by the value of ``label``, as (time, value) points."""
    return {labels.get(label, expr): points for labels, points in query_range(url, expr, minutes, step_s)}


def busiest_ticker(url: str, minutes: float, step_s: float) -> str:
    tickers = series(url, "forecaster_predicted_close", "ticker", minutes, step_s)
    if not tickers:
        raise ValueError(f"Prometheus at {url} has no forecaster_predicted_close in the last {minutes:g} "
                         "minutes: is it scraping a worker?")
    return max(sorted(tickers), key=lambda t: len(tickers[t]))


def render_prometheus(url: str, path: Path, *, ticker: str | None, minutes: float, psi_threshold: float,
                      step_s: float = 5.0) -> str:
    """Draw the panels to ``path`` (.png, or .html with the picture inside); returns the ticker."""
    # Its password is hidden wherever a message or a log line quotes it, whatever it holds.
    hide(uri_password(url))
    server_url(url)
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
