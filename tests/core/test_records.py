"""The records the core writes are exactly the encodings of their types, field for field and in order."""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson
import pytest

from models.backtest import run_backtest
from models.core.bar import Bar
from models.core.config import CoreConfig
from models.core.records import Prediction, Score, from_dict


def _assert_typed_encoding(cls: type[Prediction] | type[Score], record: dict[str, Any]) -> None:
    encoded = from_dict(cls, record).to_dict()
    assert encoded == record
    assert list(encoded) == list(record)  # the field order consumers and the stream tests see
    assert orjson.dumps(encoded) == orjson.dumps(record)  # so the same bytes on the topic


@pytest.mark.parametrize("config", [
    CoreConfig(model="arima", window=60, refit_every=10,
               interval_levels=(0.5, 0.8, 0.975)),
    CoreConfig(model="naive"),
], ids=["arima-three-levels", "naive"])
def test_every_record_the_core_writes_is_the_encoding_of_its_type(by_ticker: dict[str, list[Bar]],
                                                                   config: CoreConfig) -> None:
    bars = sorted((bar for ticker in ("XRX", "AAPL", "GE") for bar in by_ticker[ticker][:120]),
                  key=lambda bar: (bar.date, bar.ticker))
    result = run_backtest(bars, config)
    assert len(result.predictions) == 360 and len(result.scores) == 357
    for record in result.predictions:
        _assert_typed_encoding(Prediction, record)
    for record in result.scores:
        _assert_typed_encoding(Score, record)
    last = from_dict(Prediction, result.predictions[-1])
    assert last.level_labels == tuple(f"{level * 100:g}" for level in config.interval_levels)
    assert last.as_of == bars[-1].date and last.lower[0] < last.predicted_close < last.upper[0]


def test_the_worker_s_produced_at_is_part_of_the_type(by_ticker: dict[str, list[Bar]]) -> None:
    prediction = run_backtest(by_ticker["GE"][:3], CoreConfig(model="naive")).predictions[-1]
    stamped = {**prediction, "produced_at": "2026-01-02T03:04:05.000+00:00"}
    _assert_typed_encoding(Prediction, stamped)
    assert from_dict(Prediction, prediction).produced_at is None


def test_a_record_off_its_type_is_refused_with_the_field_named(by_ticker: dict[str, list[Bar]]) -> None:
    result = run_backtest(by_ticker["GE"][:3], CoreConfig(model="naive"))
    prediction, score = result.predictions[-1], result.scores[-1]
    with pytest.raises(ValueError, match="prediction record lacks sigma"):
        from_dict(Prediction, {k: v for k, v in prediction.items() if k != "sigma"})
    with pytest.raises(ValueError, match="unknown fields extra"):
        from_dict(Prediction, {**prediction, "extra": 1.0})
    with pytest.raises(ValueError, match="score field actual_close: expected float, got int 10"):
        from_dict(Score, {**score, "actual_close": 10})
    with pytest.raises(ValueError, match="score field inside_95: expected bool"):
        from_dict(Score, {**score, "inside_95": 1.0})
    with pytest.raises(ValueError, match="prediction field as_of: expected date"):
        from_dict(Prediction, {**prediction, "as_of": "2024-13-01"})
    with pytest.raises(ValueError, match="score record has record_type 'prediction'"):
        from_dict(Score, prediction)
    assert from_dict(Score, score).as_of == dt.date.fromisoformat(score["as_of"])
