"""FORECASTER_API_MAX_BYTES: a body is refused (413) while it arrives, a gzip upload once it inflates
past the limit, and the server's memory stays bounded.

The gzip bomb is real: about 3 MB of gzip that inflates to 1 GiB of CSV rows, made by streaming. The
server is a real ``forecaster serve`` whose peak resident memory (``VmHWM``) is read from /proc; the
streaming checks call the app in process and count what it pulled of a body that never ends early.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from api.app import create_app
from forecaster.kafka.broker import free_port
from forecaster.settings import Settings, to_environ
from tests.serving import peak_rss_kib, serving

INFLATED = 1 << 30
ROW = b"2020-01-02,10.0,11.0,9.0,10.5,1000\n"
MIB = 1 << 20


@pytest.fixture(scope="module")
def gzip_bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A .csv.gz of a header and 1 GiB of (identical) rows, compressed a block at a time."""
    path = tmp_path_factory.mktemp("bomb") / "aaa.csv.gz"
    block = ROW * (MIB // len(ROW))
    compressor = zlib.compressobj(9, wbits=31)  # 16 + 15: a gzip container
    with path.open("wb") as out:
        out.write(compressor.compress(b"date,open,high,low,close,volume\n"))
        for _ in range(INFLATED // len(block) + 1):
            out.write(compressor.compress(block))
        out.write(compressor.flush())
    assert path.stat().st_size < 8 * MIB
    return path


def _post_file(url: str, name: str, content: bytes) -> tuple[int, bytes]:
    boundary = "forecaster-test-boundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n")
    body = head.encode() + content + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(f"{url}/forecast", data=body, method="POST",
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@pytest.fixture
def server(offline_settings: Settings, tmp_path: Path) -> Iterator[tuple[str, int]]:
    """``forecaster serve`` (no broker, empty registry) with the default limit; (base URL, PID)."""
    settings = offline_settings.replace(api_port=free_port())
    assert settings.api_max_bytes == 64 * MIB
    log = tmp_path / "serve.log"
    url = f"http://{settings.api_host}:{settings.api_port}"
    command = [sys.executable, "-m", "forecaster.cli", "serve"]
    with serving(command, url, log, env={**os.environ, **to_environ(settings)}) as process:
        yield url, process.pid


def test_a_gzip_bomb_gets_a_413_and_the_server_stays_small(server: tuple[str, int], gzip_bomb: Path,
                                                          data_dir: Path) -> None:
    url, pid = server
    # A real upload first, so that the peak includes what any forecast loads (the core, numpy...).
    code, _ = _post_file(url, "601988.SH.csv", (data_dir / "601988.SH.csv").read_bytes())
    assert code == 200
    before = peak_rss_kib(pid)
    code, body = _post_file(url, gzip_bomb.name, gzip_bomb.read_bytes())
    assert code == 413
    assert b"aaa.csv.gz inflates to more than FORECASTER_API_MAX_BYTES (67,108,864 bytes)" in body
    # Inflated whole, the rows alone would take 1 GiB; chunk by chunk they take a few MiB.
    assert peak_rss_kib(pid) - before < 64 * 1024


class Body:
    """An ASGI ``receive`` of a ``size``-byte body (``head``, then zeros, 1 MiB a message) that counts
    what the app pulled of it."""

    def __init__(self, head: bytes, size: int) -> None:
        self.head, self.size, self.pulled = head, size, 0

    async def receive(self) -> dict[str, Any]:
        chunk = self.head if self.pulled == 0 else bytes(MIB)
        self.pulled += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": self.pulled < self.size}


async def _asgi_post(app: Any, receive: Any, content_type: str,
                     length: int | None = None) -> tuple[int, dict[str, str], bytes]:
    """POST /forecast to ``app`` in process, its body from ``receive`` as a server hands it over (one
    message at a time): the answer's status, headers and body."""
    headers = [(b"host", b"localhost"), (b"content-type", content_type.encode())]
    if length is not None:
        headers.append((b"content-length", str(length).encode()))
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": "/forecast", "raw_path": b"/forecast", "query_string": b"",
             "root_path": "", "headers": headers, "client": ("127.0.0.1", 1), "server": ("api", 80)}
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    (start,) = [m for m in sent if m["type"] == "http.response.start"]
    content = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}, content


def _post_stream(settings: Settings, body: Body, content_type: str,
                 length: int | None = None) -> tuple[int, dict[str, Any]]:
    """POST ``body`` to the app in process."""
    status, _, content = asyncio.run(_asgi_post(create_app(settings), body.receive, content_type, length))
    return status, json.loads(content)


