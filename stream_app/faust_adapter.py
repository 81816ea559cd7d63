"""Every use the worker makes of Faust beyond its documented API, in one place.

Checked against faust-streaming 0.15.3 (the 0.15.x line, ``faust-streaming>=0.15.3,<0.16``) with
aiokafka 0.14.0 (``aiokafka>=0.14,<0.15``), the pins in pyproject.toml; ``tests/stream/
test_faust_adapter.py`` checks each part against fakes, the real-broker tests against Faust itself.
What is used, and why:

* ``Stream.current_event`` / ``Stream._set_current_event`` (:class:`TableAccess`): Faust's stores
  take a key's partition from the stream's current event: the memory store sends a write to that
  partition of the changelog, the RocksDB store reads and writes that partition's database. In an
  agent the current event is the last one the stream yielded; after ``take_events`` that is the
  batch's last event, whatever the key. Writes of other keys would then land in a changelog
  partition (and database) where recovery never looks for them, and RocksDB would find nothing for
  keys of other partitions: every such ticker would start over with no state. Faust has no public
  way to say which event an access belongs to, so the current event is set for each access and the
  previous one put back after it (``take_events``' drainer reads it for the next batch). An access
  has no await, so nothing else runs while the event is borrowed.
* ``Collection.data`` (the table's store) and ``Store.set_persisted_offset`` (:meth:`TableAccess.put`,
  :meth:`TableAccess.persisted`): the worker writes the states' changelog records itself, one
  record batch per partition on its own producer, and the values into the store without Faust's
  changelog message. Faust's path costs a future, a callback and a buffered send per record:
  about a fifth of the worker's CPU at one state write per ticker per batch (docs/benchmarks.md).
  Faust's own ``on_key_set`` does the same two things (a changelog record to the event's
  partition, the offset noted once delivered), so recovery reads the same changelog.
* ``App.consumer`` (``assignment()``, ``highwater()``, ``earliest_offsets()``, ``highwaters()``,
  ``seek_wait()``), ``App.rebalancing`` and
  ``App.consumer_generation_id`` (:class:`BarsConsumer`): what the position keeper needs to seek
  partitions back (:mod:`stream_app.position_keeper`). What the broker stores at an offset is read
  by a client of its own (:meth:`BarsConsumer.first_stored`): Faust's consumer has no read that
  leaves its fetch positions alone.
* ``App.on_first_start`` / ``App.on_stop`` and the tables' ``changelog_topic``
  (:class:`ForecasterApp`): the changelog topics made before the consumer joins, the output
  producer stopped after the agent's last batch.
* the aiokafka consumer behind Faust's (``App.consumer._thread._consumer``) and its group
  coordinator's ``_pending_exception`` (:func:`refused_by_the_group`): an error the broker gives
  for good when the consumer joins its group (a session timeout outside the broker's range, a
  group it may not join) is kept there for the consumer's next fetch, and Faust fetches only once
  partitions are assigned, which they never are: the worker would wait, consuming nothing.
* ``App._new_transport`` and ``Service.wait_first`` of Faust's aiokafka consumer
  (:class:`EagerConsumer`): Faust's fetcher passes each message to its conductor inside
  ``wait_first(callback(message), suspend_flow.wait())``, four tasks and an ``asyncio.wait`` per
  message (22 µs of CPU on uvloop, 2 without: docs/benchmarks.md). The worker's consumer
  runs the callback at once (:func:`stream_app.eager.start_eagerly`) and waits Faust's way only
  when the callback has to wait (a stream's buffer full): the messages, their order and what a
  suspended flow or a stop interrupts stay as they were.
* ``App.main()`` reading ``sys.argv`` (:func:`run_worker`), and the app's ``Worker`` class, whose
  ``on_stop`` (mode's hook at the start of a service's stop) arms the stop's deadline
  (:class:`ForecasterWorker`).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, NoReturn, Protocol, cast

import faust
from aiokafka.errors import IllegalStateError, KafkaError
from faust.exceptions import ConsumerNotStarted
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from faust.types.transports import TransportT
from mode.services import WaitResults

from forecaster.kafka.topics import TopicSpec, create_topics
from forecaster.settings import Settings
from stream_app import stop_deadline
from stream_app.eager import start_eagerly
from stream_app.processor import InMessage

log = logging.getLogger(__name__)


class ForecasterWorker(faust.Worker):
    """Faust's worker, which exits anyway when its stop takes longer than ``FORECASTER_STOP_TIMEOUT_S``."""

    async def on_stop(self) -> None:
        stop_deadline.arm(cast(ForecasterApp, self.app).forecaster_settings.stop_timeout_s)
        await super().on_stop()


class EagerConsumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer, handing each message to the conductor without a task when it can.

    Only the fetcher's wait for its callback (``wait_first(callback(message), suspend_flow.wait())``,
    a coroutine first and no timeout) changes: the callback runs at once, and what it returns is
    what ``wait_first`` would have said; a callback that has to wait goes on in a task that Faust's
    ``wait_first`` races against the suspended flow and the consumer's stop, as before.
    """

    async def wait_first(self, *coros: Any, timeout: Any = None) -> WaitResults:
        first, *others = coros
        if timeout is not None or not asyncio.iscoroutine(first):
            return await super().wait_first(*coros, timeout=timeout)
        try:
            started = start_eagerly(first)
        except BaseException:
            _close(others)
            raise
        if isinstance(started, asyncio.Task):
            return await super().wait_first(started, *others)
        _close(others)
        if self._stopped.is_set() or self._crashed.is_set():
            return WaitResults([], [], True)
        return WaitResults([first], [started.value], False)


def _close(coros: Iterable[Any]) -> None:
    # Coroutines never started are closed, or Python warns of a coroutine never awaited.
    for coro in coros:
        if asyncio.iscoroutine(coro):
            coro.close()


class EagerTransport(faust_aiokafka.Transport):
    """Faust's aiokafka transport with the :class:`EagerConsumer`."""

    Consumer = EagerConsumer


class ForecasterApp(faust.App):
    """Faust's app, with its tables' changelog topics made before its consumer joins the group.

    Faust creates a missing changelog topic while its consumer joins; when the metadata of the join
    misses the new topic, Faust takes it for a topic of 0 partitions and the table's first write
    fails with ``PartitionsMismatch`` (seen on a fresh broker in ``make demo``). ``after_stop``, when
    set, runs once Faust has stopped the app (its stop drains the agent's batches first).
    ``on_refused``, when set, is called with the error once the broker refuses the app's consumer
    in its group for good (:func:`refused_by_the_group`, watched from the first start: Faust's
    timers start only once the group is joined). Its consumer is an :class:`EagerConsumer`, or
    Faust's own with ``eager_consumer=False`` (as the bench's reference pattern runs).
    """

    def __init__(self, settings: Settings, eager_consumer: bool = True, **options: Any) -> None:
        self.eager_consumer = eager_consumer  # before Faust's init, which may make the transport
        super().__init__(settings.app_id, Worker=ForecasterWorker, **options)
        self.forecaster_settings = settings
        self.after_stop: Callable[[], Awaitable[None]] | None = None
        self.on_refused: Callable[[BaseException], None] | None = None
        self._group_watch: asyncio.Task[None] | None = None

    def _new_transport(self) -> TransportT:
        if not self.eager_consumer:
            return super()._new_transport()
        return EagerTransport(self.conf.broker_consumer, self)

    def changelog_topics(self) -> list[TopicSpec]:
        """The tables' changelog topics as Faust declares them (compacted: a table holds no window)."""
        replication = self.forecaster_settings.replication_factor
        topics = [table.changelog_topic for table in self.tables.values()]
        return [TopicSpec(topic.get_topic_name(), topic.partitions, replication,
                          {"cleanup.policy": "compact", **(topic.config or {})}) for topic in topics]

    async def on_stop(self) -> None:
        if self._group_watch is not None:
            self._group_watch.cancel()
        await super().on_stop()
        if self.after_stop is not None:
            await self.after_stop()

    async def on_first_start(self) -> None:
        await super().on_first_start()
        self._group_watch = asyncio.create_task(self._watch_the_group())
        from kafka.errors import KafkaError

        try:
            await asyncio.to_thread(create_topics, self.forecaster_settings, self.changelog_topics())
        except KafkaError as exc:  # e.g. no right to list topics: Faust still tries on its own
            log.warning("could not make the changelog topics before joining the group (%s); "
                        "leaving them to Faust", exc)

    async def _watch_the_group(self) -> None:
        error = None
        while error is None:  # first after a pause: the consumer is Faust's to make, at its start
            await asyncio.sleep(GROUP_WATCH_S)
            error = refused_by_the_group(self)
        if self.on_refused is not None:
            self.on_refused(error)


