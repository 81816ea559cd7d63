"""The worker's per-partition positions: read and written with each batch, and enforced by seeks.

:mod:`stream_app.positions` decides, from the positions, what a batch may handle and where the
consumer skipped; :class:`PositionKeeper` keeps the positions in their table and acts on those
decisions on the consumer: it seeks a partition back when the consumer skipped offsets (a rewind),
and when a partition sits behind its high water mark without moving (a stall).

A partition the worker never handled is positioned at its first offset on the broker: the worker's
consumer starts a new group there (``earliest``), and Faust's rebalances can lose or commit past a
partition's first messages as well as any others (docs/reliability.md).

A stored position that does not decode (:class:`~stream_app.positions.PositionDecodeError`) is
quarantined: dead-lettered with its bytes (:meth:`PositionKeeper.take_quarantined`), counted, and
the partition is treated as never handled, so it is read again from its first offset. That is the
choice that loses no bar: the offsets the consumer committed may be past bars never handled (see
above), while a bar met again is refused by its ticker's state (``duplicate``, ``out_of_order``)
and never applied twice. It costs a re-read of the partition and one dead letter per bar met again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from models.core.deadletter import DeadLetter
from stream_app.faust_adapter import Event, TableAccess
from stream_app.metrics import WorkerMetrics
from stream_app.positions import Admission, M, PositionDecodeError, PositionGuard, StallWatch, decode_position

log = logging.getLogger(__name__)

#: How long an assigned partition may sit below its high water mark without moving before it is
#: sought back to its position, and how often that is checked. A healthy worker moves every
#: partition with messages within a batch timeout; a false alarm costs a seek and some redeliveries.
STALL_PATIENCE_S = 5.0
STALL_CHECK_S = 1.0


class Consumer(Protocol):
    """What the keeper needs of the consumer (:class:`stream_app.faust_adapter.BarsConsumer`)."""

    @property
    def rebalancing(self) -> bool: ...

    @property
    def generation(self) -> int | None: ...

    def assigned(self) -> list[int]: ...

    def highwater(self, partition: int) -> int | None: ...

    async def first_offset(self, partition: int) -> int | None: ...

    async def end_offset(self, partition: int) -> int | None: ...

    async def first_stored(self, partition: int, offset: int) -> int | None: ...

    async def seek(self, partition: int, offset: int) -> bool: ...


class PositionKeeper:
    """The positions of one source topic's partitions, in a table, and the seeks that enforce them.

    Parameters
    ----------
    table
        The positions table: ``b"topic/partition"`` -> the offset after the last handled message.
    topic
        The source topic (``bars``).
    consumer
        The consumer of ``topic``.
    metrics
        Where redeliveries and seeks are counted.
    patience_s
        How long a partition may stall before it is sought back (:class:`StallWatch`).
    clock
        Monotonic seconds, for the stall watch; injectable for tests.
    """

    def __init__(self, table: Any, topic: str, consumer: Consumer, metrics: WorkerMetrics,
                 patience_s: float = STALL_PATIENCE_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.table = table
        self.topic = topic
        self.consumer = consumer
        self.metrics = metrics
        self.clock = clock
        self.guard = PositionGuard()
        self.stall_watch = StallWatch(patience_s)
        self._generation: int | None = None  # the consumer group generation last seen
        self._first_offsets: dict[int, int] = {}  # of the partitions never handled, as the broker told
        self._refused: dict[int, bytes] = {}  # per partition, the last position bytes quarantined
        self._quarantined: list[DeadLetter] = []

    def key(self, partition: int) -> bytes:
        """The table's key of a partition's position."""
        # With the topic: a worker pointed at another bars topic must not take its offsets for
        # those of the old one (it would skip the new topic's first messages as handled).
        return f"{self.topic}/{partition}".encode()

    async def position(self, partition: int) -> int | None:
        """The offset after the last handled message of a partition, or its first offset if none was
        handled (None: the broker did not tell it).

        For the timers, outside any event (the stores then look in every partition).
        """
        return await self._or_first(partition, self._decode(partition, self.table.get(self.key(partition))))

    async def _or_first(self, partition: int, position: int | None) -> int | None:
        if position is not None:
            return position
        if partition not in self._first_offsets:
            first = await self.consumer.first_offset(partition)
            if first is None:
                return None
            self._first_offsets[partition] = first
        return self._first_offsets[partition]

    def note_generation(self) -> None:
        """Forget what no longer holds after a rebalance: it seeks every partition to the committed
        offsets, so what the guard learnt from its rewinds, and how long partitions sat still, go."""
        generation = self.consumer.generation
        if generation != self._generation:
            self._generation = generation
            self.guard.forget()
            self.stall_watch.reset()
            self._first_offsets.clear()  # retention may have moved them meanwhile

    async def admit(self, messages: Sequence[M], tables: TableAccess,
                    last_of_partition: Mapping[int, Event]) -> Admission[M]:
        """What of a batch to handle, against the positions read under each partition's last event."""
        positions = {partition: self._decode(partition, tables.get(self.table, self.key(partition), event))
                     for partition, event in last_of_partition.items()}
        if None in positions.values():  # a partition's first batch: asks the broker once
            positions = {partition: await self._or_first(partition, position)
                         for partition, position in positions.items()}
        for partition, (position, offset) in self.guard.met_again(messages, positions).items():
            stored = await self.consumer.first_stored(partition, position)
            if stored is None or stored < offset:
                log.warning("bars partition %d: offset %d came again after the seek back to %d, but the "
                            "broker stores messages from %s: a copy fetched before the seek; seeking "
                            "back again", partition, offset, position,
                            "an offset it did not tell" if stored is None else stored)
                self.guard.doubt(partition)
        return self.guard.admit(messages, positions)

    def write(self, admission: Admission[Any], tables: TableAccess,
              last_of_partition: Mapping[int, Event]) -> None:
        """Write the new positions, each under its partition's last event."""
        for partition, position in admission.positions.items():
            tables.set(self.table, self.key(partition), str(position).encode(), last_of_partition[partition])

    def lags_after(self, admission: Admission[Any]) -> list[tuple[int, int]]:
        """``(partition, messages not yet handled)`` of each partition a batch moved, from the high
        water mark of its last fetch (partitions whose mark is not known are left to :meth:`lags`)."""
        lags = []
        for partition, position in admission.positions.items():
            highwater = self.consumer.highwater(partition)
            if highwater is not None:
                lags.append((partition, max(0, highwater - position)))
        return lags

    def take_quarantined(self) -> list[DeadLetter]:
        """The dead letters of the positions quarantined since the last call (the handler sends them
        with its batch's outputs)."""
        letters, self._quarantined = self._quarantined, []
        return letters

    def _decode(self, partition: int, raw: bytes | None) -> int | None:
        """The position in ``raw``, or None (as if never handled) when it does not decode, which is
        quarantined once per distinct bytes."""
        try:
            return decode_position(raw)
        except PositionDecodeError as error:
            assert raw is not None
            if self._refused.get(partition) != raw:
                self._refused[partition] = bytes(raw)
                log.warning("bars partition %d: its stored position (%d bytes) is quarantined and the "
                            "partition read again from its first offset: %s", partition, len(raw), error)
                self.metrics.quarantined.labels("position").inc()
                source = f"{self.table.changelog_topic.get_topic_name()}/{partition}"
                self._quarantined.append(DeadLetter.quarantined(
                    "corrupt_position", error, bytes(raw), source=source,
                    then=f"partition {partition} of {self.topic} is read again from its first offset "
                    "(bars met again are refused by their tickers' states)"))
            return None

    async def follow_up(self, admission: Admission[Any]) -> None:
        """After a batch is written: seek back where the consumer skipped, report passed gaps."""
        for partition, (position, offset) in admission.rewinds.items():
            await self.rewind(partition, position, offset)
        for partition, start, end in admission.passed_gaps:
            log.warning("bars partition %d: offsets %d to %d hold no message (transaction markers or "
                        "retention); going on from %d", partition, start, end - 1, end)
        self.metrics.redelivered.inc(admission.redelivered)

    async def rewind(self, partition: int, position: int, offset: int) -> None:
        """Seek a partition back to its position: the consumer skipped from there to ``offset``."""
        if self.consumer.rebalancing:
            # Faust waits for the agent's events to be acked before it revokes partitions, and
            # seeks them itself when it assigns them: no seek now. Unless the rebalance brings them
            # back, the stall watch seeks once it is over.
            log.warning("bars partition %d: the consumer skipped offsets %d to %d during a rebalance; "
                        "leaving them to the stall watch", partition, position, offset - 1)
            self.stall_watch.suspect(partition, position)
            return
        # Messages fetched before the seek keep coming for a while, each batch of them another
        # rewind to the same position: one warning for them all.
        if self.guard.rewinding(partition) != position:
            log.warning("bars partition %d: the consumer skipped offsets %d to %d; seeking back to %d",
                        partition, position, offset - 1, position)
        if await self._seek(partition, position):
            self.guard.rewound(partition, position, offset)

    async def seek_stalled(self, busy: bool) -> None:
        """Seek back the partitions that sit below their high water mark without moving.

        Nothing comes to the guard from a partition the consumer was sought past its last message
        (a rebalance seeking to offsets committed at its end), so no skip is ever seen there. Only
        an idle agent counts (``busy``: a batch is in hand): a batch that takes long (outputs
        waiting for a broker that is down) holds every partition still, and seeking then would
        only cause redeliveries.
        """
        if self.consumer.rebalancing:
            return
        self.note_generation()
        if busy:
            self.stall_watch.hold()
            return
        now = self.clock()
        for partition, position, highwater in await self.progress():
            if self.stall_watch.stalled(partition, position, highwater, now):
                log.warning("bars partition %d: no progress at offset %d with %d offsets after it; "
                            "seeking back to it", partition, position, highwater - position)
                await self._seek(partition, position)

    async def progress(self) -> list[tuple[int, int, int]]:
        """``(partition, position, high water mark)`` of each assigned partition, as far as known.

        The high water mark comes with each fetch; a partition not fetched yet (or whose fetches
        stopped) has it asked of the broker.
        """
        known = []
        for partition in self.consumer.assigned():
            position = await self.position(partition)
            highwater = self.consumer.highwater(partition)
            if highwater is None:
                highwater = await self.consumer.end_offset(partition)
            if position is not None and highwater is not None:
                known.append((partition, position, highwater))
        return known

    async def lags(self) -> list[tuple[int, int]]:
        """``(partition, messages not yet handled)`` of each assigned partition, as far as known."""
        return [(partition, max(0, highwater - position))
                for partition, position, highwater in await self.progress()]

    async def _seek(self, partition: int, position: int) -> bool:
        if not await self.consumer.seek(partition, position):
            return False  # no longer assigned: its next owner starts from the position
        self.metrics.rewinds.inc()
        return True

