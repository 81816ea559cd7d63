"""Which source offsets the worker has handled, so that none is skipped and none applied twice.

The worker keeps, per partition of ``bars``, the offset after the last message it has handled (its
*position*), in a changelog-backed table written together with the tickers' states. A batch is
admitted against it:

* a message below the position was handled before (a redelivery after a crash or a rebalance): it
  is skipped, its records being out already;
* a message at the position is handled, and moves it on;
* a message beyond the position means the consumer skipped offsets. Faust does, on rebalances
  (seen with faust-streaming 0.15.3, docs/reliability.md): it resumes the stream partitions while
  still seeking them to the committed offsets, a message delivered in that window never reaches
  the agent, the jump to the next one is recorded as a gap (as after transaction markers), and
  the gap counts as acknowledged, so the group's offsets get committed past the lost message. The
  partition is then sought back to its position. Messages fetched before that seek still arrive
  for a while; each batch of them is another skip and another seek to the same position. Only
  when a rewind meets the very same first offset again, and the broker stores no message in
  between (a copy of that message fetched before the seek looks the same: Faust's pipeline holds
  one after its own seek to the committed offsets), are the offsets in between taken as holding
  no message (transaction markers, retention), and passed.

The group's committed offsets only decide where the consumer starts; what was handled is decided
here, from the table, so a commit that went too far costs a rewind, not a bar.

A rewind is only seen when a message beyond the position comes. When the consumer was sought past
the last message (a rebalance seeking to offsets committed at the end of the partition), none comes:
:class:`StallWatch` tells which partitions stay behind their high water mark without moving, and the
worker seeks those back too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from models.core.state import StateDecodeError

#: The longest position record read: an offset is at most 19 digits (a signed 64-bit integer).
_MAX_DIGITS = 19
#: The largest offset Kafka has (a signed 64-bit integer): beyond it, every message would look handled.
_MAX_OFFSET = 2**63 - 1


class PositionDecodeError(StateDecodeError):
    """A stored position that is not an offset (the ASCII digits of a non-negative integer)."""


def decode_position(raw: bytes | None) -> int | None:
    """The offset a position record holds, None for no record.

    Raises
    ------
    PositionDecodeError
        ``raw`` is not the ASCII digits of a non-negative offset (cut short to nothing, garbage).

    Examples
    --------
    >>> decode_position(b"1234"), decode_position(None)
    (1234, None)
    >>> decode_position(b"\\x00\\xff12")
    Traceback (most recent call last):
    ...
    stream_app.positions.PositionDecodeError: a position is the ASCII digits of an offset, not b'\\x00\\xff12'
    """
    if raw is None:
        return None
    if not isinstance(raw, bytes | bytearray | memoryview):
        raise PositionDecodeError(f"a position is bytes, not {type(raw).__name__}")
    raw = bytes(raw)
    # int() alone would take " 7", "+7", "7_0" and non-ASCII digits: none of them written here.
    if not raw.isdigit() or len(raw) > _MAX_DIGITS or int(raw) > _MAX_OFFSET:
        shown = raw if len(raw) <= 40 else raw[:40] + b"..."
        raise PositionDecodeError(f"a position is the ASCII digits of an offset, not {shown!r}")
    return int(raw)


class HasOffset(Protocol):
    @property
    def partition(self) -> int: ...

    @property
    def offset(self) -> int: ...


M = TypeVar("M", bound=HasOffset)


@dataclass
class Admission(Generic[M]):
    """The outcome of :meth:`PositionGuard.admit` for one batch."""

    admitted: list[M] = field(default_factory=list)  # to handle, in batch order
    redelivered: int = 0  # below the position: handled before, skipped
    positions: dict[int, int] = field(default_factory=dict)  # partition -> new position
    rewinds: dict[int, tuple[int, int]] = field(default_factory=dict)  # partition -> (position, offset met)
    passed_gaps: list[tuple[int, int, int]] = field(default_factory=list)  # (partition, from, to)


class PositionGuard:
    """Admits each partition's messages in offset order, from its position on, without gaps.

    Examples
    --------
    >>> from collections import namedtuple
    >>> M = namedtuple("M", "partition offset")
    >>> guard = PositionGuard()
    >>> a = guard.admit([M(0, 5), M(0, 6), M(1, 2)], positions={0: 6})
    >>> [m.offset for m in a.admitted], a.redelivered, a.positions
    ([6, 2], 1, {0: 7, 1: 3})

    Offsets skipped by the consumer make it seek back, and admit nothing beyond:

    >>> a = guard.admit([M(0, 9), M(0, 10)], positions={0: 7})
    >>> a.admitted, a.rewinds
    ([], {0: (7, 9)})
    >>> guard.rewound(0, *a.rewinds[0])  # the caller did seek partition 0 back to offset 7

    If the consumer, sought back, starts at the same offset again, nothing is stored in between:

    >>> a = guard.admit([M(0, 9), M(0, 10)], positions={0: 7})
    >>> [m.offset for m in a.admitted], a.positions, a.passed_gaps
    ([9, 10], {0: 11}, [(0, 7, 9)])
    """

    def __init__(self) -> None:
        # partition -> (position, first offset met) of the last rewind, to tell an empty range of
        # offsets (met again after the rewind) from a skip by the consumer (not met again).
        self._rewound: dict[int, tuple[int, int]] = {}

    def admit(self, messages: Sequence[M], positions: Mapping[int, int | None]) -> Admission[M]:
        """Split a batch into what to handle and what to skip, given each partition's position.

        ``positions`` maps a partition to the offset after its last handled message, or None when
        nothing of it was ever handled (the first message met is then taken as the start).
        """
        out: Admission[M] = Admission()
        expected: dict[int, int | None] = {}
        for message in messages:
            partition, offset = message.partition, message.offset
            if partition in out.rewinds:
                continue
            if partition not in expected:
                expected[partition] = positions.get(partition)
            position = expected[partition]
            if position is not None and offset < position:
                out.redelivered += 1
                continue
            if position is not None and offset > position:
                if self._rewound.get(partition) != (position, offset):
                    out.rewinds[partition] = (position, offset)
                    continue
                out.passed_gaps.append((partition, position, offset))
            self._rewound.pop(partition, None)
            out.admitted.append(message)
            expected[partition] = offset + 1
            out.positions[partition] = offset + 1
        return out

    def met_again(self, messages: Sequence[M],
                  positions: Mapping[int, int | None]) -> dict[int, tuple[int, int]]:
        """``partition -> (position, offset)`` of each partition whose first message in ``messages`` is
        the one its last rewind met, at the same position: :meth:`admit` would take the offsets in
        between for empty. A copy of that message fetched before the seek (Faust's pipeline holds
        one after its own seek to the committed offsets) looks the same, so the caller checks what
        the broker stores there, and :meth:`doubt` s the rewind when messages are stored.

        >>> from collections import namedtuple
        >>> M = namedtuple("M", "partition offset")
        >>> guard = PositionGuard()
        >>> guard.rewound(0, 7, 9)
        >>> guard.met_again([M(0, 9), M(1, 3)], positions={0: 7, 1: 3})
        {0: (7, 9)}
        >>> guard.met_again([M(0, 5), M(0, 9)], positions={0: 7})  # 5: a redelivery, which admit skips
        {0: (7, 9)}
        >>> guard.doubt(0)
        >>> guard.admit([M(0, 9)], positions={0: 7}).rewinds  # sought back once more
        {0: (7, 9)}
        """
        again: dict[int, tuple[int, int]] = {}
        seen: set[int] = set()
        for message in messages:
            partition = message.partition
            position = positions.get(partition)
            if partition in seen or (position is not None and message.offset < position):
                continue
            seen.add(partition)
            rewound = self._rewound.get(partition)
            if rewound is not None and rewound == (position, message.offset):
                again[partition] = rewound
        return again

    def doubt(self, partition: int) -> None:
        """Forget what ``partition``'s last rewind met: the message met again was not proof that the
        offsets before it are empty."""
        self._rewound.pop(partition, None)

    def forget(self) -> None:
        """Drop what the last rewinds met: a rebalance seeks every partition again, so what comes
        next says nothing about the offsets between a position and what a rewind met.

        >>> from collections import namedtuple
        >>> M = namedtuple("M", "partition offset")
        >>> guard = PositionGuard()
        >>> guard.rewound(0, 7, 9)
        >>> guard.forget()
        >>> guard.admit([M(0, 9)], positions={0: 7}).rewinds
        {0: (7, 9)}
        """
        self._rewound.clear()

    def rewinding(self, partition: int) -> int | None:
        """The position a partition was last sought back to, while it has not come back there."""
        rewound = self._rewound.get(partition)
        return rewound[0] if rewound is not None else None

    def rewound(self, partition: int, position: int, offset: int) -> None:
        """Note that ``partition`` was sought back to ``position`` after meeting ``offset``."""
        self._rewound[partition] = (position, offset)


@dataclass
class _Watched:
    position: int
    since: float | None  # None: timing starts at the next look
    alarms: int = 0  # at this position, in a row
    suspected: bool = False  # messages beyond the position were dropped without a seek back


class StallWatch:
    """Tells which partitions are behind their high water mark and have not moved for a while.

    ``patience_s`` is how long a partition may stay at the same position with messages after it
    before it counts as stalled. Each alarm at the same position doubles the wait before the next,
    up to ``max_patience_s``: offsets that hold no message (transaction markers at the end of a
    partition) look like a stall that no seek ends, and are not worth a warning every few seconds.

    Examples
    --------
    >>> watch = StallWatch(patience_s=10)
    >>> watch.stalled(0, position=5, highwater=8, now=100.0)
    False
    >>> watch.stalled(0, position=5, highwater=8, now=110.0)
    True
    >>> watch.stalled(0, position=5, highwater=8, now=125.0)  # sought back at 110: now waits 20 s
    False
    >>> watch.stalled(0, position=5, highwater=8, now=130.0)
    True
    >>> watch.stalled(0, position=6, highwater=8, now=131.0)  # it moved: 10 s again
    False
    >>> watch.stalled(0, position=8, highwater=8, now=150.0)  # caught up
    False

    A partition whose messages beyond its position were dropped without a seek back (during a
    rebalance) counts at the next look, without waiting:

    >>> watch.suspect(1, position=40)
    >>> watch.stalled(1, position=40, highwater=90, now=151.0)
    True
    """

    def __init__(self, patience_s: float, max_patience_s: float = 600.0) -> None:
        if not 0 < patience_s <= max_patience_s:
            raise ValueError(f"need 0 < patience_s <= max_patience_s, got {patience_s} and {max_patience_s}")
        self.patience_s = patience_s
        self.max_patience_s = max_patience_s
        self._watched: dict[int, _Watched] = {}

    def stalled(self, partition: int, position: int, highwater: int, now: float) -> bool:
        """Whether ``partition`` sat at ``position``, below ``highwater``, long enough to act."""
        if position >= highwater:
            self._watched.pop(partition, None)
            return False
        watched = self._watched.get(partition)
        if watched is None or watched.position != position:
            self._watched[partition] = _Watched(position, now)
            return False
        if watched.suspected:
            watched.suspected, watched.since = False, now
            return True
        if watched.since is None:
            watched.since = now
            return False
        wait = min(self.patience_s * 2 ** watched.alarms, self.max_patience_s)
        if now - watched.since < wait:
            return False
        watched.since = now
        if wait < self.max_patience_s:  # past the longest wait the count stops (no float overflow)
            watched.alarms += 1
        return True

    def suspect(self, partition: int, position: int) -> None:
        """Note that ``partition``'s messages beyond ``position`` were dropped and no seek brought them
        back yet: if it is still there at the next look, it counts as stalled at once."""
        self._watched[partition] = _Watched(position, since=None, suspected=True)

    def hold(self) -> None:
        """Time every partition afresh from the next look, keeping the alarms raised (while the
        worker has a batch in hand, which holds every partition still)."""
        for watched in self._watched.values():
            watched.since = None

    def reset(self) -> None:
        """Start watching afresh (after a rebalance, which seeks every partition again)."""
        self._watched.clear()
