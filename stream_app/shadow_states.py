"""The challengers' states of one ticker, as one value of the worker's table.

A ticker's challengers keep their states in one record of the champion's table (key
:func:`shadow_key`), rewritten with the states of the challengers that ran: the state of a
challenger that no longer runs leaves the record the next time its ticker is stepped. With a record
per challenger and ticker, every alias ever run left one state per ticker in the table and its
compacted changelog, which a restart reads back.

The bytes are a fixed header (magic, :data:`VERSION`, the length of the rest of the header), an
orjson list of ``[alias, length]`` pairs, then each challenger's :meth:`TickerState.to_bytes` in
that order. Bytes that are no such record raise :class:`~models.core.state.StateDecodeError`.

Examples
--------
>>> import dataclasses
>>> state = dataclasses.replace(TickerState.empty("MSFT", feature_width=6, volatility_horizons=3),
...                             last_close=27.55, last_volume=33318306.0)  # as after a first bar
>>> states = {"challenger": state, "challenger-x": state}
>>> decode(encode(states)) == states
True
>>> decode(encode({"challenger": state})[:-8])  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
models.core.state.StateDecodeError: challenger states corrupted: ... bytes announced, ... found
"""

from __future__ import annotations

import struct
from collections.abc import Mapping

import orjson

from models.core.state import StateDecodeError, StateVersionError, TickerState

#: Format version of :func:`encode`.
VERSION = 1
_MAGIC = b"FSS"
_HEADER = struct.Struct("<3sBI")  # magic, version, length of the orjson part
#: The prefix of the keys of the challengers' records. A ticker's own record is keyed by the ticker's
#: UTF-8 bytes, which never hold the byte 0xff: no ticker's key can be a challenger record's, and
#: a message under such a key names no ticker (``stream_app.batch``), so it reads none.
KEY_PREFIX = b"\xffshadow/"


def shadow_key(ticker: str) -> bytes:
    """The table key of ``ticker``'s challenger states.

    >>> shadow_key("MSFT")
    b'\\xffshadow/MSFT'
    """
    return KEY_PREFIX + ticker.encode()


def encode(states: Mapping[str, TickerState]) -> bytes:
    """One ticker's states by alias, as bytes :func:`decode` reads back."""
    blobs = [state.to_bytes() for state in states.values()]
    meta = orjson.dumps([[alias, len(blob)] for alias, blob in zip(states, blobs, strict=True)])
    return b"".join([_HEADER.pack(_MAGIC, VERSION, len(meta)), meta, *blobs])


def decode(raw: bytes) -> dict[str, TickerState]:
    """The states by alias that :func:`encode` wrote.

    Raises
    ------
    StateVersionError
        The bytes are not challenger states, or of another format version.
    StateDecodeError
        They are, but cut short or corrupted (a state of them included).
    """
    if len(raw) < _HEADER.size or raw[:3] != _MAGIC:
        raise StateVersionError("these bytes are not challenger states (bad magic)")
    _, version, meta_size = _HEADER.unpack_from(raw)
    if version != VERSION:
        raise StateVersionError(f"challenger states format version {version} is not supported (this code "
                                f"reads version {VERSION})")
    start = _HEADER.size + meta_size
    try:
        pairs = orjson.loads(raw[_HEADER.size : start])
        sizes = {alias: size for alias, size in pairs}
    except (ValueError, TypeError) as error:  # orjson's JSONDecodeError is a ValueError
        raise StateDecodeError(f"challenger states corrupted: {type(error).__name__}: {error}") from error
    if not all(type(alias) is str and type(size) is int and size >= 0 for alias, size in sizes.items()):
        raise StateDecodeError("challenger states corrupted: their header is not aliases and lengths")
    if start + sum(sizes.values()) != len(raw):
        raise StateDecodeError(f"challenger states corrupted: {start + sum(sizes.values())} bytes announced, "
                               f"{len(raw)} found")
    states = {}
    for alias, size in sizes.items():
        states[alias] = TickerState.from_bytes(raw[start : start + size])
        start += size
    return states
