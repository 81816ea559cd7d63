"""Stream worker benchmark, side by side in one run on a local Apache Kafka broker.

Measures, on the full S&P 500 file (``bench/data.py``; event-time order, keyed by ticker):

1. sustained bars/s of one ``forecaster worker`` (ARIMA core, its table, metrics), read off its
   output topic over the bars after the core's window (252 days) has filled: before that no ARIMA
   is fitted and the core only makes naive forecasts, a cheaper worker than the one that runs for
   years;
2. the baseline: a naive Faust agent (one awaited ``topic.send`` and one table write per event);
3. the ceilings: the worker's Faust pattern with no model (``bench/faust_pattern_agent.py``: what
   Faust and Kafka cost the worker; the fixed reference: Faust's own consumer, its table written
   through Faust), the same pattern consuming the worker's way and with its table's changelog sent
   the worker's way, on its own producer (``bench/faust_pattern_own_changelog.py``: the
   like-for-like reference), and plain aiokafka and
   confluent-kafka consume-produce loops (no Faust, no state, no model);
4. bar-to-prediction latency percentiles at a paced 1,000 bars/s, after an unpaced warm-up that
   fills every ticker's window (Kafka timestamps of bar and prediction);
5. recovery: restart of the worker with every ticker's state in its changelog (488 tickers in the
   default 200,000 bars), to its first prediction;
6. ``worker-challenger``: the worker with one challenger in shadow (an XGBoost of 20 trees trained on
   the first bars, registered as ``challenger`` of a model with no champion), a contender of the
   rounds beside the worker: its CPU per bar over the worker's is the challenger's cost.

The worker and the two patterns run ``--pairs`` rounds (default 3), interleaved: in the order above
in odd rounds, reversed in even ones, every run on fresh topics. Each run prints one line with its
bars/s and "us CPU/bar" (the CPU of the processes under test per bar), each round the worker's
CPU per bar over each pattern's, and the end each contender's median and each ratio's median and
spread: one run's ratio moves by 1.5x on a shared machine.

``--profile`` samples every run of the rounds with py-spy over its timed bars and prints, per
contender, the functions in most of its samples (:mod:`bench.sampling`; the stacks stay in the
logs' ``profiles`` folder for a flame graph).

Usage: ``python -m bench.worker_bench [--bars 200000] [--only RUN...] [--pairs 3] [--processes N...]
[--profile]``;
settings such as ``FORECASTER_BATCH_TIMEOUT_S`` or ``FORECASTER_WORKER_COMPRESSION`` in the
environment reach every worker. Results go into docs/benchmarks.md by hand, with the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import dataclasses
import datetime as dt
import functools
import gc
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path

import orjson
from kafka import KafkaConsumer

from bench.data import sp500_file
from bench.sampling import Sampler, by_function, top
from forecaster.kafka.broker import LocalBroker, free_port
from forecaster.kafka.client import kafka_python_options
from forecaster.kafka.topics import create_topics, topic_partitions
from forecaster.settings import Settings, load, to_environ
from models.core.bar import Bar
from producers.pacing import Pacing
from producers.readers import ReadResult, read_csv_bars
from producers.replay import replay

RUNS = ("worker", "worker-challenger", "naive", "pattern", "pattern-own-changelog", "ceilings", "latency",
        "recovery")
#: The labels of the patterns' lines.
PATTERN = "worker pattern without model (Faust ceiling)"
PATTERN_OWN_CHANGELOG = "pattern, table changelog on its own producer"
#: Polling interval of the throughput runs: each poll asks the broker for the output topic's end
#: offsets (the contenders' own processes are not asked anything).
THROUGHPUT_POLL_S = 0.5
LATENCY_PACED_BARS = 20_000
#: Bars replayed by default: the rates are taken over the 79,004 after the first 120,996 (252 days),
#: and three rounds of the worker and both patterns take under ten minutes on two cores
#: (docs/benchmarks.md, "Stream worker").
DEFAULT_BARS = 200_000
#: Functions listed per contender by ``--profile``.
PROFILE_TOP = 40
#: ``--profile`` leaves out the functions in at least this share of the commonest one's samples.
PROFILE_TRUNK = 0.9


def fresh(settings: Settings, name: str) -> Settings:
    suffix = f"{name}-{uuid.uuid4().hex[:6]}"
    fresh_settings = settings.replace(topic_bars=f"bars-{suffix}", topic_predictions=f"out-{suffix}",
                                      topic_shadow=f"shadow-{suffix}",
                                      topic_dlq=f"dlq-{suffix}", app_id=f"bench-{suffix}",
                                      metrics_port=free_port())
    create_topics(fresh_settings)
    return fresh_settings


def end_offsets_total(settings: Settings, topic: str) -> int:
    consumer = KafkaConsumer(**kafka_python_options(settings))
    try:
        return sum(consumer.end_offsets(topic_partitions(consumer, topic, 60.0)).values())
    finally:
        consumer.close()


def start(command: list[str], settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, **to_environ(settings), "PYTHONUNBUFFERED": "1"}
    with open(log, "ab") as out:
        return subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)


class WorkerOutputs:
    """How many of ``bars`` (in replay order) a worker has handled, told from its output topic.

    The worker writes a prediction for every bar and, from a ticker's second bar on, the score of
    its previous prediction before it: after the first ``k`` bars, ``2 k`` records less the tickers
    met so far. Counted on the broker, as the Faust agents' outputs are: scraping the worker's
    metrics every 0.5 s to count its bars cost it about 5 % of its CPU (docs/benchmarks.md), which
    the agents never paid.
    """

    def __init__(self, settings: Settings, bars: list[Bar]) -> None:
        self.settings = settings
        seen: set[str] = set()
        self.records: list[int] = []  # records after each prefix of the bars
        total = 0
        for bar in bars:
            total += 2 if bar.ticker in seen else 1
            seen.add(bar.ticker)
            self.records.append(total)

    def bars(self) -> int:
        """Bars whose records are all in the output topic now."""
        written = end_offsets_total(self.settings, self.settings.topic_predictions)
        return bisect.bisect_right(self.records, written)


def metric(settings: Settings, name: str) -> float:
    """A metric's value summed over its series (a pool's processes each have one)."""
    url = f"http://{settings.metrics_host}:{settings.metrics_port}/metrics"
    total = 0.0
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            for line in response.read().decode().splitlines():
                if line.startswith((name + " ", name + "{")):
                    total += float(line.rsplit(" ", 1)[1])
    except OSError:
        pass
    return total


@dataclasses.dataclass(frozen=True)
class Throughput:
    """Events/s over a run, and the CPU the processes under test spent per event meanwhile.

    Their product is the cores the processes kept busy: about one for a worker bound by its one
    Python thread, less for one that waits (on the broker, on a batch to fill).
    """

    per_s: float
    cpu_us: float

    def __str__(self) -> str:
        return f"{self.per_s:>10,.0f} bars/s {self.cpu_us:>6,.0f} us CPU/bar"


def cpu_seconds(pids: list[int]) -> float:
    """User and system CPU of processes so far (Linux ``/proc``)."""
    ticks = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def with_children(pid: int) -> list[int]:
    """``pid`` and the processes its main thread started (a worker pool's; Linux ``/proc``)."""
    return [pid, *map(int, Path(f"/proc/{pid}/task/{pid}/children").read_text().split())]


def rate_until(count: Callable[[], int], target: int, processes: list[subprocess.Popen[bytes]],
               timeout_s: float, poll_s: float = 0.1, start_after: int = 0,
               sampler: Sampler | None = None) -> Throughput:
    """Events/s from the first poll past ``start_after`` events to ``target``, polling ``count()``
    every ``poll_s``; ``sampler`` samples the first process over the same events.

    The rate is taken between two polls, so it can only err low, by at most ``poll_s`` over the
    run (the last poll may come that long after the last event).
    """
    first_at = None
    deadline = time.monotonic() + timeout_s
    pids: list[int] = []
    try:
        while True:
            for process in processes:
                if process.poll() is not None:
                    raise RuntimeError(f"the process under test exited with {process.returncode}")
            n = count()
            now = time.monotonic()
            if first_at is None and n > start_after:
                pids = [pid for process in processes for pid in with_children(process.pid)]
                first_at, first_n, first_cpu = now, n, cpu_seconds(pids)
                if sampler is not None:
                    sampler.start(processes[0].pid)
            if n >= target and first_at is not None:
                events = max(n - first_n, 1)
                return Throughput(events / max(now - first_at, 1e-9),
                                  (cpu_seconds(pids) - first_cpu) / events * 1e6)
            if now > deadline:
                raise RuntimeError(f"{n} of {target} after {timeout_s} s")
            time.sleep(poll_s)
    finally:
        if sampler is not None:
            sampler.stop()


def warm_up_length(bars: list[Bar], days: int) -> int:
    """How many of ``bars`` (in date order) fall on their first ``days`` trading days."""
    dates = sorted({bar.date for bar in bars})
    if len(dates) <= days:
        raise SystemExit(f"the {len(bars):,} bars span {len(dates)} days: the core's {days}-day window "
                         "would never fill; use more --bars")
    return bisect.bisect_left([bar.date for bar in bars], dates[days])


def sampler(profiles: Path | None, name: str) -> Sampler | None:
    """A sampler of one run of contender ``name`` into ``profiles`` (None: no profile asked)."""
    if profiles is None:
        return None
    # name.N: a glob of "name-*" would also take the runs of "name-other" (pattern-own-changelog)
    return Sampler(profiles / f"{name}.{len(list(profiles.glob(f'{name}.*.stacks'))) + 1}.stacks")


def run_worker(settings: Settings, result: ReadResult, logs: Path, warm: int,
               processes: int = 1, profiles: Path | None = None,
               name: str = "worker") -> tuple[Throughput, Settings]:
    """Bars/s of ``forecaster worker --processes N`` (its CPU: the pool's and its processes'), over
    the bars after the first ``warm``; sampled into ``profiles`` (under ``name``) if given."""
    settings = fresh(settings, f"worker{processes}")
    replay(result, settings, progress=False)
    process = start([sys.executable, "-m", "forecaster.cli", "worker", "--processes", str(processes)],
                    settings, logs / f"worker-x{processes}.log")
    try:
        rate = rate_until(WorkerOutputs(settings, result.bars).bars, len(result.bars), [process], 1800,
                          THROUGHPUT_POLL_S, warm, sampler(profiles, name))
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=120)
    return rate, settings


