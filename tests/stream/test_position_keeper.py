"""The position keeper's seeks (rewinds, stalls) and lags, on a fake consumer (no broker)."""

from __future__ import annotations

import asyncio

import pytest
from faust.types import TP

from stream_app.faust_adapter import BarsConsumer
from stream_app.metrics import WorkerMetrics
from stream_app.position_keeper import PositionKeeper
from stream_app.positions import Admission
from tests.stream.fake_faust import FakeApp, FakeConsumer, FakeStream, FakeTable


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def app() -> FakeApp:
    # Partition 0 handled up to 5 of 8, partition 1 caught up at 3, partition 2 never handled and
    # empty from offset 4 (retention removed its first messages).
    return FakeApp(FakeConsumer({TP("bars", 0): 8, TP("bars", 1): 3, TP("bars", 2): 4},
                                first={TP("bars", 2): 4}))


def keeper_of(app: FakeApp, clock: Clock | None = None) -> PositionKeeper:
    table = FakeTable(FakeStream())
    table.update({b"bars/0": b"5", b"bars/1": b"3"})
    return PositionKeeper(table, "bars", BarsConsumer(app, "bars"), WorkerMetrics(),  # type: ignore[arg-type]
                          patience_s=5.0, clock=clock or Clock())


def rewinds(keeper: PositionKeeper) -> float:
    return keeper.metrics.rewinds._value.get()


def test_the_lag_is_what_lies_between_the_position_and_the_high_water_mark(app: FakeApp) -> None:
    assert sorted(asyncio.run(keeper_of(app).lags())) == [(0, 3), (1, 0), (2, 0)]


def test_a_partition_never_handled_is_positioned_at_its_first_offset_on_the_broker(app: FakeApp) -> None:
    app.consumer.fetched[TP("bars", 3)] = 9
    app.consumer.first[TP("bars", 3)] = 2
    assert asyncio.run(keeper_of(app).position(3)) == 2
    assert (3, 7) in asyncio.run(keeper_of(app).lags())


def test_a_partition_not_fetched_yet_has_its_high_water_mark_asked_of_the_broker(app: FakeApp) -> None:
    app.consumer.fetched[TP("bars", 0)] = None
    app.consumer.ends[TP("bars", 0)] = 10
    assert (0, 5) in asyncio.run(keeper_of(app).lags())


def test_what_the_broker_does_not_tell_is_left_out_of_the_lags(app: FakeApp) -> None:
    app.consumer.fetched[TP("bars", 0)] = None  # and no answer for it: not reported rather than 0
    assert sorted(asyncio.run(keeper_of(app).lags())) == [(1, 0), (2, 0)]
    app.consumer.broker_down = True
    assert sorted(asyncio.run(keeper_of(app).lags())) == [(1, 0)]  # partition 2: no first offset


def test_a_partition_that_stalls_behind_its_high_water_mark_is_sought_back(app: FakeApp) -> None:
    clock = Clock()
    keeper = keeper_of(app, clock)
    asyncio.run(keeper.seek_stalled(busy=False))
    clock.now = 5.0
    asyncio.run(keeper.seek_stalled(busy=False))
    assert app.consumer.seeks == [{TP("bars", 0): 5}] and rewinds(keeper) == 1


def test_a_partition_never_handled_and_sought_past_its_messages_is_sought_back_to_its_first(
        app: FakeApp) -> None:
    # What a rebalance left in CI: a partition no worker had handled, its consumer at the end of it
    # (its fetches at the high water mark), nothing ever coming to the agent.
    clock = Clock()
    app.consumer.fetched[TP("bars", 3)] = 6
    keeper = keeper_of(app, clock)
    asyncio.run(keeper.seek_stalled(busy=False))
    clock.now = 5.0
    asyncio.run(keeper.seek_stalled(busy=False))
    # One seek each, in the assignment's (a set's) order.
    assert sorted(app.consumer.seeks, key=str) == [{TP("bars", 0): 5}, {TP("bars", 3): 0}]


def test_no_partition_counts_as_stalled_while_a_batch_is_in_hand(app: FakeApp) -> None:
    clock = Clock()
    keeper = keeper_of(app, clock)
    asyncio.run(keeper.seek_stalled(busy=False))
    clock.now = 5.0
    asyncio.run(keeper.seek_stalled(busy=True))  # the batch holds every partition still
    clock.now = 9.0
    asyncio.run(keeper.seek_stalled(busy=False))  # idle again: timed afresh from here
    clock.now = 13.0
    asyncio.run(keeper.seek_stalled(busy=False))
    assert app.consumer.seeks == []
    clock.now = 14.0
    asyncio.run(keeper.seek_stalled(busy=False))
    assert app.consumer.seeks == [{TP("bars", 0): 5}]


def test_a_skip_during_a_rebalance_is_left_to_the_stall_watch_which_seeks_at_once(app: FakeApp) -> None:
    keeper = keeper_of(app)
    keeper.note_generation()  # as every batch does first
    app.rebalancing = True
    asyncio.run(keeper.follow_up(Admission(rewinds={0: (5, 7)})))
    asyncio.run(keeper.seek_stalled(busy=False))
    assert app.consumer.seeks == []
    app.rebalancing = False
    asyncio.run(keeper.seek_stalled(busy=False))  # no patience: the messages were dropped
    assert app.consumer.seeks == [{TP("bars", 0): 5}]


def test_a_new_generation_forgets_what_the_rewinds_met(app: FakeApp) -> None:
    keeper = keeper_of(app)
    keeper.note_generation()
    asyncio.run(keeper.follow_up(Admission(rewinds={0: (5, 7)})))
    assert keeper.guard.rewinding(0) == 5
    app.consumer_generation_id += 1  # a rebalance sought every partition again
    keeper.note_generation()
    assert keeper.guard.rewinding(0) is None


def test_a_partition_revoked_before_its_seek_is_left_to_its_next_owner(app: FakeApp) -> None:
    keeper = keeper_of(app)
    app.consumer.revoke_on_seek = True
    asyncio.run(keeper.follow_up(Admission(rewinds={0: (5, 7)}, redelivered=2)))
    assert rewinds(keeper) == 0 and keeper.guard.rewinding(0) is None
    assert keeper.metrics.redelivered._value.get() == 2


def test_a_position_that_does_not_decode_is_quarantined_once_by_the_timers_too(app: FakeApp) -> None:
    keeper = keeper_of(app)
    keeper.table[b"bars/0"] = b"5\x00"  # garbage after the digits
    # As if never handled: from the first offset (0) to the high water mark (8); no error in the timer.
    assert (0, 8) in asyncio.run(keeper.lags())
    assert (0, 8) in asyncio.run(keeper.lags())
    letters = keeper.take_quarantined()
    assert [(letter.reason, letter.source, letter.raw) for letter in letters] == [
        ("corrupt_position", "app-table-changelog/0", "NQA=")]
    assert keeper.take_quarantined() == []
    assert keeper.metrics.registry.get_sample_value("forecaster_quarantined_total", {"kind": "position"}) == 1
