"""The Faust adapter against fakes of Faust's stream, tables, consumer and app (no broker), and the
stream's current event against Faust's own Stream, whose private setter the adapter relies on."""

from __future__ import annotations

import asyncio
import inspect
import sys
from pathlib import Path

import faust
import pytest
from faust.streams import current_event
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

from forecaster.settings import Settings
from stream_app.app import app_options, create_app
from stream_app.faust_adapter import (
    BarsConsumer,
    EagerConsumer,
    ForecasterApp,
    TableAccess,
    in_messages,
    refused_by_the_group,
    run_worker,
)
from stream_app.processor import InMessage
from tests.stream.fake_faust import FakeApp, FakeConsumer, FakeStream, FakeTable, event

A0, B1 = event(b"AAA", b"a", 0, 10, 1.5), event(b"BBB", b"b", 1, 20)


def test_a_write_goes_to_the_partition_of_the_event_given_not_the_streams_last() -> None:
    stream = FakeStream(current=B1)  # after take_events: the batch's last event
    table = FakeTable(stream)
    tables = TableAccess(stream)
    tables.set(table, b"AAA", b"state", A0)
    assert tables.get(table, b"AAA", A0) == b"state"
    assert table.writes == [(b"AAA", 0)] and table.reads == [(b"AAA", 0)]
    assert stream.current_event is B1  # put back: take_events' drainer reads it for the next batch


def test_the_streams_event_is_put_back_when_the_access_fails() -> None:
    class Refusing(FakeTable):
        def __setitem__(self, key: bytes, value: object) -> None:
            raise KeyError(key)

    stream = FakeStream(current=B1)
    with pytest.raises(KeyError):
        TableAccess(stream).set(Refusing(stream), b"AAA", b"state", A0)
    assert stream.current_event is B1


def test_fausts_stores_see_the_event_given_on_fausts_own_stream(tmp_path: Path) -> None:
    # Faust's stores take the partition from faust.streams.current_event(), which only the
    # stream's private _set_current_event sets along with Stream.current_event.
    app = faust.App("adapter-test", datadir=str(tmp_path))
    stream = app.stream(app.topic("bars"))
    stream._set_current_event(B1)  # type: ignore[attr-defined]
    seen = []

    class Store(dict):
        def __setitem__(self, key: bytes, value: object) -> None:
            seen.append(current_event())

    TableAccess(stream).set(Store(), b"AAA", b"state", A0)  # type: ignore[arg-type]
    assert seen == [A0]
    assert stream.current_event is B1 and current_event() is B1


def test_a_put_reaches_a_real_fausts_store_without_a_changelog_message(tmp_path: Path) -> None:
    # The worker sends the states' changelog itself: a put writes the store only, and the offsets
    # it is told go to the store as Faust's own changelog callback gives them.
    app = faust.App("adapter-test", datadir=str(tmp_path), store="memory://")
    table = app.Table("states", key_type=bytes, value_type=bytes, partitions=2)
    stream = app.stream(app.topic("bars"))
    stream._set_current_event(B1)  # type: ignore[attr-defined]
    sent = []
    table.send_changelog = lambda *args, **kwargs: sent.append(args)  # type: ignore[method-assign]
    persisted = []
    table.data.set_persisted_offset = lambda tp, offset: persisted.append((tp, offset))  # type: ignore[method-assign]
    tables = TableAccess(stream)
    tables.put(table, b"AAA", b"state", A0)
    tables.persisted(table, {0: 41})
    assert tables.get(table, b"AAA", A0) == b"state"
    assert sent == []
    assert persisted == [(TP(table.changelog_topic.get_topic_name(), 0), 41)]
    assert stream.current_event is B1


def test_events_become_the_processors_messages() -> None:
    assert in_messages([A0, B1]) == [InMessage(b"AAA", b"a", 0, 10, 1.5),
                                     InMessage(b"BBB", b"b", 1, 20, None)]


