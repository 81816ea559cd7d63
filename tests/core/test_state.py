"""The ticker state: a compact, versioned value that steps never change."""

from __future__ import annotations

import dataclasses
import datetime as dt
import gc
import math
import struct
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson
import pytest

from models.core.bar import Bar
from models.core.config import CoreConfig
from models.core.features import FEATURE_NAMES
from models.core.state import (
    HORIZON,
    MODEL_VERSION,
    VERSION,
    LastPrediction,
    StateDecodeError,
    StateVersionError,
    TickerState,
)
from models.core.step import OutOfOrderBar, StepResult, step
from tests.core.helpers import run

CONFIG = CoreConfig(model="arima", window=60, refit_every=10)


def _results(bars: list[Bar]) -> list[StepResult]:
    return run(bars, CONFIG)


def test_round_trip_is_exact_at_every_stage(by_ticker: dict[str, list[Bar]]) -> None:
    results = _results(by_ticker["JPM"][:120])
    for result in (results[0], results[30], results[59], results[-1]):  # new, warm-up, first fit, later
        state = result.state
        copy = TickerState.from_bytes(state.to_bytes())
        assert copy == state
        assert copy.to_bytes() == state.to_bytes()
    assert results[-1].state.arima_params is not None and len(results[-1].state.pending) == 1


def test_arrays_of_any_layout_or_float_type_are_written_as_their_float64_values(
        by_ticker: dict[str, list[Bar]]) -> None:
    # The states steps make hold C-ordered float64 arrays, written from their own buffers; any other
    # array is written as its values converted, the same bytes as its C-ordered float64 copy.
    state = _results(by_ticker["JPM"][:120])[-1].state
    odd = dataclasses.replace(
        state, log_closes=state.log_closes.astype(">f8"), features=np.asfortranarray(state.features),
        variance_ewmas=np.repeat(state.variance_ewmas, 2)[::2],
        arima_cov=np.asarray(state.arima_cov, dtype=np.float32))
    plain = dataclasses.replace(odd, **{f.name: np.ascontiguousarray(getattr(odd, f.name), dtype=np.float64)
                                        for f in dataclasses.fields(odd)
                                        if isinstance(getattr(odd, f.name), np.ndarray)})
    assert not odd.features.flags.c_contiguous and not odd.variance_ewmas.flags.c_contiguous
    assert odd.to_bytes() == plain.to_bytes()
    assert TickerState.from_bytes(odd.to_bytes()) == plain


def test_a_restored_state_continues_exactly_like_the_original(by_ticker: dict[str, list[Bar]]) -> None:
    bars = by_ticker["JPM"][:150]
    results = _results(bars)
    restored = TickerState.from_bytes(results[99].state.to_bytes())
    again = step(restored, bars[100], CONFIG)
    assert again.predictions == results[100].predictions and again.scores == results[100].scores
    assert again.state == results[100].state


def test_pending_predictions_are_plain_tuples_the_collector_lets_go(by_ticker: dict[str, list[Bar]]) -> None:
    # A tuple subclass (LastPrediction) stays tracked and is traversed at every pass of its
    # generation while it waits; a plain tuple of plain values is untracked by a pass that finds its
    # inner tuples (the bounds) untracked already: by the second.
    config = CoreConfig(model="arima", window=60, refit_every=10, horizons=(1, 5, 20))
    state = run(by_ticker["JPM"][:100], config)[-1].state
    for pending in (state.pending, TickerState.from_bytes(state.to_bytes()).pending):
        assert len(pending) == 26 and all(type(p) is tuple for p in pending)
        gc.collect()
        gc.collect()
        assert not any(gc.is_tracked(p) for p in pending)
    fields = LastPrediction._fields
    assert (fields[HORIZON], fields[MODEL_VERSION]) == ("horizon", "model_version")
    assert [p.horizon for p in state.pending_predictions()] == [p[HORIZON] for p in state.pending]


def test_default_state_is_compact(by_ticker: dict[str, list[Bar]]) -> None:
    state = run(by_ticker["JPM"][:300], CoreConfig())[-1].state
    # 252 log closes and 32 feature rows as raw float64, and under a kilobyte more.
    assert len(state.to_bytes()) < (252 + 32 * len(FEATURE_NAMES)) * 8 + 1024


def test_floats_json_has_no_number_for_round_trip() -> None:
    # Valid bars near the float's limit: intervals past the float range (infinite upper bounds) wait
    # in the state to be scored. Written as null they came back None, and the next bar's scoring
    # raised: a worker restarted from its changelog would have stopped on that ticker at every start.
    config, state, restored = CoreConfig(model="naive"), None, None
    day, close = dt.date(2024, 1, 1), 1e307
    for k in range(6):
        close *= 3.0 if k % 2 == 0 else 1 / 3
        bar = Bar("HUGE", day + dt.timedelta(days=k), close, close * 1.4, close * 0.5, close * 1.3, 10.0)
        result, again = step(state, bar, config), step(restored, bar, config)
        assert repr(again.scores) == repr(result.scores)  # NaN and infinity alike, no None
        state = result.state
        restored = TickerState.from_bytes(state.to_bytes())
        assert restored == state and repr(restored.pending) == repr(state.pending)
    assert math.isinf(state.pending[0][8][-1])
    empty = TickerState.empty("HUGE", len(FEATURE_NAMES), 2)  # NaN closes before the first bar
    assert TickerState.from_bytes(empty.to_bytes()) == empty