#: The registered model whose challenger ``worker-challenger`` runs (the plain worker's has none).
CHALLENGED_MODEL = "bench-challenged"


@functools.cache
def registered_challenger(settings: Settings, bars: tuple[Bar, ...]) -> Settings:
    """``settings`` naming a model whose ``challenger`` is an XGBoost trained on ``bars`` (once)."""
    from models import registry
    from models.training import train

    challenged = settings.replace(model_name=CHALLENGED_MODEL)
    outcome = train(list(bars), "xgboost", challenged, test_days=20, params={"n_estimators": 20})
    registry.client(challenged).set_registered_model_alias(CHALLENGED_MODEL, "challenger", outcome.version)
    return challenged


def run_worker_with_challenger(settings: Settings, result: ReadResult, logs: Path, warm: int,
                               profiles: Path | None = None) -> tuple[Throughput, Settings]:
    """:func:`run_worker` with one challenger in shadow."""
    challenged = registered_challenger(settings, tuple(result.bars[:20_000]))
    return run_worker(challenged, result, logs, warm, profiles=profiles, name="worker-challenger")


def run_faust_agent(settings: Settings, result: ReadResult, logs: Path, module: str, warm: int,
                    profiles: Path | None = None, contender: str = "") -> tuple[Throughput, Settings]:
    """Bars/s of ``faust -A module worker``, an agent with one output per bar to ``predictions``,
    over the same bars as the worker's; and the run's settings (its fresh topics). Sampled into
    ``profiles`` (under ``contender``) if given."""
    name = module.rsplit(".", 1)[-1]
    settings = fresh(settings, name)
    replay(result, settings, progress=False)
    process = start([sys.executable, "-m", "faust", "-A", module, "worker", "-l", "warn"],
                    settings, logs / f"{name}.log")
    try:
        return rate_until(lambda: end_offsets_total(settings, settings.topic_predictions),
                          len(result.bars), [process], 1800, THROUGHPUT_POLL_S, warm,
                          sampler(profiles, contender)), settings
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=120)