def consumer_of(**fetched: int | None) -> FakeConsumer:
    """``bars0=5`` -> partition 0 of ``bars`` assigned, its high water mark 5."""
    return FakeConsumer({TP(name[:-1], int(name[-1])): hw for name, hw in fetched.items()})


def test_the_consumer_tells_the_topics_partitions_and_their_high_water_marks() -> None:
    consumer = BarsConsumer(FakeApp(consumer_of(bars0=5, bars1=None, other2=9)), "bars")  # type: ignore[arg-type]
    assert sorted(consumer.assigned()) == [0, 1]
    assert consumer.highwater(0) == 5
    assert consumer.highwater(1) is None  # not fetched yet
    assert consumer.highwater(3) is None  # revoked since assigned() was asked


def test_the_consumer_asks_the_broker_for_a_partitions_first_and_end_offsets() -> None:
    fake = consumer_of(bars0=None)
    fake.first, fake.ends = {TP("bars", 0): 7}, {TP("bars", 0): 12}
    consumer = BarsConsumer(FakeApp(fake), "bars")  # type: ignore[arg-type]
    assert asyncio.run(consumer.first_offset(0)) == 7
    assert asyncio.run(consumer.end_offset(0)) == 12
    fake.broker_down = True  # not an error of the worker's: None, as for an offset not known yet
    assert asyncio.run(consumer.first_offset(0)) is None
    assert asyncio.run(consumer.end_offset(0)) is None


def test_a_seek_is_made_in_the_consumers_thread_only_on_partitions_still_assigned() -> None:
    fake = consumer_of(bars0=5)
    consumer = BarsConsumer(FakeApp(fake), "bars")  # type: ignore[arg-type]
    assert asyncio.run(consumer.seek(0, 3)) is True
    assert fake.seeks == [{TP("bars", 0): 3}]
    assert asyncio.run(consumer.seek(1, 3)) is False  # not assigned: its next owner starts there
    fake.revoke_on_seek = True
    assert asyncio.run(consumer.seek(0, 3)) is False
    assert fake.seeks == [{TP("bars", 0): 3}]


def test_the_consumer_tells_rebalances_and_generations() -> None:
    app = FakeApp(consumer_of(), rebalancing=True, consumer_generation_id=7)
    consumer = BarsConsumer(app, "bars")  # type: ignore[arg-type]
    assert consumer.rebalancing is True and consumer.generation == 7


def test_the_app_declares_its_changelog_topics_compacted(tmp_path: Path) -> None:
    settings = Settings(home=str(tmp_path), app_id="adapter-test", partitions=3, replication_factor=1)
    specs = {spec.name: spec for spec in create_app(settings).changelog_topics()}
    assert sorted(specs) == ["adapter-test-source_positions-changelog", "adapter-test-ticker_state-changelog"]
    for spec in specs.values():
        assert spec.partitions == 3 and spec.configs["cleanup.policy"] == "compact"
        assert spec.configs["segment.bytes"] == str(1024 * 1024)  # the worker's CHANGELOG_CONFIG


def test_the_worker_runs_fausts_worker_command_on_the_app(monkeypatch: pytest.MonkeyPatch,
                                                          tmp_path: Path) -> None:
    app = create_app(Settings(home=str(tmp_path)))
    argv: list[list[str]] = []
    monkeypatch.setattr(sys, "argv", ["forecaster", "worker"])
    monkeypatch.setattr(app, "main", lambda: argv.append(list(sys.argv)))
    try:
        run_worker(app, "info")
    finally:
        # run_worker made uvloop's policy the process's: the tests after this one get asyncio's back.
        asyncio.set_event_loop_policy(None)
    assert argv == [["forecaster worker", "worker", "--loglevel", "info", "--without-web"]]


def test_the_app_runs_its_after_stop_when_it_stops(tmp_path: Path) -> None:
    app = create_app(Settings(home=str(tmp_path)))
    stopped: list[str] = []

    async def after_stop() -> None:
        stopped.append("output producer")

    app.after_stop = after_stop
    asyncio.run(app.on_stop())
    assert stopped == ["output producer"]


