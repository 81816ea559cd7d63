"""A real ``forecaster worker`` for the stream, fault and observability tests: the process (started
with given settings, stopped by signal), the records it should emit (the backtest's) and what it did
emit, and waits that poll a condition while checking the worker is alive."""

from __future__ import annotations

import datetime as dt
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from forecaster.kafka.broker import free_port
from forecaster.settings import Settings, to_environ
from models.backtest import run_backtest
from models.core.bar import Bar
from models.core.config import CoreConfig
from producers.pacing import Pacing
from producers.readers import ReadResult, read_csv_bars
from producers.replay import ReplaySummary, replay
from tests.kafka_helpers import read_topic

FORECASTER_WORKER = [sys.executable, "-m", "forecaster.cli", "worker"]


class WorkerProcess:
    """``forecaster worker`` (or another ``command``) in a child process, its output in ``log``.

    Use as a context manager; ``stop(signal.SIGKILL)`` simulates a crash.
    """

    def __init__(self, settings: Settings, log: Path, command: list[str] = FORECASTER_WORKER) -> None:
        self.settings = settings.replace(metrics_port=free_port())
        self.log = log
        self.command = command
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        env = {**os.environ, **to_environ(self.settings), "PYTHONUNBUFFERED": "1"}
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                self.command, env=env, stdout=out,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )
        return self

    @property
    def metrics_url(self) -> str:
        return f"http://{self.settings.metrics_host}:{self.settings.metrics_port}/metrics"

    def metrics(self, timeout_s: float = 120.0) -> str:
        """The worker's /metrics page, polling until it serves one."""
        deadline = time.monotonic() + timeout_s
        while True:
            self.assert_alive()
            try:
                with urllib.request.urlopen(self.metrics_url, timeout=2) as response:
                    return response.read().decode()
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def assert_alive(self) -> None:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"the worker exited with {self.process.returncode}:\n{self.output()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-5000:] if self.log.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 60.0) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                name = signal.Signals(sig).name
                raise AssertionError(f"the worker ignored {name}:\n{self.output()}") from None
        return self.process.returncode

    def __enter__(self) -> WorkerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.stop(signal.SIGKILL)


Key = tuple[str, str, str, int]


def bokeh_slice(data_dir: Path, tickers: tuple[str, ...]) -> ReadResult:
    """``tickers`` over 2011-2012 of the bokeh sample: about 500 bars each."""
    return read_csv_bars([data_dir / "bokeh-stocks.csv.gz"], tickers=tickers,
                         start=dt.date(2011, 1, 1), end=dt.date(2012, 12, 31))


def record_key(record: dict) -> Key:
    """A prediction or score is identified by its type, ticker, the day it was made and its horizon."""
    return (record["record_type"], record["ticker"], record["as_of"], record["horizon"])


def expected_records(result: ReadResult, settings: Settings) -> dict[Key, dict]:
    """What an uninterrupted worker emits: the backtest's records (the stream == backtest test)."""
    backtest = run_backtest(result.bars, CoreConfig.from_settings(settings))
    return {record_key(r): r for r in [*backtest.predictions, *backtest.scores]}


def as_read(bars: Iterable[Bar]) -> ReadResult:
    """``bars`` as a read of their own, ready to replay."""
    listed = list(bars)
    return ReadResult(bars=listed, dead_letters=[], rows_read=len(listed), filtered=0)


def only_days(result: ReadResult, keep: Callable[[dt.date], bool]) -> ReadResult:
    """The bars of ``result`` whose date passes ``keep``, as a read of their own."""
    return as_read(bar for bar in result.bars if keep(bar.date))


def streamed_records(settings: Settings, topic: str | None = None) -> list[dict]:
    """Every record on the predictions topic (or ``topic``), without the worker's wall-clock field."""
    records = []
    for *_, value in read_topic(settings, topic or settings.topic_predictions):
        value = dict(value)
        value.pop("produced_at")
        records.append(value)
    return records


def metric(page: str, name: str, **labels: str) -> float | None:
    """The value of one series on a /metrics page (None: not exported)."""
    wanted = ",".join(f'{key}="{value}"' for key, value in labels.items())
    series = f"{name}{{{wanted}}}" if labels else name
    match = re.search(rf"^{re.escape(series)} (\S+)$", page, re.MULTILINE)
    return float(match[1]) if match else None