def _rate(done: int, started: float | None) -> float:
    """Messages per second since the first of them came at ``started`` (None: none came)."""
    if started is None:
        raise RuntimeError("no message came")
    return done / (time.monotonic() - started)


async def aiokafka_loop(settings: Settings, n: int) -> float:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    from forecaster.kafka.client import aiokafka_options

    options = aiokafka_options(settings)
    consumer = AIOKafkaConsumer(settings.topic_bars, **options, group_id=f"{settings.app_id}-aio",
                                auto_offset_reset="earliest", max_poll_records=5000)
    producer = AIOKafkaProducer(**options, linger_ms=5, max_batch_size=512 * 1024, compression_type="lz4")
    await consumer.start()
    await producer.start()
    try:
        done, started = 0, None
        while done < n:
            batches = await consumer.getmany(timeout_ms=500)
            for messages in batches.values():
                started = started or time.monotonic()
                futures = [await producer.send(settings.topic_predictions, m.value, key=m.key)
                           for m in messages]
                await asyncio.gather(*futures)
                done += len(messages)
        return _rate(done, started)
    finally:
        await consumer.stop()
        await producer.stop()


def confluent_loop(settings: Settings, n: int) -> float:
    from confluent_kafka import Consumer, Producer

    consumer = Consumer({"bootstrap.servers": settings.bootstrap, "group.id": f"{settings.app_id}-ck",
                         "auto.offset.reset": "earliest", "enable.auto.commit": True})
    producer = Producer({"bootstrap.servers": settings.bootstrap, "linger.ms": 5, "compression.type": "lz4",
                         "batch.size": 512 * 1024})
    consumer.subscribe([settings.topic_bars])
    done, started = 0, None
    try:
        while done < n:
            for message in consumer.consume(num_messages=5000, timeout=0.5):
                if message.error():
                    continue
                started = started or time.monotonic()
                producer.produce(settings.topic_predictions, message.value(), message.key())
                done += 1
            producer.poll(0)
        producer.flush()
        return _rate(done, started)
    finally:
        consumer.close()


