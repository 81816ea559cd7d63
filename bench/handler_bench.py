"""The worker's batch handler without Kafka: CPU per bar of each of its parts, or a profile of them.

Run from the repository root::

    OPENBLAS_NUM_THREADS=1 .venv/bin/python -m bench.handler_bench [--batch 3000] [--profile]

It replays the full S&P 500 file (``bench/data.py``) in the producer's order (date, then ticker) as the
messages the worker consumes, and hands them in batches of ``--batch`` to the parts of
:class:`stream_app.batch.BatchHandler` that do not touch Kafka: decoding the tickers' states, the
processor (decoding and validating bars, ``step_many``), encoding the records, encoding the new
states, and the monitor. The first 130,000 bars warm up (every ticker's 252-day window full, ARIMA
fitted); the next 40,000 are timed, in CPU time of this process. ``--profile`` prints a cProfile of
the timed bars instead (its overhead roughly doubles every figure). The worker under Kafka costs
about as much again (Faust's and aiokafka's own path): ``bench/worker_bench.py`` measures that.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import pstats
import time

import orjson

from bench.data import sp500_file
from forecaster.settings import load
from models.core.config import CoreConfig
from models.core.features import FEATURE_NAMES
from producers.readers import read_csv_bars
from stream_app.batch import BatchHandler
from stream_app.metrics import WorkerMetrics
from stream_app.monitor import ForecastMonitor
from stream_app.processor import BatchProcessor, InMessage, prediction_records
from stream_app.state_codec import ticker_states

WARM_BARS = 130_000
TIMED_BARS = 40_000
PARTS = ("states decoded", "processor", "records encoded", "states encoded", "monitor")


class Handler:
    """The handler's parts in the worker's order, each part's CPU seconds summed while ``timing``."""

    def __init__(self) -> None:
        settings = load()
        self.processor = BatchProcessor(CoreConfig.from_settings(settings))
        self.monitor = ForecastMonitor(settings, WorkerMetrics())
        self.monitor.set_model(settings.model, "core", None, FEATURE_NAMES)  # as the worker (model_holder)
        self.records = BatchHandler(settings, None, None, self.monitor)._records  # type: ignore[arg-type]
        self.codec = ticker_states()
        self.table: dict[str, bytes] = {}
        self.cpu = dict.fromkeys(PARTS, 0.0)
        self.state_bytes = 0
        self.state_writes = 0
        self.timing = False

    def handle(self, batch: list[InMessage]) -> None:
        clock = [time.process_time()]
        states = {ticker: self.codec.decode(ticker, self.table.get(ticker))
                  for ticker in {m.key.decode() for m in batch if m.key is not None}}
        clock.append(time.process_time())
        output = self.processor.process(batch, states)
        clock.append(time.process_time())
        extra = {"produced_at": "2024-01-02T00:00:00.000+00:00"}
        self.records(prediction_records(output), output.dead_letters, [], extra)
        clock.append(time.process_time())
        for ticker, state in output.states.items():
            self.table[ticker] = self.codec.encode(ticker, state)
        clock.append(time.process_time())
        self.monitor.observe_batch(output.results, 0.01)
        self.monitor.observe_delivery(m.timestamp for m in batch)
        clock.append(time.process_time())
        if self.timing:
            for part, start, end in zip(PARTS, clock[:-1], clock[1:], strict=True):
                self.cpu[part] += end - start
            self.state_bytes += sum(len(self.table[t]) for t in output.states)
            self.state_writes += len(output.states)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=3000, help="bars per batch (the worker's batches "
                        "under a backlog: the default 0.2 s timeout ends them at about this many)")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of the timed bars")
    args = parser.parse_args()
    bars = sorted(read_csv_bars([sp500_file()]).bars, key=lambda b: (b.date, b.ticker))
    now = time.time()
    messages = [InMessage(b.ticker.encode(), orjson.dumps(b.to_dict()), 0, i, now)
                for i, b in enumerate(bars[: WARM_BARS + TIMED_BARS])]
    handler = Handler()
    for start in range(0, WARM_BARS, args.batch):
        handler.handle(messages[start: min(start + args.batch, WARM_BARS)])
    gc.freeze()  # as the worker does once started
    timed = [messages[s: min(s + args.batch, WARM_BARS + TIMED_BARS)]
             for s in range(WARM_BARS, WARM_BARS + TIMED_BARS, args.batch)]

    def handle_timed() -> None:
        for batch in timed:
            handler.handle(batch)

    if args.profile:
        profile = cProfile.Profile()
        profile.runcall(handle_timed)
        pstats.Stats(profile).sort_stats("tottime").print_stats(30)
        return
    handler.timing = True
    handle_timed()
    per_bar = {part: seconds / TIMED_BARS * 1e6 for part, seconds in handler.cpu.items()}
    print(f"batches of {args.batch}, bars {WARM_BARS:,}-{WARM_BARS + TIMED_BARS:,} of the S&P 500 file, "
          "CPU per bar:")
    for part, micros in per_bar.items():
        print(f"  {part:<16} {micros:6.1f} µs")
    print(f"  {'total':<16} {sum(per_bar.values()):6.1f} µs")
    print(f"state writes: {handler.state_writes / TIMED_BARS:.2f} per bar, "
          f"{handler.state_bytes / max(handler.state_writes, 1):,.0f} bytes each")


if __name__ == "__main__":
    main()
