"""The position guard: every offset of a partition handled once, in order, none skipped."""

from __future__ import annotations

from typing import NamedTuple

import pytest

from stream_app.positions import PositionDecodeError, PositionGuard, StallWatch, decode_position


class Msg(NamedTuple):
    partition: int
    offset: int


def offsets(messages: list[Msg]) -> list[tuple[int, int]]:
    return [(m.partition, m.offset) for m in messages]


def test_a_partition_never_handled_starts_where_the_consumer_does() -> None:
    admission = PositionGuard().admit([Msg(2, 40), Msg(2, 41)], positions={})
    assert offsets(admission.admitted) == [(2, 40), (2, 41)]
    assert admission.positions == {2: 42} and not admission.rewinds


def test_redeliveries_below_the_position_are_skipped_and_counted() -> None:
    admission = PositionGuard().admit([Msg(0, 3), Msg(0, 4), Msg(0, 5), Msg(1, 9)], positions={0: 5, 1: 9})
    assert offsets(admission.admitted) == [(0, 5), (1, 9)]
    assert admission.redelivered == 2
    assert admission.positions == {0: 6, 1: 10}


def test_a_skip_inside_a_batch_stops_that_partition_only() -> None:
    batch = [Msg(0, 10), Msg(1, 7), Msg(0, 11), Msg(0, 30), Msg(1, 8), Msg(0, 31)]
    admission = PositionGuard().admit(batch, positions={0: 10, 1: 7})
    assert offsets(admission.admitted) == [(0, 10), (1, 7), (0, 11), (1, 8)]
    assert admission.rewinds == {0: (12, 30)}
    assert admission.positions == {0: 12, 1: 9}


def test_a_skip_is_sought_back_until_the_skipped_messages_come() -> None:
    guard = PositionGuard()
    first = guard.admit([Msg(0, 20), Msg(0, 21)], positions={0: 12})
    assert first.rewinds == {0: (12, 20)} and not first.admitted
    guard.rewound(0, 12, 20)
    assert guard.rewinding(0) == 12 and guard.rewinding(1) is None
    # Records fetched before the seek can still arrive: another skip, another rewind.
    stale = guard.admit([Msg(0, 22)], positions={0: 12})
    assert stale.rewinds == {0: (12, 22)}
    guard.rewound(0, 12, 22)
    fresh = guard.admit([Msg(0, 12), Msg(0, 13)], positions={0: 12})
    assert offsets(fresh.admitted) == [(0, 12), (0, 13)] and not fresh.passed_gaps
    assert guard.rewinding(0) is None
    # The memory of the rewind is gone: a later skip is sought back again, not passed.
    later = guard.admit([Msg(0, 22)], positions={0: 14})
    assert later.rewinds == {0: (14, 22)}


def test_offsets_without_messages_are_passed_once_a_rewind_meets_the_same_offset() -> None:
    # Transaction markers or retention leave offsets with no message: seeking back to the position
    # brings the same first offset again, and then the guard goes on.
    guard = PositionGuard()
    assert guard.admit([Msg(3, 101)], positions={3: 100}).rewinds == {3: (100, 101)}
    guard.rewound(3, 100, 101)
    admission = guard.admit([Msg(3, 101), Msg(3, 102)], positions={3: 100})
    assert offsets(admission.admitted) == [(3, 101), (3, 102)]
    assert admission.passed_gaps == [(3, 100, 101)]
    assert admission.positions == {3: 103}


def test_without_a_rewind_the_same_skip_is_never_passed() -> None:
    # The app did not seek (a rebalance was under way): the guard must not take the skip as empty.
    guard = PositionGuard()
    for _ in range(3):
        admission = guard.admit([Msg(0, 50)], positions={0: 40})
        assert admission.rewinds == {0: (40, 50)} and not admission.admitted


def test_a_rebalance_makes_the_guard_forget_what_its_rewinds_met() -> None:
    # The rebalance's own seek (to committed offsets) may bring the offset a rewind met first: that
    # says nothing about the offsets before it.
    guard = PositionGuard()
    guard.rewound(1, 10, 25)
    guard.forget()
    admission = guard.admit([Msg(1, 25)], positions={1: 10})
    assert admission.rewinds == {1: (10, 25)} and not admission.passed_gaps