#: Seconds between two looks for an error that refused the consumer in its group.
GROUP_WATCH_S = 1.0


class Message(Protocol):
    """What the worker reads of a consumed message (``faust.types.Message``)."""

    @property
    def key(self) -> bytes | None: ...

    @property
    def value(self) -> bytes | None: ...

    @property
    def partition(self) -> int: ...

    @property
    def offset(self) -> int: ...

    @property
    def timestamp(self) -> float | None: ...


class Event(Protocol):
    """An agent's event (``faust.EventT``), as far as the worker reads it."""

    @property
    def message(self) -> Message: ...


class Stream(Protocol):
    """The agent's stream (``faust.Stream``) as its stores read it: the current event."""

    current_event: Any

    def _set_current_event(self, event: Any = None) -> None: ...


def in_messages(events: Iterable[Event]) -> list[InMessage]:
    """What the batch processor needs of each of an agent's events, in order."""
    return [InMessage(e.message.key, e.message.value, e.message.partition, e.message.offset,
                      e.message.timestamp) for e in events]


class TableAccess:
    """Reads and writes of Faust tables on behalf of the events of one stream.

    Parameters
    ----------
    stream
        The agent's stream (the one whose current event Faust's stores look at).
    """

    def __init__(self, stream: Stream) -> None:
        self.stream = stream

    def get(self, table: Any, key: bytes, event: Event) -> Any:
        """``table.get(key)``, looked up in the partition of ``event``, one of the key's own."""
        with self._under(event):
            return table.get(key)

    def set(self, table: Any, key: bytes, value: Any, event: Event) -> None:
        """``table[key] = value``, written to the partition of ``event``, one of the key's own."""
        with self._under(event):
            table[key] = value

    def put(self, table: Any, key: bytes, value: Any, event: Event) -> None:
        """``table[key] = value`` in the table's local store only, in the partition of ``event``: the
        caller sends the changelog record itself (see :meth:`persisted`)."""
        with self._under(event):
            table.data[key] = value

    @staticmethod
    def persisted(table: Any, offsets: Mapping[int, int]) -> None:
        """Note that the changelog of ``table`` holds its records up to ``offsets`` (partition ->
        offset of the last record written), as Faust notes its own changelog writes: a RocksDB
        store then recovers from there on."""
        topic = table.changelog_topic.get_topic_name()
        for partition, offset in offsets.items():
            table.data.set_persisted_offset(TP(topic, partition), offset)

    @contextmanager
    def _under(self, event: Event) -> Iterator[None]:
        previous = self.stream.current_event
        self.stream._set_current_event(event)
        try:
            yield
        finally:
            self.stream._set_current_event(previous)