def test_the_groups_refusal_is_found_where_aiokafka_keeps_it_for_the_next_fetch() -> None:
    from types import SimpleNamespace

    from aiokafka.errors import InvalidSessionTimeoutError

    refusal = InvalidSessionTimeoutError()
    coordinator = SimpleNamespace(_pending_exception=None)
    app = SimpleNamespace(consumer=SimpleNamespace(_thread=SimpleNamespace(
        _consumer=SimpleNamespace(_coordinator=coordinator))))
    assert refused_by_the_group(app) is None  # type: ignore[arg-type]
    coordinator._pending_exception = refusal
    assert refused_by_the_group(app) is refusal  # type: ignore[arg-type]
    # Before Faust made its consumer thread, or on another transport: nothing to find.
    assert refused_by_the_group(SimpleNamespace(consumer=SimpleNamespace())) is None  # type: ignore[arg-type]


def test_the_app_consumes_through_the_eager_consumer_unless_told_otherwise(tmp_path: Path) -> None:
    settings = Settings(home=str(tmp_path))
    assert type(create_app(settings).consumer) is EagerConsumer
    fausts = ForecasterApp(settings, eager_consumer=False, **app_options(settings))
    assert type(fausts.consumer) is faust_aiokafka.Consumer


async def _deliver(trace: list[str], delivered: asyncio.Event | None = None) -> str:
    # What Faust's conductor does with a message: usually no wait, a wait when a buffer is full.
    trace.append("delivering")
    if delivered is not None:
        try:
            await delivered.wait()
        except asyncio.CancelledError:
            trace.append("cancelled")
            raise
    trace.append("delivered")
    return "done"


async def _failing() -> None:
    raise KeyError("undecodable")


async def _never() -> None:
    await asyncio.Event().wait()


def test_the_eager_consumer_delivers_a_message_at_once_when_nothing_waits(tmp_path: Path) -> None:
    async def main() -> None:
        consumer = create_app(Settings(home=str(tmp_path))).consumer
        trace: list[str] = []
        suspended = _never()
        tasks_before = len(asyncio.all_tasks())
        results = await consumer.wait_first(_deliver(trace), suspended)
        assert len(asyncio.all_tasks()) == tasks_before and trace == ["delivering", "delivered"]
        assert (results.results, results.stopped) == (["done"], False)
        assert inspect.getcoroutinestate(suspended) == inspect.CORO_CLOSED  # no "never awaited"
        consumer._stopped.set()  # stopping: the message is still delivered, the answer says stopped
        results = await consumer.wait_first(_deliver(trace), _never())
        assert trace[2:] == ["delivering", "delivered"] and results.stopped
        # A delivery that fails at once: its error is raised, as Faust's wait_first raises it.
        suspended = _never()
        with pytest.raises(KeyError, match="undecodable"):
            await consumer.wait_first(_failing(), suspended)
        assert inspect.getcoroutinestate(suspended) == inspect.CORO_CLOSED

    asyncio.run(main())


def test_the_eager_consumer_waits_fausts_way_for_a_delivery_that_waits(tmp_path: Path) -> None:
    async def main() -> None:
        consumer = create_app(Settings(home=str(tmp_path))).consumer
        trace: list[str] = []
        room = asyncio.Event()
        asyncio.get_running_loop().call_soon(room.set)
        results = await consumer.wait_first(_deliver(trace, room), consumer.suspend_flow.wait())
        assert (results.results, results.stopped) == (["done"], False)
        assert trace == ["delivering", "delivered"]
        # The flow suspended (a rebalance) while a delivery waits: it is given up, as Faust's own
        # consumer gives it up.
        trace.clear()
        asyncio.get_running_loop().call_soon(consumer.suspend_flow.set)
        results = await consumer.wait_first(_deliver(trace, asyncio.Event()), consumer.suspend_flow.wait())
        await asyncio.sleep(0)  # the cancelled delivery's last step
        assert results.results == [True] and trace == ["delivering", "cancelled"]

    asyncio.run(main())
