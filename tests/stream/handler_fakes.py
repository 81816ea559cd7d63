"""The batch handler's surroundings without a broker (tests/stream/test_batch.py, test_shadow.py): a
fake sender, fake tables and a fake consumer around the worker's real parts."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import orjson
from faust.types import TP

from forecaster.settings import Settings
from models.core.bar import Bar
from models.core.config import CoreConfig
from stream_app.batch import BatchHandler
from stream_app.faust_adapter import BarsConsumer, TableAccess
from stream_app.metrics import WorkerMetrics
from stream_app.monitor import ForecastMonitor
from stream_app.position_keeper import PositionKeeper
from stream_app.processor import BatchProcessor
from tests.stream.fake_faust import FakeApp, FakeConsumer, FakeEvent, FakeStream, FakeTable, event

Record = tuple[str, bytes | None, bytes]
DAY = dt.date(2024, 1, 2)


class FakeSender:
    """Keeps what it is given; ``fail`` makes the delivery fail (the broker gone for too long)."""

    def __init__(self, writes_seen: FakeTable) -> None:
        self.batches: list[list[Record]] = []
        self.placed: list[list[tuple[str, int, bytes | None, bytes]]] = []  # the states' changelog
        self.states = writes_seen
        self.writes_before_delivery: list[int] = []
        self.fail = False
        self.offsets: dict[tuple[str, int], int] = {}  # the last offset given, per topic partition

    async def send(self, records: Iterable[Record]) -> None:
        self.writes_before_delivery.append(len(self.states.writes))
        if self.fail:
            raise ConnectionError("delivery failed")
        self.batches.append(list(records))

    async def send_placed(self, records: Iterable[tuple[str, int, bytes | None, bytes]]
                          ) -> dict[tuple[str, int], int]:
        if self.fail:
            raise ConnectionError("delivery failed")
        self.placed.append(list(records))
        last = {}
        for topic, partition, _, _ in self.placed[-1]:
            place = (topic, partition)
            last[place] = self.offsets[place] = self.offsets.get(place, -1) + 1
        return last


@dataclass
class Worker:
    """A handler wired as the app wires it, over fakes of Faust."""

    settings: Settings
    stream: FakeStream
    states: FakeTable
    positions: FakeTable
    consumer: FakeConsumer
    metrics: WorkerMetrics
    sender: FakeSender
    processor: BatchProcessor

    def handler(self) -> BatchHandler:
        """A handler as a (re)started worker has it: nothing in memory, the tables as they are."""
        topic = self.settings.topic_bars
        fake = self.consumer
        consumer = BarsConsumer(FakeApp(fake), topic,  # type: ignore[arg-type]
                                lambda partition, offset: fake.first_stored(TP(topic, partition), offset))
        keeper = PositionKeeper(self.positions, topic, consumer, self.metrics)
        return BatchHandler(self.settings, self.states, keeper, ForecastMonitor(self.settings, self.metrics))

    def handle(self, handler: BatchHandler, events: list[FakeEvent]) -> list[Record]:
        """Run one batch as the agent does after take_events (the stream's current event: the last)."""
        self.stream.current_event = events[-1]
        asyncio.run(handler.handle(events, TableAccess(self.stream), self.processor,
                                   self.sender))
        return self.sender.batches[-1]


def new_worker(tmp_path: Path) -> Worker:
    """A worker's handler parts over fakes, its state in ``tmp_path``."""
    settings = Settings(home=str(tmp_path))
    stream = FakeStream()
    states = FakeTable(stream, "states")
    bars = settings.topic_bars
    return Worker(settings, stream, states, FakeTable(stream, "positions"),
                  FakeConsumer({TP(bars, 0): 100, TP(bars, 1): 100}), WorkerMetrics(), FakeSender(states),
                  BatchProcessor(CoreConfig(model="naive"), topic=bars, clock=lambda: "now"))


def bar_record(ticker: str, day: int, close: float = 10.0) -> dict:
    return Bar(ticker, DAY + dt.timedelta(days=day), close, close, close, close, 1000.0).to_dict()


def bar_event(ticker: str, day: int, partition: int, offset: int, close: float = 10.0) -> FakeEvent:
    return event(ticker.encode(), orjson.dumps(bar_record(ticker, day, close)), partition, offset)