def run_ceilings(settings: Settings, result: ReadResult) -> dict[str, float]:
    rates = {}
    plain = fresh(settings, "aiokafka")
    replay(result, plain, progress=False)
    rates["aiokafka consume-produce loop"] = asyncio.run(aiokafka_loop(plain, len(result.bars)))
    try:
        import confluent_kafka  # noqa: F401
    except ImportError:
        return rates
    plain = fresh(settings, "confluent")
    replay(result, plain, progress=False)
    rates["confluent-kafka consume-produce loop"] = confluent_loop(plain, len(result.bars))
    return rates


def run_latency(settings: Settings, result: ReadResult, logs: Path, warm_bars: int,
                rate: float = 1000.0) -> dict[str, float]:
    """Percentiles of prediction timestamp minus bar timestamp at a paced rate, worker caught up.

    The worker first takes the first ``warm_bars`` bars unpaced: a ticker's first bars create its
    state, its table key and its metric series (about 3 ms a bar when 483 tickers start together),
    and its ARIMA is fitted only once its window is full; then :data:`LATENCY_PACED_BARS` bars
    follow at ``rate``.
    """
    settings = fresh(settings, "latency")
    warm = result.bars[:warm_bars]
    paced = result.bars[warm_bars:warm_bars + LATENCY_PACED_BARS]
    if len(paced) < LATENCY_PACED_BARS:
        raise SystemExit(f"the latency run paces {LATENCY_PACED_BARS:,} bars after the first {warm_bars:,}; "
                         "use more --bars")
    process = start([sys.executable, "-m", "forecaster.cli", "worker"], settings, logs / "latency.log")

    consumed = WorkerOutputs(settings, warm + paced).bars
    try:
        replay(ReadResult(bars=warm, dead_letters=[], rows_read=len(warm), filtered=0), settings,
               progress=False)
        rate_until(consumed, len(warm), [process], 600)
        replay(ReadResult(bars=paced, dead_letters=[], rows_read=len(paced), filtered=0), settings,
               pacing=Pacing(rate=rate), progress=False)
        rate_until(consumed, len(warm) + len(paced), [process], 600)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=120)
    keys = {(bar.ticker, bar.date.isoformat()) for bar in paced}
    sent = {(m["ticker"], m["date"]): ts for ts, m in read_all(settings, settings.topic_bars)
            if (m["ticker"], m["date"]) in keys}
    latencies = sorted(ts - sent[(m["ticker"], m["as_of"])]
                       for ts, m in read_all(settings, settings.topic_predictions)
                       if m.get("record_type") == "prediction" and (m["ticker"], m["as_of"]) in sent)
    cuts = statistics.quantiles(latencies, n=100)
    return {"p50": cuts[49], "p90": cuts[89], "p99": cuts[98], "max": latencies[-1]}