def test_a_partition_behind_its_high_water_mark_stalls_only_if_it_does_not_move() -> None:
    watch = StallWatch(patience_s=5)
    assert not watch.stalled(0, position=10, highwater=20, now=0.0)
    assert not watch.stalled(0, position=10, highwater=20, now=4.9)
    assert watch.stalled(0, position=10, highwater=20, now=5.0)
    # Each partition on its own clock.
    assert not watch.stalled(1, position=3, highwater=4, now=5.0)
    assert not watch.stalled(1, position=3, highwater=4, now=9.0)
    assert watch.stalled(1, position=3, highwater=4, now=10.0)


def test_a_partition_at_its_high_water_mark_never_stalls() -> None:
    watch = StallWatch(patience_s=1)
    for now in range(10):
        assert not watch.stalled(0, position=7, highwater=7, now=float(now))


def test_alarms_at_the_same_position_come_ever_less_often() -> None:
    # Offsets with no message at a partition's end (transaction markers) never let it move.
    watch = StallWatch(patience_s=5.0, max_patience_s=30.0)  # floats, as the worker gives them
    alarms = [now for now in range(0, 200) if watch.stalled(0, position=10, highwater=12, now=float(now))]
    assert alarms == [5, 15, 35, 65, 95, 125, 155, 185]  # waits of 5, 10, 20, then at most 30 s
    # Days of it: the wait stays at its longest.
    looks = range(200, 10**6, 30)  # 33,000 looks, an alarm at each but the first
    late = [now for now in looks if watch.stalled(0, position=10, highwater=12, now=float(now))]
    assert len(late) == len(looks) - 1 and late[-1] - late[-2] == 30
    # Moving on starts from the short wait again.
    assert not watch.stalled(0, position=11, highwater=12, now=2e6)
    assert watch.stalled(0, position=11, highwater=12, now=2e6 + 5)


def test_a_batch_in_hand_restarts_the_clocks_and_keeps_the_alarms() -> None:
    watch = StallWatch(patience_s=5)
    watch.stalled(0, position=10, highwater=20, now=0.0)
    assert watch.stalled(0, position=10, highwater=20, now=5.0)
    watch.hold()
    assert not watch.stalled(0, position=10, highwater=20, now=100.0)  # the clock starts here
    assert not watch.stalled(0, position=10, highwater=20, now=109.0)
    assert watch.stalled(0, position=10, highwater=20, now=110.0)  # the second alarm's 10 s wait


def test_a_reset_starts_the_wait_again() -> None:
    watch = StallWatch(patience_s=5)
    watch.stalled(0, position=10, highwater=20, now=0.0)
    assert watch.stalled(0, position=10, highwater=20, now=5.0)
    watch.reset()
    assert not watch.stalled(0, position=10, highwater=20, now=6.0)
    assert watch.stalled(0, position=10, highwater=20, now=11.0)  # the first wait again


@pytest.mark.parametrize("patience, most", [(0, 10), (-1, 10), (20, 10)])
def test_patience_must_be_positive_and_within_its_bound(patience: float, most: float) -> None:
    with pytest.raises(ValueError, match="need 0 < patience_s <= max_patience_s"):
        StallWatch(patience_s=patience, max_patience_s=most)


def test_a_suspected_partition_is_sought_at_once_unless_it_moved() -> None:
    # Messages beyond the position were dropped during a rebalance, with no seek back.
    watch = StallWatch(patience_s=5)
    watch.suspect(0, position=40)
    watch.suspect(1, position=70)
    assert watch.stalled(0, position=40, highwater=90, now=0.0)  # still there: at once
    assert not watch.stalled(1, position=75, highwater=90, now=0.0)  # the rebalance brought them back
    assert not watch.stalled(0, position=40, highwater=90, now=4.0)  # then the usual waits


def test_a_position_past_the_offset_range_is_refused() -> None:
    # Read as it is, every message of the partition would look handled, and be skipped for good.
    assert decode_position(b"9223372036854775807") == 2**63 - 1
    with pytest.raises(PositionDecodeError, match="digits of an offset"):
        decode_position(b"9223372036854775808")
