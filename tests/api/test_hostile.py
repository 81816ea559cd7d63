"""Hostile input against a real ``forecaster serve``: every probe of issue #30, answered in a few
kilobytes, the server's peak memory under a fixed budget, and /health answering meanwhile.

The server runs with the default limits (FORECASTER_API_MAX_BYTES 64 MiB, FORECASTER_API_MAX_ROWS
100,000). Its peak resident memory (``VmHWM``) is read from /proc and reset before each probe
(``clear_refs``), so each probe's own peak is measured. No assertion is about time: /health is asked
again and again while the probes run, and what is asserted is that it answered while a probe was in
flight; the latencies are printed for docs/reliability.md.
"""

from __future__ import annotations

import gzip
import http.client
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from forecaster.kafka.broker import free_port
from forecaster.settings import Settings, to_environ
from tests.serving import peak_rss_kib, serving

pytestmark = pytest.mark.slow

MIB = 1 << 20
#: Peak resident memory a probe may cost the server, baseline included (a forecast's imports
#: take about 150 MiB).
BUDGET_KIB = 300 * 1024
BAR = b'{"ticker":"ACME","date":"2024-01-05","open":10,"high":11,"low":9,"close":10,"volume":9}'


@dataclass(frozen=True)
class Probe:
    name: str
    content_type: str
    body: Callable[[], bytes]
    status: int
    says: bytes