def read_all(settings: Settings, topic: str,
             isolation_level: str = "read_uncommitted") -> list[tuple[float, dict]]:
    """``(timestamp, record)`` of every JSON message in ``topic`` up to its end offsets now (the
    last stable offsets under ``read_committed``)."""
    consumer = KafkaConsumer(**kafka_python_options(settings), enable_auto_commit=False,
                             isolation_level=isolation_level)
    partitions = topic_partitions(consumer, topic, 60.0)
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    end = consumer.end_offsets(partitions)
    records = []
    while any(consumer.position(tp) < end[tp] for tp in partitions):
        for messages in consumer.poll(timeout_ms=500).values():
            records += [(m.timestamp / 1000.0, orjson.loads(m.value)) for m in messages]
    consumer.close()
    return records


def run_recovery(settings: Settings, result: ReadResult, logs: Path) -> tuple[int, float]:
    """Restart the worker on a changelog holding every ticker's state; seconds to its next prediction.

    Faust restores the table before it processes anything, so the first bar consumed after the
    restart marks the end of the recovery.
    """
    newest = max(result.bars, key=lambda bar: bar.date)
    probe = dataclasses.replace(newest, date=newest.date + dt.timedelta(days=7))
    process = start([sys.executable, "-m", "forecaster.cli", "worker"], settings, logs / "recovery.log")
    started = time.monotonic()
    try:
        replay(ReadResult(bars=[probe], dead_letters=[], rows_read=1, filtered=0), settings, progress=False)
        rate_until(lambda: int(metric(settings, "forecaster_bars_consumed_total")), 1, [process], 600)
        return len({bar.ticker for bar in result.bars}), time.monotonic() - started
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=120)


@dataclasses.dataclass(frozen=True)
class Contender:
    """One contender of the interleaved rounds: its short name, its line's label, how to run it once."""

    name: str
    label: str
    run: Callable[[], tuple[Throughput, Settings]]

    @property
    def is_worker(self) -> bool:
        return self.name.startswith("worker")