def test_fields_of_the_wrong_type_or_shape_are_refused_as_undecodable(
        by_ticker: dict[str, list[Bar]]) -> None:
    # Bytes of the right layout whose fields no step can take are refused (the worker quarantines
    # them), not handed on to fail in the next step, again after every restart.
    state = _results(by_ticker["JPM"][:80])[-1].state
    assert state.arima_cov is not None

    def edited(change: Callable[[dict[str, Any]], None]) -> bytes:
        data = state.to_bytes()
        head = struct.Struct("<3sBI")
        _, version, size = head.unpack_from(data)
        fields = orjson.loads(data[head.size : head.size + size])
        change(fields)
        meta = orjson.dumps(fields)
        return head.pack(b"FTS", version, len(meta)) + meta + data[head.size + size :]

    assert TickerState.from_bytes(edited(lambda fields: None)) == state
    changes: dict[str, Callable[[dict[str, Any]], None]] = {
        "a count as text": lambda fields: fields.update(bars="80"),
        "a close as null (a NaN one, as written before)": lambda fields: fields.update(last_close=None),
        "a bound as null": lambda fields: fields["pending"][0][8].__setitem__(-1, None),
        "a word that is no float": lambda fields: fields["pending"][0].__setitem__(3, "big"),
        "a pending prediction's flag as a number": lambda fields: fields["pending"][0].__setitem__(11, 1),
        "a window of two dimensions": lambda fields: fields.update(log_closes=[30, 2]),
        "offsets for two horizons": lambda fields: fields.update(interval_offsets=[2, 1]),
        "a covariance not square": lambda fields: fields.update(arima_cov=[1, 4]),
        "horizons as text": lambda fields: fields.update(horizons=["1"]),
        "an ARIMA order of two numbers": lambda fields: fields.update(arima_order=[2, 1]),
        "an ARIMA order as text": lambda fields: fields.update(arima_order="2,1,0"),
        # Found by fuzzing (each decoded, or raised another error, and then stopped the worker's step):
        "a negative size (the rest of the bytes, shared with the next array)":
            lambda fields: fields.update(log_closes=[-1]),
        "a size past the 64-bit range": lambda fields: fields.update(residuals=[-(2**63)]),
        "a size as text (a product of gigabytes)": lambda fields: fields.update(residuals=[10**8, "x"]),
        "an ARIMA order its arrays are not": lambda fields: fields.update(arima_order=[1, 1, 0]),
        "a last close of zero": lambda fields: fields.update(last_close=0.0),
        "a last close that is infinite": lambda fields: fields.update(last_close="inf"),
        "a negative count": lambda fields: fields.update(bars=-1),
        "a pending prediction with no levels":
            lambda fields: fields["pending"][0].__setitem__(slice(6, 9), [[], [], []]),
        "levels as an object": lambda fields: fields["pending"][0].__setitem__(6, {"inf": 1, "nan": 2}),
        "a pending prediction of a horizon the state has not":
            lambda fields: fields["pending"][0].__setitem__(1, 5),
        "a pending prediction after the last bar":
            lambda fields: fields["pending"][0].__setitem__(0, "2100-01-01"),
        # Found by fuzzing the worker's handler: read, stepped, and the state with its + 1 not written.
        "a count that the step's + 1 takes past 64 bits": lambda fields: fields.update(bars=2**64 - 1),
        "a count of refits since the last past 2**53": lambda fields: fields.update(since_refit=2**53 + 1),
    }
    for what, change in changes.items():
        with pytest.raises(StateDecodeError, match="corrupted"):
            TickerState.from_bytes(edited(change))
            pytest.fail(what)
    arrays: dict[str, dict[str, Any]] = {
        "an infinite volatility mean": {"variance_ewmas": np.array([np.inf, 1e-4])},
        "a negative calibration weight": {"residual_weight": -state.residual_weight},
        "a NaN in the window": {"log_closes": np.r_[state.log_closes[:-1], np.nan]},
        "a NaN in the ARIMA's state": {"arima_state": np.full_like(state.arima_state, np.nan)},
    }
    for what, change in arrays.items():
        with pytest.raises(StateDecodeError, match="not a finite number"):
            TickerState.from_bytes(dataclasses.replace(state, **change).to_bytes())
            pytest.fail(what)


def test_a_state_read_from_a_mutable_buffer_does_not_change_with_it(by_ticker: dict[str, list[Bar]]) -> None:
    state = _results(by_ticker["JPM"][:30])[-1].state
    buffer = bytearray(state.to_bytes())
    read = TickerState.from_bytes(buffer)
    buffer[:] = bytes(len(buffer))
    assert read == state and not read.log_closes.flags.writeable


