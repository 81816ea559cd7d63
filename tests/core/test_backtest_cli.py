"""``forecaster backtest`` and ``forecaster report`` on a real file, and ``forecaster report
--prometheus`` on servers that answer what no Prometheus does."""

from __future__ import annotations

import base64
import contextlib
import csv
import http.server
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import pytest

from forecaster.cli import main
from forecaster.prometheus_report import query_range
from tests.core.helpers import Reversal


def test_backtest_reproduces_the_reference_naive_figures_and_writes_rows_and_report(
        data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The paper's test period of 601988.SH is the last 180 days from 2021-06-22; the data README gives
    # the naive forecast's MAE 0.01172, RMSE 0.01645, MAPE 0.381 %, R² 0.845 there. The window's year
    # before it is read too, so that the ARIMA is fitted when the period starts.
    out, report = tmp_path / "preds.csv", tmp_path / "report.html"
    code = main(["backtest", str(data_dir / "601988.SH.csv"), "--model", "arima", "--start", "2020-06-01",
                 "--out", str(out), "--report", str(report)])
    printed = capsys.readouterr().out
    assert code == 0
    with out.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    period = [r for r in rows if r["actual_date"] >= "2021-06-22"]
    assert len(period) == 180 and all(r["warmup"] == "False" for r in period)
    naive_errors = [abs(float(r["naive_error"])) for r in period]
    assert sum(naive_errors) / 180 == pytest.approx(0.01172, abs=5e-6)
    assert re.search(r"^MAE \$ \(pooled\)\s+\d\.\d{4}\s+\d\.\d{4}$", printed, re.MULTILINE)
    assert re.search(r"^relative MAE over 1 tickers \(geometric mean\) 1\.\d{4}; "
                     r"MAE below naive on 0 of 1 tickers$", printed, re.MULTILINE)
    assert re.search(r"^95 % interval\s+coverage 0\.\d{4}", printed, re.MULTILINE)
    assert rows[0].keys() >= {"ticker", "as_of", "target_date", "predicted_close", "model", "actual_close",
                              "error", "lower_95", "upper_95", "warmup"}
    page = report.read_text()
    image = re.search(r"data:image/png;base64,([A-Za-z0-9+/=]+)", page)
    assert image and base64.b64decode(image.group(1)).startswith(b"\x89PNG")

    picture = tmp_path / "report.png"
    assert main(["report", str(out), "--out", str(picture), "--last", "100"]) == 0
    assert picture.read_bytes().startswith(b"\x89PNG")


def test_backtest_summarises_each_horizon_after_the_shortest(data_dir: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("FORECASTER_HORIZONS", "1,5")
    out = tmp_path / "preds.csv"
    assert main(["backtest", str(data_dir / "601988.SH.csv"), "--model", "arima", "--start", "2021-01-01",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out.splitlines()
    with out.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {r["horizon"] for r in rows} == {"1", "5"}

    def scored(horizon: str) -> list[dict[str, str]]:
        return [r for r in rows if r["horizon"] == horizon and r["actual_close"] and r["warmup"] == "False"]

    def mae(horizon: str) -> str:
        return f"{sum(abs(float(r['error'])) for r in scored(horizon)) / len(scored(horizon)):.4f}"

    # The lines before any "horizon H:" are the shortest horizon's, and say so; each longer one follows
    # with its own count, table and panel line, its figures computed from its own rows.
    assert printed[1].endswith(f"{len(scored('1'))} after warm-up (compared with naive on those days) "
                               f"(horizon 1)")
    (five,) = [i for i, line in enumerate(printed) if line.startswith("horizon ")]
    assert printed[five] == f"horizon 5: {len(scored('5'))} scored after warm-up"
    assert 0 < len(scored("5")) < len(scored("1"))
    maes = [line.split() for line in printed if line.startswith("MAE $ (pooled)")]
    assert [line[3] for line in maes] == [mae("1"), mae("5")]
    panels = [i for i, line in enumerate(printed) if line.startswith("relative MAE over 1 tickers")]
    assert len(panels) == 2 and panels[0] < five < panels[1]


def test_backtest_refuses_an_unknown_model_in_one_line(data_dir: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["backtest", str(data_dir / "601988.SH.csv"), "--model", "lstm"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "--model must be naive, arima or models:/NAME@ALIAS" in error


def test_report_refuses_a_file_that_is_not_a_backtest(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    other = tmp_path / "bars.csv"
    other.write_text("date,close\n2020-01-01,1.0\n")
    assert main(["report", str(other), "--out", str(tmp_path / "r.png")]) == 2
    assert "holds no predictions" in capsys.readouterr().err


@pytest.mark.parametrize(("content", "says"), [
    (bytes(range(256)), "is not UTF-8 text"),
    (b"ticker,predicted_close,actual_close\nACME,1.0\n", ":2: not as many fields as the header"),
    (b"ticker,predicted_close,actual_close\nACME,1.0,\x1b[2J\n", ":2: could not convert string to float: "
     "'\\x1b[2J'"),
], ids=["binary", "row cut short", "not a number"])
def test_report_names_the_file_and_line_it_cannot_read(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                       content: bytes, says: str) -> None:
    # It said "'utf-8' codec can't decode byte 0x80 in position 128", naming no file.
    predictions = tmp_path / "preds.csv"
    predictions.write_bytes(content)
    assert main(["report", str(predictions), "--out", str(tmp_path / "r.png")]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"forecaster report: error: {predictions}") and says in line, line
    assert line.endswith("(expected a `forecaster backtest --out` file)")


def test_backtest_serves_a_registered_model_by_uri(data_dir: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from models import registry

    asked = []
    monkeypatch.setattr(registry, "load_model", lambda uri, settings: asked.append(uri) or Reversal())
    out = tmp_path / "preds.csv"
    assert main(["backtest", str(data_dir / "601988.SH.csv"), "--model", "models:/next-close@champion",
                 "--start", "2021-01-01", "--out", str(out)]) == 0
    assert asked == ["models:/next-close@champion"]
    assert "model reversal:" in capsys.readouterr().out
    with out.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {r["model"] for r in rows} == {"reversal"} and rows[-1]["warmup"] == "False"


@contextlib.contextmanager
def answering(send: Callable[[BinaryIO, threading.Event], None]) -> Iterator[str]:
    """A local HTTP server whose every GET is answered by ``send(stream, stop)``, written raw, so it may be
    what no Prometheus sends (``stop`` is set when the test ends); its base URL."""
    stop = threading.Event()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # http.server's name
            with contextlib.suppress(OSError):  # the client gave up on the answer
                send(self.wfile, stop)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler) as server:
        # A short poll: shutdown() waits for the loop to look (every 0.5 s by default).
        threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True).start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}"
        finally:
            stop.set()
            server.shutdown()


def answer(status: str, body: bytes, content_type: str = "application/json") -> bytes:
    head = f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


def sending(raw: bytes) -> Callable[[BinaryIO, threading.Event], None]:
    return lambda stream, stop: stream.write(raw)


@pytest.mark.parametrize("url", ["", "localhost:9090"], ids=["empty", "no scheme"])
def test_report_refuses_a_url_that_is_no_prometheus_server(url: str, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    # An empty URL took the backtest file's branch with no file: an AttributeError's traceback.
    assert main(["report", "--prometheus", url, "--out", str(tmp_path / "r.png")]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line == (f"forecaster report: error: {url!r} is not the URL of a Prometheus server "
                    "(e.g. http://localhost:9090)")


@pytest.mark.parametrize(("raw", "says"), [
    (answer("200 OK", b"[1,2,3]"), 'HTTP 200, no "status" of success or error'),
    (answer("200 OK", b'{"status":"success"}'),
     'HTTP 200, no "data" of resultType matrix with a result list'),
    (answer("200 OK", b'{"status":"success","data":{"resultType":"matrix","result":[{"values":[]}]}}'),
     'HTTP 200, a series without "metric" labels'),
    (answer("200 OK", b'{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},'
                      b'"values":[[1e300,"1"]]}]}}'),
     'HTTP 200, a series without "values" of [time, "number"] pairs'),
    (answer("200 OK", b"<html><body>Grafana</body></html>", "text/html"), "HTTP 200, not JSON"),
    (answer("404 Not Found", b"<html><body>404</body></html>", "text/html"), "HTTP 404, not JSON"),
    (b"SSH-2.0-OpenSSH_9.2\r\n", "not HTTP: BadStatusLine SSH-2.0-OpenSSH_9.2\\r\\n"),
], ids=["list", "no data", "no metric", "time out of range", "html", "html 404", "not http"])
def test_report_names_the_url_of_an_answer_that_is_not_prometheus(
        raw: bytes, says: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Each was an AttributeError's, a KeyError's or an OverflowError's traceback, or JSON's "Expecting
    # value: line 1 column 1 (char 0)" naming neither the URL nor Prometheus.
    with answering(sending(raw)) as url:
        assert main(["report", "--prometheus", url, "--out", str(tmp_path / "r.png")]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line == (f"forecaster report: error: {url} answered 'forecaster_predicted_close' with what is not "
                    f"a Prometheus query_range answer ({says}): is it the URL of a Prometheus server?")


def test_report_says_what_prometheus_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Prometheus's own refusal (a 400 whose body says why) is still told apart from a stranger's answer.
    refusal = b'{"status":"error","errorType":"bad_data","error":"exceeded maximum resolution"}'
    with answering(sending(answer("400 Bad Request", refusal))) as url:
        assert main(["report", "--prometheus", url, "--out", str(tmp_path / "r.png")]) == 2
    assert capsys.readouterr().err.strip() == (
        f"forecaster report: error: Prometheus at {url} refused 'forecaster_predicted_close': "
        "exceeded maximum resolution")


def trickling(head: bytes) -> Callable[[BinaryIO, threading.Event], None]:
    """Sends ``head``, then a space every 20 ms until the test ends: each read of the client gets a
    byte well within any socket timeout."""
    def send(stream: BinaryIO, stop: threading.Event) -> None:
        stream.write(head)
        while not stop.wait(0.02):
            stream.write(b" ")
            stream.flush()
    return send


@pytest.mark.parametrize("head", [b"HTTP/1.1 200 OK\r\n", b"HTTP/1.1 200 OK\r\n\r\n"],
                         ids=["in its headers", "in its body"])
def test_an_answer_that_trickles_is_given_up_at_its_deadline(head: bytes) -> None:
    # A byte every 5 s held `report` for ever: the 30 s timeout was each read's, not the answer's.
    with answering(trickling(head)) as url, pytest.raises(ValueError) as refused:
        query_range(url, "up", 1, 5, timeout_s=0.5)
    assert str(refused.value) == f"Prometheus at {url} sent no whole answer to 'up' within 0.5 s"


def test_an_answer_past_its_size_cap_is_not_read_on() -> None:
    def endless(stream: BinaryIO, stop: threading.Event) -> None:
        stream.write(b'HTTP/1.1 200 OK\r\n\r\n{"status":"success","data":{"resultType":"matrix","result":[')
        while not stop.is_set():  # until the client hangs up (a write fails) or the test ends
            stream.write(b'{"metric":{},"values":[[1,"1"]]},' * 1000)

    with answering(endless) as url, pytest.raises(ValueError) as refused:
        query_range(url, "up", 1, 5, max_bytes=2**20)
    assert str(refused.value) == (f"Prometheus at {url} answered 'up' with more than 1,048,576 bytes, more "
                                  "than any answer a report asks for")


@pytest.mark.parametrize("minutes", ["-5", "0", "nan", "inf", "1e300", "901"])
def test_report_refuses_minutes_that_are_no_time_to_draw(minutes: str, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    # Each was sent on to Prometheus, which refused most only then (an end before the start, over
    # 11,000 points a series at the report's 5 s step).
    asked = []
    with answering(lambda stream, stop: asked.append(stream)) as url, pytest.raises(SystemExit) as exit:
        main(["report", "--prometheus", url, "--out", str(tmp_path / "r.png"), "--minutes", minutes])
    assert exit.value.code == 2 and not asked
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"forecaster report: error: argument --minutes: {minutes!r} is not a positive number of minutes up "
        "to 900")