@pytest.mark.parametrize("kind", ["multipart", "json"])
def test_a_body_is_refused_while_it_arrives(offline_settings: Settings, kind: str) -> None:
    settings = offline_settings.replace(api_max_bytes=8 * MIB)
    if kind == "multipart":
        head = (b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.csv\"\r\n"
                b"Content-Type: text/csv\r\n\r\ndate,open,high,low,close,volume\n")
        content_type = "multipart/form-data; boundary=b"
    else:
        head, content_type = b'{"bars": [', "application/json"
    body = Body(head, INFLATED)  # 1 GiB that no client check stops: no Content-Length
    status, answer = _post_stream(settings, body, content_type)
    assert status == 413
    assert answer["detail"]["message"].startswith(
        "the body holds more than FORECASTER_API_MAX_BYTES (8,388,608 bytes)")
    # It stopped pulling at the first block past the limit.
    assert 8 * MIB < body.pulled <= 9 * MIB + len(head)


def test_a_declared_length_over_the_limit_is_refused_before_any_byte(offline_settings: Settings,
                                                                      ) -> None:
    body = Body(b'{"bars": [', INFLATED)
    status, _ = _post_stream(offline_settings, body, "application/json", length=INFLATED)
    assert status == 413 and body.pulled == 0


def test_forecasts_past_the_slots_get_a_503_and_the_slots_come_back(offline_settings: Settings) -> None:
    app = create_app(offline_settings.replace(api_forecasts=2))
    bar = {"ticker": "ACME", "date": "2024-01-05", "open": 10, "high": 11, "low": 9, "close": 10, "volume": 9}

    async def whole_body() -> dict[str, Any]:
        return {"type": "http.request", "body": json.dumps({"bars": [bar]}).encode(), "more_body": False}

    async def scenario() -> list[tuple[int, dict[str, str], bytes]]:
        arrived = asyncio.Event()
        waiting = 0

        async def body_still_arriving() -> dict[str, Any]:  # holds its slot until the event
            nonlocal waiting
            waiting += 1
            await arrived.wait()
            return await whole_body()

        held = [asyncio.create_task(_asgi_post(app, body_still_arriving, "application/json"))
                for _ in range(2)]
        while waiting < 2:  # both requests are in their slots, reading their bodies
            await asyncio.sleep(0)
        refused = await _asgi_post(app, whole_body, "application/json")
        arrived.set()
        return [refused, *await asyncio.gather(*held), await _asgi_post(app, whole_body, "application/json")]

    refused, first, second, after = asyncio.run(scenario())
    assert (refused[0], refused[1]["retry-after"]) == (503, "1")
    assert b"FORECASTER_API_FORECASTS" in refused[2]
    assert (first[0], second[0], after[0]) == (200, 200, 200)


def test_an_answer_nobody_reads_keeps_its_slot_until_the_client_pauses_too_long(
        offline_settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    # The slot bounds what forecasts hold, their answers too: released when the answer was made, a
    # client that never reads kept tens of MB in the server's buffers, and any number could.
    app = create_app(offline_settings.replace(api_forecasts=1, api_body_timeout_s=0.5))
    bar = {"ticker": "ACME", "date": "2024-01-05", "open": 10, "high": 11, "low": 9, "close": 10, "volume": 9}
    body = json.dumps({"bars": [bar]}).encode()
    headers = [(b"host", b"localhost"), (b"content-type", b"application/json")]
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": "/forecast", "raw_path": b"/forecast", "query_string": b"",
             "root_path": "", "headers": headers, "client": ("127.0.0.1", 2), "server": ("api", 80)}

    async def whole_body() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def scenario() -> tuple[int, int]:
        reading = asyncio.Event()

        async def never_reads(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.body":
                reading.set()
                await asyncio.Event().wait()  # the client's buffers are full: no send completes

        stuck = asyncio.create_task(app(scope, whole_body, never_reads))
        await reading.wait()
        while_held = (await _asgi_post(app, whole_body, "application/json"))[0]
        await asyncio.wait_for(stuck, 60)  # given up at the pause limit, and its slot released
        return while_held, (await _asgi_post(app, whole_body, "application/json"))[0]

    assert asyncio.run(scenario()) == (503, 200)
    assert any("refused 408 POST /forecast: the client paused reading its answer" in record.getMessage()
               for record in caplog.records)
