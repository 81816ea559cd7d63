"""``forecaster demo``: the whole pipeline, end to end, on a local broker, in one command.

Broker -> topics -> champion in a local MLflow store -> worker -> replay -> live progress -> a
per-ticker table against the naive forecast -> the report picture -> clean shutdown.

The demo works in a namespace of its own (topics ``demo.*``, consumer group ``forecaster-demo``)
that it resets at each run, so a second run gives the same figures and never touches a user's
``bars`` or ``predictions`` topics. What is slow to prepare is kept between runs: the broker's
jars and data folder, the MLflow store and its champion.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from forecaster.kafka.broker import BrokerError, LocalBroker, port_is_free
from forecaster.kafka.client import kafka_python_client, kafka_python_options
from forecaster.kafka.topics import create_topics
from forecaster.redaction import redact
from forecaster.report import panel_line, render
from forecaster.settings import Settings, to_environ
from models import registry, training
from models.backtest import prediction_rows
from models.core import metrics
from models.evaluation import InsufficientHistory
from producers.readers import read_csv_bars
from producers.replay import replay

# kafka-python (slow to import) loads inside the functions that talk to the broker.

DEMO_APP_ID = "forecaster-demo"
DEMO_TOPICS = {"topic_bars": "demo.bars", "topic_dlq": "demo.bars.dlq",
               "topic_predictions": "demo.predictions", "topic_shadow": "demo.predictions.shadow"}
#: Share of the trading days used to train the champion; the table reports the days after them.
TRAIN_SHARE = 0.7
WORKER_START_TIMEOUT_S = 120.0
DRAIN_TIMEOUT_S = 600.0


class DemoError(RuntimeError):
    """The demo cannot go on; the message says what to do."""


def say(text: str) -> None:
    """One line of the demo's output, with the credentials of any URI in it hidden."""
    print(redact(text), flush=True)


def demo_settings(settings: Settings) -> Settings:
    return settings.replace(app_id=DEMO_APP_ID, **DEMO_TOPICS)


@contextmanager
def broker_for(settings: Settings, port: int) -> Iterator[Settings]:
    """The broker of the demo: ``FORECASTER_BOOTSTRAP`` when set, else the local one.

    A local broker that this run started is stopped at the end; one that already ran is left running.
    """
    if os.environ.get("FORECASTER_BOOTSTRAP"):
        say(f"broker     {settings.bootstrap} (FORECASTER_BOOTSTRAP)")
        yield settings
        return
    broker = LocalBroker(Path(settings.home) / "kafka")
    already = broker.running()
    if not already and not port_is_free(port):
        raise DemoError(f"port {port} is in use: free it, pass --port, or set FORECASTER_BOOTSTRAP "
                        "to use a broker that already runs")
    try:
        info = broker.start(port=port)
    except BrokerError as exc:
        raise DemoError(str(exc)) from None
    how = "already running" if already else "started"
    say(f"broker     {info.bootstrap} ({how}, data {broker.data_dir})")
    try:
        yield settings.replace(bootstrap=info.bootstrap)
    finally:
        if not already:
            broker.stop()
            say("broker     stopped")


def reset_namespace(settings: Settings) -> None:
    """Delete the demo's topics, changelogs and consumer group, then create its topics afresh."""
    from kafka import KafkaAdminClient

    admin = kafka_python_client(KafkaAdminClient, **kafka_python_options(settings))
    try:
        doomed = [t for t in admin.list_topics()
                  if t in DEMO_TOPICS.values() or t.startswith(f"{DEMO_APP_ID}-")]
        if doomed:
            admin.delete_topics(doomed)
        _delete_group(admin, DEMO_APP_ID, timeout_s=max(60.0, 2 * settings.session_timeout_s))
        deadline = time.monotonic() + 60
        while set(doomed) & set(admin.list_topics()):  # deletion is asynchronous
            if time.monotonic() > deadline:
                raise DemoError(f"the broker did not delete {doomed} within 60 s")
            time.sleep(0.2)
    finally:
        admin.close()
    create_topics(settings)


