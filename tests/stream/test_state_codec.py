"""The worker's state codec: a state is decoded once, and only from bytes it did not write."""

from __future__ import annotations

from models.core.state import TickerState
from models.core.step import step
from stream_app.state_codec import challenger_states, ticker_states
from tests.stream.synthetic import CONFIG, bars_of


def states_of(n: int) -> list[TickerState]:
    state, states = None, []
    for bar in bars_of("AAA", n, 10.0):
        state = step(state, bar, CONFIG).state
        states.append(state)
    return states


def test_the_state_written_is_the_state_read_back() -> None:
    codec = ticker_states()
    assert codec.decode("AAA", None) is None
    state = states_of(3)[-1]
    raw = codec.encode("AAA", state)
    assert codec.decode("AAA", raw) is state
    # RocksDB hands back a copy of the bytes at every read: the same state all the same.
    assert codec.decode("AAA", bytes(bytearray(raw))) is state


def test_bytes_the_worker_did_not_write_are_decoded() -> None:
    older, newer = states_of(45)[-2:]
    codec = ticker_states()
    written = codec.encode("AAA", older)
    # Recovery from the changelog can put other bytes in the table than the worker last wrote.
    recovered = codec.decode("AAA", newer.to_bytes())
    assert recovered is not older and recovered == newer
    assert codec.decode("AAA", newer.to_bytes()) is recovered
    assert codec.decode("AAA", written) == older


def test_a_state_of_another_format_starts_the_ticker_afresh_instead_of_stopping_the_worker(caplog) -> None:
    state = states_of(3)[-1]
    older_format = b"FTS\x01" + state.to_bytes()[4:]  # as a worker before the volatility model wrote
    codec = ticker_states()
    assert codec.decode("AAA", older_format) is None
    assert "ticker AAA starts afresh" in caplog.text and "version 1" in caplog.text
    assert codec.decode("AAA", state.to_bytes()) == state


def test_a_state_stored_under_another_tickers_key_is_quarantined() -> None:
    # One flipped bit in the ticker ("AAA" -> "AAC") decodes: the step would refuse it at every batch.
    state = states_of(3)[-1]
    flipped = state.to_bytes().replace(b'"AAA"', b'"AAC"', 1)
    codec = ticker_states()
    assert codec.decode("AAA", flipped) is None
    assert [(key, raw) for key, raw, _ in codec.quarantined] == [("AAA", flipped)]
    assert "the state of 'AAC', stored under 'AAA'" in str(codec.quarantined[0][2])
    challengers = challenger_states()
    theirs = challengers.encode("AAA", {"challenger": state, "challenger-x": state})
    assert challengers.decode("AAA", theirs) == {"challenger": state, "challenger-x": state}
    assert challengers.decode("AAB", theirs) is None
    assert [key for key, _, _ in challengers.quarantined] == ["AAB"]