def rounds(contenders: list[Contender], n: int) -> tuple[dict[Contender, list[Throughput]], Settings | None]:
    """Run ``contenders`` ``n`` times interleaved, each time on fresh topics, in the order given in
    odd rounds and in reverse in even ones (a drift of the machine over the rounds then weighs on
    both sides alike); print each run's line as it ends and each round's ratios. Returns each
    contender's rates in round order, and the settings of the last worker run (None: none ran)."""
    rates: dict[Contender, list[Throughput]] = {contender: [] for contender in contenders}
    worker_settings = None
    for index in range(n):
        order = contenders if index % 2 == 0 else contenders[::-1]
        if n > 1:
            print(f"round {index + 1} of {n}: " + ", ".join(contender.name for contender in order))
        for contender in order:
            rate, settings = contender.run()
            if contender.is_worker:
                worker_settings = settings
            rates[contender].append(rate)
            print(f"{contender.label:<46} {rate}")
        for worker, reference in ratio_pairs(contenders):
            print(f"  {worker.name} / {reference.name}: "
                  f"{rates[worker][-1].cpu_us / rates[reference][-1].cpu_us:.2f}x the CPU per bar")
    return rates, worker_settings


def ratio_pairs(contenders: list[Contender]) -> list[tuple[Contender, Contender]]:
    """``(worker, pattern)`` of each ratio to print: every worker against every pattern."""
    return [(worker, reference) for worker in contenders if worker.is_worker
            for reference in contenders if not reference.is_worker]


def summary(rates: dict[Contender, list[Throughput]]) -> list[str]:
    """Each contender's median CPU per bar over the rounds, and each ratio's values, median and
    spread (min-max)."""
    lines = []
    for contender, runs in rates.items():
        cpu = [rate.cpu_us for rate in runs]
        lines.append(f"{contender.name}: median {statistics.median(cpu):,.0f} us of CPU per bar "
                     f"({min(cpu):,.0f}-{max(cpu):,.0f} over {len(cpu)} runs)")
    for worker, reference in ratio_pairs(list(rates)):
        ratios = [w.cpu_us / r.cpu_us for w, r in zip(rates[worker], rates[reference], strict=True)]
        each = ", ".join(f"{ratio:.2f}" for ratio in ratios)
        lines.append(f"{worker.name} / {reference.name}: {each}; median {statistics.median(ratios):.2f}x, "
                     f"spread {min(ratios):.2f}-{max(ratios):.2f}x")
    return lines


