"""The worker's view of its state table: a state is decoded once, and only from bytes it did not write."""

from __future__ import annotations

from models.core.state import TickerState
from models.core.step import step
from stream_app.app import TableStates
from tests.stream.test_processor import CONFIG, bars_of


def states_of(n: int) -> list[TickerState]:
    state, states = None, []
    for bar in bars_of("AAA", n, 10.0):
        state = step(state, bar, CONFIG).state
        states.append(state)
    return states


def test_the_state_written_is_the_state_read_back() -> None:
    table: dict[bytes, bytes] = {}
    view = TableStates(table)
    assert view.get("AAA") is None and len(view) == 0
    state = states_of(3)[-1]
    table[b"AAA"] = view.encode("AAA", state)
    assert view["AAA"] is state and list(view) == ["AAA"]


def test_bytes_the_worker_did_not_write_are_decoded() -> None:
    older, newer = states_of(45)[-2:]
    table: dict[bytes, bytes] = {}
    view = TableStates(table)
    table[b"AAA"] = view.encode("AAA", older)
    # Recovery from the changelog puts equal or other bytes in the table, never these objects.
    table[b"AAA"] = bytes(bytearray(newer.to_bytes()))
    recovered = view["AAA"]
    assert recovered is not older and recovered == newer and view["AAA"] is recovered
    table[b"AAA"] = bytes(bytearray(table[b"AAA"]))  # equal bytes, another object: decoded again
    assert view["AAA"] is not recovered and view["AAA"] == newer
