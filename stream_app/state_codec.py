"""Ticker states to and from the bytes of the worker's tables (the champion's and the challengers')."""

from __future__ import annotations

import logging

from models.core.state import StateDecodeError, TickerState

log = logging.getLogger(__name__)


class StateCodec:
    """Ticker states to and from the table's bytes, each state decoded once.

    The worker writes the states' bytes itself (:meth:`encode`) and keeps the state each came from:
    while the table holds those bytes, the state is that one. Bytes it did not write (recovered
    from the changelog) are decoded. A state decoded in every batch cost 4 % of the worker's
    thread under load; RocksDB hands back a new copy at every read, hence equality, not identity.

    Bytes that do not decode (:class:`~models.core.state.StateDecodeError`: another format
    version, cut short, garbage) are quarantined: the ticker starts afresh, as a new ticker does,
    and the bytes wait in :attr:`quarantined` for the handler to dead-letter them, once per distinct
    bytes. Refusing them instead would stop the worker on the same changelog record at every restart.
    """

    def __init__(self) -> None:
        self._known: dict[str, tuple[bytes, TickerState]] = {}
        self._refused: dict[str, bytes] = {}  # per ticker, the last bytes quarantined
        #: ``(ticker, raw, error)`` of each state quarantined since the handler last took them.
        self.quarantined: list[tuple[str, bytes, StateDecodeError]] = []

    def decode(self, ticker: str, raw: bytes | None) -> TickerState | None:
        """The state behind ``raw``, ``ticker``'s bytes in the table (None: no state yet, or none
        that decodes)."""
        if raw is None:
            return None
        known = self._known.get(ticker)
        if known is not None and known[0] == raw:
            return known[1]
        try:
            state = TickerState.from_bytes(raw)
        except StateDecodeError as error:
            if self._refused.get(ticker) != raw:
                self._refused[ticker] = bytes(raw)
                log.warning("ticker %s starts afresh: its stored state (%d bytes) is quarantined: %s",
                            ticker, len(raw), error)
                self.quarantined.append((ticker, bytes(raw), error))
            return None
        self._known[ticker] = (raw, state)
        return state

    def encode(self, ticker: str, state: TickerState) -> bytes:
        """The bytes to write for ``ticker``'s new state, remembered with it."""
        raw = state.to_bytes()
        self._known[ticker] = (raw, state)
        self._refused.pop(ticker, None)
        return raw