def test_a_state_of_another_volatility_model_or_feature_set_starts_afresh(
        by_ticker: dict[str, list[Bar]]) -> None:
    # Its arrays would not broadcast with this configuration's: the step would fail at every bar.
    bars = by_ticker["JPM"][:81]
    state = _results(bars[:80])[-1].state
    fresh = step(None, bars[80], CONFIG)
    for odd in (dataclasses.replace(state, variance_ewmas=np.zeros(3)),
                dataclasses.replace(state, features=np.zeros((4, len(FEATURE_NAMES) - 1)))):
        again = step(odd, bars[80], CONFIG)
        assert again.predictions == fresh.predictions and again.state == fresh.state


def test_a_version_4_state_keeps_its_arima_where_the_configured_order_fits_it(
        by_ticker: dict[str, list[Bar]]) -> None:
    # Version 4 did not record the ARIMA order. Its arrays' sizes are all there is to go by: a state
    # that has the configured order's continues as before the upgrade, one that has not refits.
    bars = by_ticker["JPM"][:101]
    results = _results(bars)
    data = results[99].state.to_bytes()
    head = struct.Struct("<3sBI")
    size = head.unpack_from(data)[2]
    fields = orjson.loads(data[head.size : head.size + size])
    del fields["arima_order"]
    meta = orjson.dumps(fields)
    old = TickerState.from_bytes(head.pack(b"FTS", 4, len(meta)) + meta + data[head.size + size :])
    assert old == dataclasses.replace(results[99].state, arima_order=None)
    again = step(old, bars[100], CONFIG)
    assert again.refit is None and again.predictions == results[100].predictions
    assert again.state == results[100].state
    other = step(old, bars[100], dataclasses.replace(CONFIG, order=(3, 1, 0)))
    assert other.refit == "ok" and other.state.arima_order == (3, 1, 0)


def test_other_versions_and_foreign_bytes_are_refused(by_ticker: dict[str, list[Bar]]) -> None:
    data = _results(by_ticker["JPM"][:5])[-1].state.to_bytes()
    newer = data[:3] + struct.pack("<B", VERSION + 1) + data[4:]
    with pytest.raises(StateVersionError, match=f"version {VERSION + 1} is not supported"):
        TickerState.from_bytes(newer)
    with pytest.raises(StateVersionError, match="not a ticker state"):
        TickerState.from_bytes(b'{"ticker": "JPM"}')


def test_step_leaves_its_input_state_untouched(by_ticker: dict[str, list[Bar]]) -> None:
    bars = by_ticker["JPM"][:80]
    results = _results(bars)
    before = results[70].state
    snapshot = before.to_bytes()
    step(before, bars[71], CONFIG)
    with pytest.raises(OutOfOrderBar) as refused:
        step(before, bars[70], CONFIG)
    assert refused.value.reason == "out_of_order"
    assert before.to_bytes() == snapshot
    with pytest.raises(ValueError, match="read-only"):
        before.log_closes[0] = 0.0
    assert not np.shares_memory(results[71].state.log_closes, before.log_closes)


def test_truncated_garbage_and_wrong_type_bytes_are_refused_as_undecodable(
        by_ticker: dict[str, list[Bar]]) -> None:
    data = _results(by_ticker["JPM"][:40])[-1].state.to_bytes()
    assert issubclass(StateVersionError, StateDecodeError)  # one family: the worker quarantines it
    for cut in (len(data) - 1, len(data) - 8, 12, 8, 3, 0):
        with pytest.raises(StateDecodeError, match=r"cut short|not a ticker state"):
            TickerState.from_bytes(data[:cut])
    with pytest.raises(StateDecodeError, match="after its last array"):
        TickerState.from_bytes(data + b"\x00" * 8)
    header = struct.Struct("<3sBI")
    garbage_fields = b"\x8f{not json"
    with pytest.raises(StateDecodeError, match="corrupted: JSONDecodeError"):
        TickerState.from_bytes(header.pack(b"FTS", VERSION, len(garbage_fields)) + garbage_fields)
    wrong_fields = b'{"ticker": "JPM"}'
    with pytest.raises(StateDecodeError, match="not those of a ticker state"):
        TickerState.from_bytes(header.pack(b"FTS", VERSION, len(wrong_fields)) + wrong_fields)
    with pytest.raises(StateDecodeError, match="bytes, not str"):
        TickerState.from_bytes("FTS")  # type: ignore[arg-type]
    rng = np.random.default_rng(7)
    for _ in range(200):  # random bytes behind a valid header never decode, never raise anything else
        noise = rng.bytes(int(rng.integers(0, 300)))
        size = int(rng.integers(0, 400))
        with pytest.raises(StateDecodeError):
            TickerState.from_bytes(header.pack(b"FTS", VERSION, size) + noise)