class BarsConsumer:
    """The app's consumer as seen from one topic: its partitions, how far they go, seeks.

    Parameters
    ----------
    app
        The Faust app (its consumer exists once the worker runs).
    topic
        The topic whose partitions are meant (``bars``).
    read_first_stored
        ``(partition, offset) -> offset`` of :meth:`first_stored`, blocking; by default a client of
        its own reads the broker (:func:`forecaster.kafka.reading.first_stored_offset`).
    """

    def __init__(self, app: faust.App, topic: str,
                 read_first_stored: Callable[[int, int], int] | None = None) -> None:
        self.app = app
        self.topic = topic
        self._read_first_stored = read_first_stored or self._read_broker

    @property
    def rebalancing(self) -> bool:
        """Whether a rebalance is under way (Faust then seeks the partitions it assigns itself)."""
        return bool(self.app.rebalancing)

    @property
    def generation(self) -> int | None:
        """The consumer group generation last joined (every rebalance makes a new one)."""
        return self.app.consumer_generation_id

    def assigned(self) -> list[int]:
        """The topic's partitions assigned to this worker."""
        return [tp.partition for tp in self.app.consumer.assignment() if tp.topic == self.topic]

    def highwater(self, partition: int) -> int | None:
        """The partition's high water mark (None before its first fetch, or once revoked)."""
        try:
            return self.app.consumer.highwater(TP(self.topic, partition))
        except (AssertionError, IllegalStateError):
            # aiokafka asserts the partition is assigned, and the assignment lives in the
            # consumer's thread: it can be revoked between assigned() and this call.
            return None

    async def first_offset(self, partition: int) -> int | None:
        """The partition's first offset on the broker (its log start); None when the broker does not
        tell (unreachable, or the consumer not started or stopping)."""
        return await self._ask_broker(partition, self.app.consumer.earliest_offsets, "first")

    async def end_offset(self, partition: int) -> int | None:
        """The partition's high water mark asked of the broker, for a partition not fetched yet (see
        :meth:`highwater`); None when the broker does not tell."""
        return await self._ask_broker(partition, self.app.consumer.highwaters, "end")

    async def _ask_broker(self, partition: int, ask: Callable[[TP], Awaitable[Mapping[TP, int]]],
                          what: str) -> int | None:
        tp = TP(self.topic, partition)
        try:
            return (await ask(tp)).get(tp)
        except (KafkaError, ConsumerNotStarted) as error:
            log.debug("no %s offset of bars partition %d: %r", what, partition, error)
            return None

    async def first_stored(self, partition: int, offset: int) -> int | None:
        """The offset of the first message stored in ``partition`` at or after ``offset`` (its end
        offset when none), read apart from the app's consumer, whose fetches it leaves alone; None
        when the broker does not tell."""
        from kafka.errors import KafkaError as ClientError

        try:
            return await asyncio.to_thread(self._read_first_stored, partition, offset)
        except (ClientError, TimeoutError) as error:
            log.debug("no stored offset of bars partition %d from %d: %r", partition, offset, error)
            return None

    def _read_broker(self, partition: int, offset: int) -> int:
        from forecaster.kafka.reading import first_stored_offset

        settings = cast(ForecasterApp, self.app).forecaster_settings
        return first_stored_offset(settings, self.topic, partition, offset)

    async def seek(self, partition: int, offset: int) -> bool:
        """Seek ``partition`` to ``offset``; False when it is no longer assigned."""
        consumer = self.app.consumer
        tp = TP(self.topic, partition)
        if tp not in consumer.assignment():
            return False
        # In the consumer's own thread (Faust's plain seek() changes aiokafka's state from this one).
        try:
            await consumer.seek_wait({tp: offset})
        except IllegalStateError:  # revoked meanwhile
            return False
        return True


def refused_by_the_group(app: faust.App) -> BaseException | None:
    """The error aiokafka keeps for the app's consumer when the broker refused it in its group for
    good (see the module's docstring), or None."""
    consumer = getattr(getattr(app.consumer, "_thread", None), "_consumer", None)
    error = getattr(getattr(consumer, "_coordinator", None), "_pending_exception", None)
    return error if isinstance(error, BaseException) else None


def run_worker(app: ForecasterApp, loglevel: str) -> NoReturn:
    """Run Faust's ``worker`` command on ``app`` in this process, as ``faust -A ... worker`` would.

    ``App.main()`` is Faust's way to run its command line on an app object, and it takes the
    command's options from ``sys.argv`` only: they are put there, for this process, which ends with
    the worker. ``--without-web``: Faust's CLI turns its web server on whatever the app says; one
    fixed port per worker would stop a second worker on the same host, and the metrics have their
    own endpoint. The event loop is the settings' ``faust_loop`` (``FAUST_LOOP``).
    """
    sys.argv = ["forecaster worker", "worker", "--loglevel", loglevel, "--without-web"]
    if app.forecaster_settings.faust_loop == "uvloop":
        # What Faust does for FAUST_LOOP=uvloop at its import: no event loop is made before this
        # line, so the worker's is uvloop's (forecaster.startup.require_event_loop checked it is here).
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    app.main()
