"""Stand-ins for what the worker touches of Faust: events, the agent's stream, tables, the consumer.

Each behaves as the Faust 0.15 object does in the respect the worker depends on (see
:mod:`stream_app.faust_adapter`), and records what was done to it, so that tests of the worker's
parts run without a broker.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiokafka.errors import IllegalStateError, KafkaTimeoutError
from faust.types import TP


@dataclass(frozen=True)
class FakeMessage:
    key: bytes | None
    value: bytes | None
    partition: int
    offset: int
    timestamp: float | None = None
    topic: str = "bars"


class FakeEvent:
    """An event (a class of its own: Faust keeps a weak reference to the current event)."""

    def __init__(self, message: FakeMessage) -> None:
        self.message = message

    def __repr__(self) -> str:
        return f"FakeEvent({self.message.partition}/{self.message.offset})"


def event(key: bytes | None, value: bytes | None, partition: int, offset: int,
          timestamp: float | None = None) -> FakeEvent:
    return FakeEvent(FakeMessage(key, value, partition, offset, timestamp))


class FakeStream:
    """The agent's stream as the stores see it: its current event."""

    def __init__(self, current: FakeEvent | None = None) -> None:
        self.current_event = current

    def _set_current_event(self, event: FakeEvent | None = None) -> None:
        self.current_event = event


@dataclass(frozen=True)
class FakeChangelog:
    name: str

    def get_topic_name(self) -> str:
        return self.name


class FakeTable(dict):
    """A table that records the partition each access was made under, as Faust's stores take it:
    from the stream's current event (None: outside any event). It is its own store (``data``), and
    keeps the changelog offsets it was told are persisted."""

    def __init__(self, stream: FakeStream, name: str = "table") -> None:
        super().__init__()
        self.stream = stream
        self.changelog_topic = FakeChangelog(f"app-{name}-changelog")
        self.reads: list[tuple[bytes, int | None]] = []
        self.writes: list[tuple[bytes, int | None]] = []
        self.persisted: dict[TP, int] = {}

    @property
    def data(self) -> FakeTable:
        return self

    def set_persisted_offset(self, tp: TP, offset: int) -> None:
        self.persisted[tp] = offset

    def _partition(self) -> int | None:
        current = self.stream.current_event
        return None if current is None else current.message.partition

    def get(self, key: bytes, default: Any = None) -> Any:
        self.reads.append((key, self._partition()))
        return super().get(key, default)

    def __setitem__(self, key: bytes, value: Any) -> None:
        self.writes.append((key, self._partition()))
        super().__setitem__(key, value)


@dataclass
class FakeConsumer:
    """Faust's consumer: ``fetched`` maps each assigned partition to its high water mark as its last
    fetch saw it (None: not fetched yet). On the broker each partition runs from ``first`` (0 unless
    given) to ``ends``; ``broker_down`` makes the broker's answers time out."""

    fetched: dict[TP, int | None]
    first: dict[TP, int] = field(default_factory=dict)
    ends: dict[TP, int] = field(default_factory=dict)
    broker_down: bool = False
    revoke_on_seek: bool = False  # the partition goes to another worker while the seek is made
    seeks: list[dict[TP, int]] = field(default_factory=list)
    # The offsets holding a message, where not every offset from ``first`` on does (markers).
    stored: dict[TP, list[int]] = field(default_factory=dict)

    def first_stored(self, tp: TP, offset: int) -> int:
        """What :func:`forecaster.kafka.reading.first_stored_offset` reads of the broker."""
        if self.broker_down:
            raise KafkaTimeoutError()
        if tp not in self.stored:
            return max(offset, self.first.get(tp, 0))
        return min((o for o in self.stored[tp] if o >= offset), default=self.ends.get(tp, offset))

    def assignment(self) -> set[TP]:
        return set(self.fetched)

    def highwater(self, tp: TP) -> int | None:
        assert tp in self.fetched, "aiokafka asserts the partition is assigned"
        return self.fetched[tp]

    async def earliest_offsets(self, *tps: TP) -> dict[TP, int]:
        if self.broker_down:
            raise KafkaTimeoutError()
        return {tp: self.first.get(tp, 0) for tp in tps}

    async def highwaters(self, *tps: TP) -> dict[TP, int]:
        if self.broker_down:
            raise KafkaTimeoutError()
        return {tp: self.ends[tp] for tp in tps if tp in self.ends}

    async def seek_wait(self, offsets: dict[TP, int]) -> None:
        if self.revoke_on_seek:
            raise IllegalStateError("No current assignment for partition")
        self.seeks.append(offsets)


@dataclass
class FakeApp:
    """Faust's app as the worker's consumer adapter reads it."""

    consumer: FakeConsumer
    rebalancing: bool = False
    consumer_generation_id: int = 1
