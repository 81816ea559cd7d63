"""Faust table reads and writes, each under an event of its key's own partition.

Faust's stores take a key's partition from the stream's current event: the memory store sends a
write to that partition of the changelog, the RocksDB store reads and writes that partition's
database. In an agent the current event is the last one the stream yielded; after ``take_events``
that is the batch's last event, whatever the key. Writes of other keys would then land in a
changelog partition (and database) where recovery never looks for them, and RocksDB would find
nothing for keys of other partitions: every such ticker would start over with no state.

Faust has no public way to say which event an access belongs to, so :class:`TableAccess` sets the
stream's current event for each access (``Stream._set_current_event``) and puts the previous one
back after it: ``take_events``' drainer reads it for the next batch. An access has no await, so
nothing else runs while the event is borrowed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import faust


class TableAccess:
    """Reads and writes of Faust tables on behalf of the events of one stream.

    Parameters
    ----------
    stream
        The agent's stream (the one whose current event Faust's stores look at).
    """

    def __init__(self, stream: faust.StreamT) -> None:
        self.stream = stream

    def get(self, table: Any, key: bytes, event: faust.EventT) -> Any:
        """``table.get(key)``, looked up in the partition of ``event``, one of the key's own."""
        with self._under(event):
            return table.get(key)

    def set(self, table: Any, key: bytes, value: Any, event: faust.EventT) -> None:
        """``table[key] = value``, written to the partition of ``event``, one of the key's own."""
        with self._under(event):
            table[key] = value

    @contextmanager
    def _under(self, event: faust.EventT) -> Iterator[None]:
        previous = self.stream.current_event
        self.stream._set_current_event(event)  # type: ignore[attr-defined]
        try:
            yield
        finally:
            self.stream._set_current_event(previous)  # type: ignore[attr-defined]