def profile_summary(profiles: Path, names: list[str], n: int = PROFILE_TOP) -> list[str]:
    """Per contender, the ``n`` functions in most of its samples over all its runs, below the trunk
    (the functions in about as many samples as the commonest: the event loop, Faust's and the
    CLI's start-up calls)."""
    lines = []
    for name in names:
        files = sorted(profiles.glob(f"{name}.*.stacks"))
        if not files:
            continue
        total, counts = by_function(line for file in files for line in file.read_text().splitlines())
        most = max(counts.values(), default=0)
        trunk = [function for function, count in counts.items() if count >= PROFILE_TRUNK * most]
        for function in trunk:
            del counts[function]
        lines.append(f"where {name} spends its CPU: {total:,} samples of {len(files)} runs "
                     f"({', '.join(str(file) for file in files)}); the {len(trunk)} functions of its trunk "
                     "not listed; share of the samples in each function:")
        lines += top(total, counts, n)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=DEFAULT_BARS,
                        help="bars of the S&P 500 file to use (the rates are taken after the core's "
                             "window has filled: the first 120,996 bars with the default 252 days)")
    parser.add_argument("--data", type=Path, default=None,
                        help="the CSV to replay (default: the full S&P 500 file, see bench/data.py)")
    parser.add_argument("--only", nargs="+", choices=RUNS, default=list(RUNS),
                        help="runs to make (recovery restarts the worker of the worker run)")
    parser.add_argument("--processes", type=int, nargs="+", default=[1], metavar="N",
                        help="worker runs to make, one per N: `forecaster worker --processes N`")
    parser.add_argument("--pairs", type=int, default=3, metavar="N",
                        help="rounds of the worker and pattern runs chosen, interleaved, order "
                             "alternating (1: each once)")
    parser.add_argument("--profile", action="store_true",
                        help="sample the worker and pattern runs with py-spy over their timed bars and "
                             "print where each spends its CPU (bench/sampling.py)")
    args = parser.parse_args()
    if args.pairs < 1:
        parser.error("--pairs must be at least 1")
    logs = Path(tempfile.mkdtemp(prefix="worker-bench-"))
    profiles = logs / "profiles" if args.profile else None
    broker = None
    settings = load().replace(home=str(logs / "home"), partitions=8)
    if not os.environ.get("FORECASTER_BOOTSTRAP"):
        broker = LocalBroker(logs / "kafka")
        settings = settings.replace(bootstrap=broker.start(port=free_port()).bootstrap)
    try:
        read = read_csv_bars([args.data or sp500_file()])
        # The bars stay in memory to the end: kept out of the collector's full passes, which
        # otherwise stop the paced replay (and its producer's sender thread) for 100 ms and more.
        gc.freeze()
        result = ReadResult(bars=read.bars[:args.bars], dead_letters=[], rows_read=args.bars, filtered=0)
        print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
              f"Python {platform.python_version()}; {len(result.bars):,} bars of "
              f"{len({b.ticker for b in result.bars})} tickers; logs in {logs}")
        warm = 0
        if {"worker", "worker-challenger", "naive", "pattern", "pattern-own-changelog",
                "latency"} & set(args.only):
            warm = warm_up_length(result.bars, settings.window)
            print(f"rates over the bars after the first {warm:,} (the core's {settings.window}-day "
                  "window full, ARIMA fitted)")
        contenders = []
        if "worker" in args.only or "recovery" in args.only:
            for processes in args.processes:
                contenders.append(Contender(
                    "worker" if args.processes == [1] else f"worker-x{processes}",
                    f"forecaster worker --processes {processes} (ARIMA, table, metrics)",
                    functools.partial(run_worker, settings, result, logs, warm, processes, profiles,
                                      "worker" if args.processes == [1] else f"worker-x{processes}")))
        if "worker-challenger" in args.only:
            contenders.append(Contender("worker-challenger", "forecaster worker, one challenger in shadow",
                                        functools.partial(run_worker_with_challenger, settings, result, logs,
                                                          warm, profiles)))
        for run, label, module in (("pattern", PATTERN, "bench.faust_pattern_agent"),
                                   ("pattern-own-changelog", PATTERN_OWN_CHANGELOG,
                                    "bench.faust_pattern_own_changelog")):
            if run in args.only:
                contenders.append(Contender(run, label, functools.partial(run_faust_agent, settings, result,
                                                                     logs, module, warm, profiles, run)))
        # The worker of a recovery run alone runs once: the recovery needs its changelog, no rate.
        paired = {"worker", "worker-challenger", "pattern", "pattern-own-changelog"} & set(args.only)
        rates, worker_settings = rounds(contenders, args.pairs if paired else 1)
        if args.pairs > 1 and paired:
            print(*summary(rates), sep="\n")
        if profiles is not None:
            print(*profile_summary(profiles, [contender.name for contender in contenders]), sep="\n")
        if "naive" in args.only:
            naive_rate, _ = run_faust_agent(settings, result, logs, "bench.naive_faust_agent", warm)
            print(f"naive Faust agent (await send + table write)   {naive_rate}")
        if "ceilings" in args.only:
            for name, rate in run_ceilings(settings, result).items():
                print(f"{name:<46} {rate:>10,.0f} bars/s")
        if "latency" in args.only:
            latency = run_latency(settings, result, logs, warm)
            print("bar-to-prediction latency at 1,000 bars/s  "
                  + ", ".join(f"{name} {value * 1000:.0f} ms" for name, value in latency.items()))
        if "recovery" in args.only and worker_settings is not None:
            tickers, seconds = run_recovery(worker_settings, result, logs)
            print(f"restart with {tickers} tickers' state to the first prediction {seconds:.1f} s")
    finally:
        if broker is not None:
            broker.stop()


if __name__ == "__main__":
    main()