def _delete_group(admin: Any, group: str, timeout_s: float = 60.0) -> None:
    """Delete a consumer group, or find it absent; retried while the coordinator is not ready and
    while the group still has members.

    kafka-python returns each group's error instead of raising it. A group left standing keeps its
    committed offsets, which the recreated topics' new worker would take for its own: a broker just
    restarted answers ``CoordinatorLoadInProgressError`` for a while, and a worker of the last run
    that died without leaving (a crash, or the broker stopped under it) stays a member until its
    session times out, ``NonEmptyGroupError`` meanwhile.
    """
    from kafka.errors import GroupIdNotFoundError, KafkaError

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            outcome = admin.delete_groups([group]).get(group, "OK")
        except KafkaError as exc:  # finding the coordinator raises (a fresh broker has none yet)
            if not exc.retriable and not isinstance(exc, GroupIdNotFoundError):
                raise
            outcome = type(exc).__name__
        if outcome in ("OK", "GroupIdNotFoundError"):  # the latter: the first run
            return
        if time.monotonic() > deadline:
            raise DemoError(f"cannot delete the consumer group {group!r} of the last run ({outcome}) "
                            f"within {timeout_s:.0f} s; is a worker of it still running?")
        time.sleep(0.2)


@dataclass
class WorkerHandle:
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextmanager
def worker_for(settings: Settings) -> Iterator[WorkerHandle]:
    """A ``forecaster worker`` child, in a session of its own so Ctrl-C reaches only the demo,
    which then stops the worker in order."""
    import shutil
    import urllib.request

    if not port_is_free(settings.metrics_port, settings.metrics_host):
        raise DemoError(f"the metrics port {settings.metrics_port} is in use: set FORECASTER_METRICS_PORT")
    shutil.rmtree(settings.worker_dir, ignore_errors=True)  # local table copies of the last run
    log = Path(settings.home) / "logs" / "demo-worker.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "forecaster.cli", "worker"], env={**os.environ, **to_environ(settings)},
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
    handle = WorkerHandle(process, log)
    try:
        url = f"http://{settings.metrics_host}:{settings.metrics_port}/metrics"
        deadline = time.monotonic() + WORKER_START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                raise DemoError(f"the worker exited with {process.returncode}; see {log}")
            try:
                urllib.request.urlopen(url, timeout=2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise DemoError(f"the worker did not start within {WORKER_START_TIMEOUT_S:.0f} s; "
                                    f"see {log}") from None
                time.sleep(0.25)
        say(f"worker     PID {process.pid}, metrics {url}")
        yield handle
    finally:
        handle.stop()
        say("worker     stopped")


def follow_predictions(settings: Settings, expected: int, worker: WorkerHandle) -> list[dict]:
    """Read the demo's prediction topic until ``expected`` predictions arrived, showing progress.

    On a terminal the progress line is redrawn in place; in a log it is written at every quarter.
    """
    from kafka import KafkaConsumer

    consumer = kafka_python_client(KafkaConsumer, settings.topic_predictions,
                                   **kafka_python_options(settings), group_id=None,
                                   auto_offset_reset="earliest", enable_auto_commit=False)
    records: list[dict] = []
    predictions = 0
    started = time.monotonic()
    shown = -1
    step = 1 if sys.stdout.isatty() else 25
    try:
        while predictions < expected:
            if worker.process.poll() is not None:
                raise DemoError(f"the worker stopped with {worker.process.returncode}; see {worker.log}")
            if time.monotonic() - started > DRAIN_TIMEOUT_S:
                raise DemoError(f"only {predictions:,} of {expected:,} predictions after "
                                f"{DRAIN_TIMEOUT_S:.0f} s; see {worker.log}")
            for batch in consumer.poll(timeout_ms=500).values():
                for message in batch:
                    record = orjson.loads(message.value)
                    records.append(record)
                    predictions += record["record_type"] == "prediction"
            percent = 100 * predictions // max(expected, 1) // step * step
            if percent != shown:
                rate = predictions / max(time.monotonic() - started, 1e-9)
                line = f"predicted  {predictions:,}/{expected:,} ({percent}%, {rate:,.0f}/s)"
                print(f"\r{line}" if step == 1 else line, end="" if step == 1 else "\n", flush=True)
                shown = percent
        if step == 1:
            print()
    finally:
        consumer.close()
    return records


def per_ticker_table(scores: Sequence[dict], since: dt.date) -> list[str]:
    """Predictions made and error against naive, per ticker, on the days from ``since``; the last line
    pools the tickers scale-free (geometric mean of the relative MAEs, tickers that beat naive)."""
    rows = [f"{'ticker':<8}{'scored':>8}{'MAE $':>10}{'naive MAE':>11}{'rel. MAE':>9}{'dir. acc.':>10}"
            f"{'cover 95':>10}"]
    ratios = {}
    by_ticker: dict[str, list[dict]] = {}
    for score in scores:
        if score["target_date"] >= since.isoformat() and not score.get("warmup", False):
            by_ticker.setdefault(score["ticker"], []).append(score)
    for ticker in sorted(by_ticker):
        group = by_ticker[ticker]
        actual = np.array([s["actual_close"] for s in group])
        predicted = np.array([s["predicted_close"] for s in group])
        naive = np.array([s["naive_close"] for s in group])
        inside = np.mean([s.get("inside_95", False) for s in group])
        ratios[ticker] = {"relative_mae": metrics.relative_mae(actual, predicted, naive)}
        rows.append(
            f"{ticker:<8}{len(group):>8}{metrics.mae(actual, predicted):>10.4f}"
            f"{metrics.mae(actual, naive):>11.4f}{ratios[ticker]['relative_mae']:>9.3f}"
            f"{metrics.directional_accuracy(actual, predicted, naive):>10.1%}{inside:>10.1%}"
        )
    return [*rows, panel_line(metrics.panel(ratios))]


def prepare_champion(bars: Sequence, settings: Settings, *, quick: bool, test_start: dt.date) -> None:
    """Train and offer a champion once; later runs reuse the store (a refusal is remembered too).

    The model is trained on the days before ``test_start`` only, and the table of the demo reports
    the days from ``test_start``, so no figure the demo prints is in-sample.
    """
    version = registry.champion_version(settings)
    if version is not None:
        say(f"champion   {settings.model_name} version {version} (prepared by an earlier run)")
        return
    if registry.client(settings).search_model_versions(f"name='{settings.model_name}'"):
        say(f"champion   none: an earlier run's candidate was refused; the worker serves the core's "
            f"{settings.model}")
        return
    family = "arima" if quick else "xgboost"
    say(f"training   {family} on the days before {test_start} (MLflow {settings.mlflow_uri})")
    try:
        outcome = training.train(bars, family, settings, experiment="demo", test_start=test_start,
                                 test_days=None)
    except InsufficientHistory as exc:
        # A short file still streams: the core's own model needs no training.
        say(f"champion   none: too little history to train a candidate ({exc}); the worker serves the "
            f"core's {settings.model}")
        return
    say("           " + outcome.summary().replace("\n", "\n           "))
    decision = registry.promote(settings, settings.model_name, outcome.version)
    say("promotion  " + decision.summary().replace("\n", "\n           "))


def run_demo(settings: Settings, *, data: Sequence[Path], tickers: Sequence[str] | None, quick: bool,
             port: int, report: Path) -> None:
    """The whole demo; see the module docstring. Raises :class:`DemoError` with what to do."""
    settings = demo_settings(settings)
    read = read_csv_bars(list(data), tickers=tickers)
    if not read.bars:
        raise DemoError(f"no bars to replay in {', '.join(map(str, data))}")
    days = sorted({bar.date for bar in read.bars})
    test_start = days[int(len(days) * TRAIN_SHARE)]
    say(f"data       {read.rows_read:,} rows, {len(read.bars):,} bars of "
        f"{len({b.ticker for b in read.bars})} tickers, {days[0]}..{days[-1]} "
        f"({len(read.dead_letters):,} rows rejected)")
    with broker_for(settings, port) as settings:
        reset_namespace(settings)
        say(f"topics     {settings.topic_bars}, {settings.topic_dlq}, {settings.topic_predictions}")
        prepare_champion(read.bars, settings, quick=quick, test_start=test_start)
        with worker_for(settings) as worker:
            summary = replay(read, settings, progress=sys.stderr.isatty())
            say("replayed   " + "\n           ".join(summary.lines()))
            records = follow_predictions(settings, summary.bars_sent, worker)
            worker_metrics = f"http://{settings.metrics_host}:{settings.metrics_port}/metrics"
    scores = [r for r in records if r["record_type"] == "score"]
    predictions = [r for r in records if r["record_type"] == "prediction"]
    say(f"\nOut-of-sample days from {test_start} (model {predictions[-1]['model']} "
        f"version {predictions[-1]['model_version']}):")
    table = per_ticker_table(scores, test_start)
    for row in table:
        say(row)
    if len(table) == 1:
        say(f"(no day scored after the warm-up: the file is shorter than the model needs, e.g. "
            f"FORECASTER_WINDOW={settings.window} bars for the ARIMA)")
    report.parent.mkdir(parents=True, exist_ok=True)
    drawn = render(prediction_rows(predictions, scores), report)
    say(f"\nreport     {report} ({drawn})")
    say(f"metrics    {worker_metrics} (served while the worker ran)")
    say(f"MLflow     {settings.mlflow_uri}")
    say(f"records    FORECASTER_TOPIC_PREDICTIONS={settings.topic_predictions} forecaster tail "
        "--from-beginning")
