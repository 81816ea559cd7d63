"""States to and from the bytes of the worker's table: the champion's ticker states, and each
ticker's challenger states (:mod:`stream_app.shadow_states`)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Generic, TypeVar

from models.core.state import StateDecodeError, TickerState
from stream_app import shadow_states

log = logging.getLogger(__name__)

_S = TypeVar("_S")


class StateCodec(Generic[_S]):
    """Values to and from the table's bytes, each value decoded once.

    The worker writes the values' bytes itself (:meth:`encode`) and keeps the value each came from:
    while the table holds those bytes, the value is that one. Bytes it did not write (recovered
    from the changelog) are decoded. A state decoded in every batch cost 4 % of the worker's
    thread under load; RocksDB hands back a new copy at every read, hence equality, not identity.

    Bytes that do not decode (:class:`~models.core.state.StateDecodeError`: another format
    version, cut short, garbage) are quarantined: the key starts afresh, as a new ticker does,
    and the bytes wait in :attr:`quarantined` for the handler to dead-letter them, once per distinct
    bytes. Refusing them instead would stop the worker on the same changelog record at every restart.

    Parameters
    ----------
    to_bytes, from_bytes
        A value's bytes, and the value of bytes (raising :class:`StateDecodeError` on bytes it did
        not write).
    afresh
        What the log says of a key whose bytes are quarantined, ``{key}`` in it: "ticker {key}
        starts afresh".
    check
        Raises :class:`StateDecodeError` if a decoded value is not one the key can hold (another
        ticker's state: one flipped bit of the ticker in the bytes, which the step would refuse at
        every batch).
    """

    def __init__(self, to_bytes: Callable[[_S], bytes], from_bytes: Callable[[bytes], _S],
                 afresh: str, check: Callable[[str, _S], None]) -> None:
        self._to_bytes = to_bytes
        self._from_bytes = from_bytes
        self._afresh = afresh
        self._check = check
        self._known: dict[str, tuple[bytes, _S]] = {}
        self._refused: dict[str, bytes] = {}  # per key, the last bytes quarantined
        #: ``(key, raw, error)`` of each value quarantined since the handler last took them.
        self.quarantined: list[tuple[str, bytes, StateDecodeError]] = []

    def decode(self, key: str, raw: bytes | None) -> _S | None:
        """The value behind ``raw``, ``key``'s bytes in the table (None: no value yet, or none
        that decodes)."""
        if raw is None:
            return None
        known = self._known.get(key)
        if known is not None and known[0] == raw:
            return known[1]
        try:
            value = self._from_bytes(raw)
            self._check(key, value)
        except StateDecodeError as error:
            if self._refused.get(key) != raw:
                self._refused[key] = bytes(raw)
                log.warning("%s: its stored state (%d bytes) is quarantined: %s",
                            self._afresh.format(key=key), len(raw), error)
                self.quarantined.append((key, bytes(raw), error))
            return None
        self._known[key] = (raw, value)
        return value

    def encode(self, key: str, value: _S) -> bytes:
        """The bytes to write for ``key``'s new value, remembered with it."""
        raw = self._to_bytes(value)
        self._known[key] = (raw, value)
        self._refused.pop(key, None)
        return raw


def ticker_states() -> StateCodec[TickerState]:
    """The codec of the champion's ticker states."""
    return StateCodec(TickerState.to_bytes, TickerState.from_bytes, "ticker {key} starts afresh", _owned)


def challenger_states() -> StateCodec[dict[str, TickerState]]:
    """The codec of each ticker's challenger states, by alias (:mod:`stream_app.shadow_states`)."""
    return StateCodec(shadow_states.encode, shadow_states.decode,
                      "the challengers of ticker {key} start again from the champion's state", _all_owned)


def _owned(key: str, state: TickerState) -> None:
    if state.ticker != key:
        raise StateDecodeError(f"ticker state corrupted: it is the state of {state.ticker!r}, stored under "
                               f"{key!r}")


def _all_owned(key: str, states: dict[str, TickerState]) -> None:
    for state in states.values():
        _owned(key, state)