def wait_until(condition: Callable[[], object], what: str, worker: WorkerProcess | None,
               timeout_s: float = 180.0) -> None:
    """Poll ``condition`` until it holds; fail at once if ``worker`` died, or with ``what`` and the
    worker's log after ``timeout_s``. ``worker`` None: no worker to watch (one killed on purpose)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if worker is not None:
            worker.assert_alive()
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} after {timeout_s} s\n{worker.output() if worker else ''}")
        time.sleep(0.2)


def wait_for_records(settings: Settings, keys: set[Key], worker: WorkerProcess,
                     timeout_s: float = 180.0, others: Sequence[WorkerProcess] = ()) -> list[dict]:
    """Poll the predictions topic until every expected record is there. ``worker`` must stay alive;
    ``others`` (workers of the same group) are described with it if the wait fails."""
    deadline = time.monotonic() + timeout_s
    while True:
        worker.assert_alive()
        records = streamed_records(settings)
        missing = keys - {record_key(r) for r in records}
        if not missing:
            return records
        if time.monotonic() > deadline:
            raise AssertionError(diagnosis(settings, missing, [worker, *others]))
        time.sleep(0.5)


def diagnosis(settings: Settings, missing: set[Key], workers: Sequence[WorkerProcess]) -> str:
    """What a test that waited in vain needs to tell slowness from loss: which records are missing
    per ticker, what the worker refused, and how far each worker got, with its log."""
    per_ticker = Counter(ticker for _, ticker, *_ in missing)
    first = {t: min(day for _, ticker, day, _ in missing if ticker == t) for t in per_ticker}
    refused = Counter(value["reason"] for *_, value in read_topic(settings, settings.topic_dlq))
    report = [f"{len(missing)} records missing: {dict(per_ticker)}, first missing day {first}; "
              f"dead letters {dict(refused)}"]
    for worker in workers:
        report.append(f"--- worker logging to {worker.log.name}: {_progress(worker)}\n{worker.output()}")
    return "\n".join(report)


def _progress(worker: WorkerProcess) -> str:
    """The worker's consumed and lag metrics, or why they are unavailable."""
    if worker.process is None or worker.process.poll() is not None:
        return f"exited with {worker.process.returncode if worker.process else None}"
    try:
        lines = worker.metrics(timeout_s=5).splitlines()
    except OSError as error:
        return f"metrics unavailable: {error}"
    return str([line for line in lines
                if line.startswith(("forecaster_bars_consumed_total", "forecaster_consumer_lag{"))])


def assert_same_as_backtest(records: list[dict], expected: dict[Key, dict]) -> int:
    """Every streamed record equals the backtest's, none is missing; returns how many were repeats
    (at-least-once delivery may repeat a record, always identical)."""
    for record in records:
        assert record == expected[record_key(record)], record_key(record)
    counts = Counter(record_key(r) for r in records)
    assert counts.keys() == expected.keys()
    return sum(n - 1 for n in counts.values())


def replay_2011_and_wait(bars: ReadResult, settings: Settings, expected: dict[Key, dict],
                         worker: WorkerProcess, others: Sequence[WorkerProcess] = ()) -> None:
    """Replay the first year of a :func:`bokeh_slice` and wait for the worker's predictions of it."""
    replay(only_days(bars, lambda day: day.year == 2011), settings, progress=False)
    wait_for_records(settings, {k for k in expected if k[0] == "prediction" and k[2] < "2012"}, worker,
                     others=others)


def replay_in_background(read: ReadResult, settings: Settings, rate: float) -> tuple[threading.Thread, list]:
    """A paced replay in a thread; the list receives its summary (or the exception it raised)."""
    outcome: list[ReplaySummary | BaseException] = []

    def run() -> None:
        try:
            outcome.append(replay(read, settings, pacing=Pacing(rate=rate), progress=False))
        except BaseException as exc:  # handed to the test, which fails with it
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def finished(thread: threading.Thread, outcome: list) -> ReplaySummary:
    thread.join(timeout=300)
    assert outcome, "the replay did not finish"
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    return outcome[0]