def _multipart(name: str, content: bytes) -> bytes:
    return (f"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode() + content + b"\r\n--b--\r\n"


def _ansi_rows() -> bytes:
    return (b"date,open,high,low,close,volume,Name\n"
            + b"\x1b[2J\x1b]0;owned\x07,1,1,1,1,1,\x1b[31mX\r\n" * 1000)


def _invalid_rows() -> bytes:
    """1e6 rows whose volume is negative, gzipped: the issue's 2.4 MB probe."""
    rows = b"2020-01-02,10,11,9,10,-1,ACME\n" * 1_000_000
    return _multipart("rows.csv.gz", gzip.compress(b"date,open,high,low,close,volume,Name\n" + rows, 6))


PROBES = [
    Probe("1e6 invalid CSV rows, gzipped", "multipart/form-data; boundary=b", _invalid_rows, 413,
          b"more than 100,000 rows"),
    Probe("4 MB JSON {\"bars\": [0, ...]}", "application/json",
          lambda: b'{"bars": [' + b"0," * (2 * MIB - 1) + b"0]}", 413, b"more than FORECASTER_API_MAX_ROWS"),
    Probe("15 MB JSON [{}, ...]", "application/json", lambda: b"[" + b"{}," * (5 * MIB - 1) + b"{}]", 422,
          b"the body is not a JSON object"),
    Probe("15 MB JSON {\"bars\": [{}, ...]}", "application/json",
          lambda: b'{"bars": [' + b"{}," * (5 * MIB - 1) + b"{}]}", 413,
          b"more than FORECASTER_API_MAX_ROWS"),
    Probe("60 MB JSON of valid bars", "application/json",
          lambda: b'{"bars": [' + b",".join([BAR] * (60 * MIB // len(BAR))) + b"]}", 413,
          b"more than FORECASTER_API_MAX_ROWS"),
    Probe("60 MB JSON of one nested bar", "application/json",
          lambda: b'{"bars": [' + b"[" * (60 * MIB) + b"]}", 422, b"no nested arrays"),
    Probe("1M-column CSV header", "multipart/form-data; boundary=b",
          lambda: _multipart("wide.csv", b"c," * 1_000_000 + b"c\n1\n"), 422, b"is not a row of bars"),
    Probe("1,001-column header of 1 KiB names", "multipart/form-data; boundary=b",
          lambda: _multipart("wide.csv", b",".join([b"\x1b[31m" + b"n" * 1000] * 1001) + b"\n1\n"), 422,
          b"more than 1,000"),
    Probe("1,000-column header of 1 KiB names", "multipart/form-data; boundary=b",
          lambda: _multipart("wide.csv", b",".join([b"\x1b[31m" + b"n" * 1000] * 1000) + b"\n1\n"), 422,
          b"\\\\x1b[31mnnn"),
    Probe("ANSI and control bytes in rows", "multipart/form-data; boundary=b",
          lambda: _multipart("ansi.csv", _ansi_rows()), 422, b"\\\\x1b[2J"),
    Probe("a file name of 300 bytes", "multipart/form-data; boundary=b",
          lambda: _multipart("n" * 300 + ".csv", _ansi_rows()), 422, b"\\\\x1b[2J"),
    Probe("gzip in gzip in gzip", "multipart/form-data; boundary=b",
          lambda: _multipart("rows.csv.gz", gzip.compress(gzip.compress(gzip.compress(b"date\n1\n")))), 422,
          b"gzipped more than 2 times over"),
    Probe("64 MiB + 1 body, no Content-Length", "application/json",
          lambda: b'{"bars": [' + b" " * (64 * MIB), 413, b"more than FORECASTER_API_MAX_BYTES"),
]


def _reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM back to the current RSS


def _post(host: str, port: int, probe: Probe, body: bytes) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection(host, port, timeout=300)
    try:
        if probe.name.endswith("no Content-Length"):
            connection.putrequest("POST", "/forecast")
            connection.putheader("Content-Type", probe.content_type)
            connection.putheader("Transfer-Encoding", "chunked")
            connection.endheaders()
            try:
                for at in range(0, len(body), MIB):
                    piece = body[at:at + MIB]
                    connection.send(b"%x\r\n%s\r\n" % (len(piece), piece))
                connection.send(b"0\r\n\r\n")
            except OSError:  # the server answered and closed before the end: the answer is read below
                pass
        else:
            connection.request("POST", "/forecast", body=body, headers={"Content-Type": probe.content_type})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@contextmanager
def _serve(home: Path, **limits: Any) -> Iterator[tuple[str, int, int, Path]]:
    """``forecaster serve`` with the default limits but ``limits``, no broker, an empty registry, no
    rate limit and 2 s timeouts for headers and bodies: (host, port, PID, log)."""
    settings = Settings(home=str(home), bootstrap=f"127.0.0.1:{free_port()}", api_port=free_port(),
                        api_rate_per_s=0, api_header_timeout_s=2, api_body_timeout_s=2).replace(**limits)
    log = home / "serve.log"
    url = f"http://{settings.api_host}:{settings.api_port}"
    command = [sys.executable, "-m", "forecaster.cli", "serve"]
    with serving(command, url, log, env={**os.environ, **to_environ(settings)}) as process:
        yield settings.api_host, settings.api_port, process.pid, log


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Iterator[tuple[str, int, int, Path]]:
    """:func:`_serve` with the default limits; its one real forecast done, so that the baseline holds
    what any forecast loads."""
    with _serve(tmp_path_factory.mktemp("home")) as (host, port, pid, log):
        content = (data_dir / "601988.SH.csv").read_bytes()
        probe = Probe("real", "multipart/form-data; boundary=b", lambda: _multipart("601988.SH.csv", content),
                      200, b"")
        assert _post(host, port, probe, probe.body())[0] == 200
        yield host, port, pid, log


def test_every_probe_gets_a_small_answer_within_the_memory_budget_and_health_answers(
        server: tuple[str, int, int, Path]) -> None:
    host, port, pid, _ = server
    results: dict[str, tuple[int, bytes, int]] = {}
    in_flight = threading.Event()
    done = threading.Event()

    def send_probes() -> None:
        try:
            for probe in PROBES:
                body = probe.body()  # made before the probe is in flight: the client's work is not timed
                _reset_peak(pid)
                in_flight.set()
                status, answer = _post(host, port, probe, body)
                in_flight.clear()
                results[probe.name] = (status, answer, peak_rss_kib(pid))
        finally:
            in_flight.clear()
            done.set()

    sender = threading.Thread(target=send_probes)
    sender.start()
    answered_in_flight: list[float] = []
    while not done.is_set():
        flying = in_flight.is_set()
        started = time.perf_counter()
        connection = http.client.HTTPConnection(host, port, timeout=60)
        connection.request("GET", "/health")
        assert connection.getresponse().status == 200
        connection.close()
        if flying and in_flight.is_set():  # asked and answered while one probe was in flight
            answered_in_flight.append(time.perf_counter() - started)
        done.wait(0.05)
    sender.join()
    for name, (status, answer, peak) in results.items():
        print(f"| {name} | {status}, {len(answer):,} B | {peak / 1024:.0f} MiB |")
    print(f"/health while a probe was in flight: {len(answered_in_flight)} answers, "
          f"median {sorted(answered_in_flight)[len(answered_in_flight) // 2] * 1000:.0f} ms, "
          f"max {max(answered_in_flight) * 1000:.0f} ms")
    assert len(results) == len(PROBES)
    for probe in PROBES:
        status, answer, peak = results[probe.name]
        assert (status, probe.says in answer) == (probe.status, True), (probe.name, answer[:300])
        assert len(answer) < 64 * 1024 and b"\x1b" not in answer and b"\\u001b" not in answer, probe.name
        assert peak < BUDGET_KIB, (probe.name, peak)
    assert answered_in_flight


#: Query strings and paths whose text an answer echoes, or whose digits int() refuses: each a short 4xx.
ODD_REQUESTS = [
    ("POST", "/forecast?horizons=%C2%B2", 422, b"?horizons="),  # a digit to str.isdigit, not to int()
    ("POST", "/forecast?horizons=" + "1" * 5000, 422, b"?horizons="),  # past int()'s 4,300 digits
    ("POST", "/forecast?model=%D9%A1", 404, b"is not champion"),  # an Arabic-Indic one
    ("POST", "/forecast?model=models:/%1b[31m" + "x" * 10_000, 404, b"expected models:/NAME/VERSION"),
    ("GET", "/predictions/%1b[2J" + "T" * 70_000, 404, b"no prediction of"),
]


def test_odd_digits_and_echoed_text_get_short_printable_answers(server: tuple[str, int, int, Path],
                                                                  data_dir: Path) -> None:
    host, port, _, log = server
    upload = _multipart("601988.SH.csv", (data_dir / "601988.SH.csv").read_bytes())
    for method, path, status, says in ODD_REQUESTS:
        connection = http.client.HTTPConnection(host, port, timeout=60)
        connection.request(method, path, body=upload if method == "POST" else None,
                           headers={"Content-Type": "multipart/form-data; boundary=b"})
        response = connection.getresponse()
        answer = response.read()
        connection.close()
        assert (response.status, says in answer) == (status, True), (path[:60], answer[:300])
        assert len(answer) < 2048 and b"\x1b" not in answer and b"\\u001b" not in answer, path[:60]
    assert "Traceback" not in log.read_text()


def test_idle_and_slow_connections_are_closed_and_health_still_answers(
        server: tuple[str, int, int, Path]) -> None:
    host, port, _, log = server
    sockets = [socket.create_connection((host, port)) for _ in range(50)]
    for index, sock in enumerate(sockets[:25]):  # half send part of their headers, the rest nothing
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow-%d: " % index)
    for sock in sockets:
        sock.settimeout(60)
        assert sock.recv(1024) == b""  # closed by the server, once the header timeout passed
        sock.close()
    connection = http.client.HTTPConnection(host, port, timeout=60)
    connection.request("GET", "/health")
    assert connection.getresponse().status == 200
    lines = [line for line in log.read_text().splitlines() if "request headers not complete" in line]
    assert len(lines) >= 50


def test_a_stalled_body_gets_a_408_and_an_aborted_upload_one_line(server: tuple[str, int, int, Path]) -> None:
    host, port, _, log = server
    head = (b"POST /forecast HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n{\"bars\": [")
    with socket.create_connection((host, port)) as sock:
        sock.sendall(head)
        sock.settimeout(60)
        assert sock.recv(1024).startswith(b"HTTP/1.1 408 ")
    upload = (b"POST /forecast HTTP/1.1\r\nHost: 127.0.0.1\r\n"
              b"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 100000\r\n\r\n"
              + _multipart("a.csv", b"date,close\n")[:60])
    with socket.create_connection((host, port)) as sock:
        sock.sendall(upload)
    deadline = time.monotonic() + 60
    while "the client disconnected" not in log.read_text():
        assert time.monotonic() < deadline, log.read_text()[-2000:]
        time.sleep(0.1)
    text = log.read_text()
    assert text.count("the client disconnected") == 1 and "Traceback" not in text


def test_a_trickled_body_gets_a_408_once_it_falls_below_the_minimum_rate(
        server: tuple[str, int, int, Path]) -> None:
    # A byte within every pause kept a forecast slot for as long as the client went on.
    host, port, _, _ = server
    head = (b"POST /forecast HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100000\r\n\r\n{\"bars\": [")
    answer = b""
    with socket.create_connection((host, port)) as sock:
        sock.sendall(head)
        sock.settimeout(0.5)  # a blank every half second: never a pause of the 2 s limit
        for _ in range(240):  # two minutes at most
            try:
                piece = sock.recv(4096)
            except TimeoutError:
                sock.sendall(b" ")
                continue
            answer += piece
            if not piece or b"bytes a second" in answer:
                break
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert b"slower than FORECASTER_API_BODY_MIN_RATE (1,024 bytes a second) after its first 2 s" in answer


def test_a_request_past_the_concurrency_limit_gets_a_503_and_one_log_line(tmp_path: Path) -> None:
    # Idle connections count: two held open (for up to the header timeout) fill a limit of two.
    with _serve(tmp_path, api_concurrency=2, api_header_timeout_s=60) as (host, port, _, log):
        held = [socket.create_connection((host, port)) for _ in range(2)]
        try:
            connection = http.client.HTTPConnection(host, port, timeout=60)
            connection.request("GET", "/predictions")
            response = connection.getresponse()
            answer = json.loads(response.read())
            connection.close()
        finally:
            for sock in held:
                sock.close()
        message = "more than FORECASTER_API_CONCURRENCY (2) connections or requests at once: retry shortly"
        assert (response.status, response.getheader("Retry-After"), answer) == (
            503, "1", {"detail": {"message": message}})
        # Logged before the answer was sent.
        (line,) = [line for line in log.read_text().splitlines() if "refused 503" in line]
        assert line.endswith(f"refused 503 GET /predictions: {message} (client 127.0.0.1)"), line
        deadline = time.monotonic() + 60
        while True:  # once the held connections are gone (the server sees it soon after), it serves again
            connection = http.client.HTTPConnection(host, port, timeout=60)
            connection.request("GET", "/predictions")
            status = connection.getresponse().status
            connection.close()
            if status == 200:
                break
            assert time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.1)
