"""The worker's batch logic without Kafka: rounds of step_many equal step bar by bar, and every
message ends as a result or a dead letter with its reason."""

from __future__ import annotations

import dataclasses

import orjson
import pytest

from models.core.bar import Bar
from models.core.deadletter import DETAIL_LIMIT
from models.core.step import step
from stream_app.processor import BatchProcessor, InMessage, prediction_records
from tests.core.helpers import fail_step_when, run
from tests.stream.synthetic import CONFIG, bars_of


def messages(bars: list[Bar], first_offset: int = 0) -> list[InMessage]:
    return [InMessage(b.ticker.encode(), orjson.dumps(b.to_dict()), 0, first_offset + i)
            for i, b in enumerate(bars)]


def interleave(*series: list[Bar]) -> list[Bar]:
    return sorted((b for s in series for b in s), key=lambda b: (b.date, b.ticker))


def test_batches_give_the_records_of_step_bar_by_bar() -> None:
    a, b = bars_of("AAA", 60, 10.0), bars_of("BBB", 45, 50.0)
    expected = []
    for series in (a, b):
        state = None
        for bar in series:
            result = step(state, bar, CONFIG)
            state = result.state
            expected.append(result.predictions[0])
    processor = BatchProcessor(CONFIG, clock=lambda: "now")
    stream = interleave(a, b)
    states: dict = {}
    got = []
    for start in range(0, len(stream), 17):  # batches that cut tickers' histories anywhere
        out = processor.process(messages(stream[start:start + 17], start), states)
        assert not out.dead_letters
        states.update(out.states)
        got += [r for _, r in prediction_records(out) if r["record_type"] == "prediction"]
    key = lambda r: (r["ticker"], r["as_of"])  # noqa: E731
    assert sorted(got, key=key) == sorted(expected, key=key)


@pytest.mark.parametrize(("value", "reason"), [
    (b"\xff\xfe not json", "not_json"),
    (b"[1, 2]", "not_json"),
    (b'{"ticker": "AAA", "date": "2020-03-02"}', "missing_field"),
    (b'{"ticker": "AAA", "date": "2020-03-02", "open": 1, "high": 1, "low": 1, "close": NaN, "volume": 1}',
     "not_json"),  # orjson refuses NaN literals: not valid JSON
    (b'{"ticker": "AAA", "date": "2020-03-02", "open": 1, "high": 1, "low": 1, "close": "NaN", "volume": 1}',
     "not_finite"),
    (b'{"ticker": "AAA", "date": "2020-03-02", "open": -1, "high": 1, "low": 1, "close": 1, "volume": 1}',
     "non_positive_price"),
    (b'{"ticker": "AAA", "date": "2020-02-30", "open": 1, "high": 1, "low": 1, "close": 1, "volume": 1}',
     "bad_date"),
])
def test_poison_becomes_a_dead_letter_and_the_batch_goes_on(value: bytes, reason: str) -> None:
    good = bars_of("AAA", 3, 10.0)
    batch = [*messages(good[:2]), InMessage(b"AAA", value, 3, 99), *messages(good[2:], 2)]
    out = BatchProcessor(CONFIG, clock=lambda: "now").process(batch, {})
    assert [d.reason for d in out.dead_letters] == [reason]
    letter = out.dead_letters[0]
    assert letter.source == "bars/3/99" and letter.raw == value.decode(errors="replace")
    assert [bar.date for bar, _ in out.results] == [b.date for b in good]


def test_a_bar_under_another_tickers_key_is_rejected() -> None:
    bar = bars_of("AAA", 1, 10.0)[0]
    out = BatchProcessor(CONFIG).process([InMessage(b"BBB", orjson.dumps(bar.to_dict()), 0, 0)], {})
    assert [d.reason for d in out.dead_letters] == ["bad_ticker"]
    assert not out.results and not out.states


def test_repeated_and_older_bars_leave_the_state_untouched() -> None:
    series = bars_of("AAA", 10, 10.0)
    processor = BatchProcessor(CONFIG, clock=lambda: "now")
    first = processor.process(messages(series), {})
    state = first.states["AAA"]
    again = processor.process(messages([series[9], series[3], series[9]]), {"AAA": state})
    assert [d.reason for d in again.dead_letters] == ["duplicate", "out_of_order", "duplicate"]
    assert not again.results and not again.states
    # Inside one batch too: the second copy of a bar is not applied.
    fresh = processor.process(messages([series[0], series[1], series[1]]), {})
    assert [d.reason for d in fresh.dead_letters] == ["duplicate"]
    assert [bar.date for bar, _ in fresh.results] == [series[0].date, series[1].date]


@pytest.mark.parametrize("key", [None, b"\xff", b"AAA "], ids=["none", "not-utf8", "padded"])
def test_a_bar_without_its_tickers_exact_key_is_rejected(key: bytes | None) -> None:
    # b"\xff" decodes with replacement to the bar's ticker "\ufffd": still not its key.
    bar = dataclasses.replace(bars_of("AAA", 1, 10.0)[0], ticker="AAA" if key == b"AAA " else "\ufffd")
    out = BatchProcessor(CONFIG).process([InMessage(key, orjson.dumps(bar.to_dict()), 0, 0)], {})
    assert [d.reason for d in out.dead_letters] == ["bad_ticker"]
    assert not out.results


def test_a_poison_message_of_megabytes_makes_a_dead_letter_of_kilobytes() -> None:
    # A 2.2 MB key of invalid UTF-8 gave an 11 MB detail (its repr): a dead letter the broker refused,
    # on which the worker stopped at every restart.
    message = InMessage(key=b"\xff" * 2_200_000, value=orjson.dumps(
        {"ticker": "PCR1", "date": "2024-01-02", "open": 1, "high": 1, "low": 1, "close": 1, "volume": 1}),
        partition=3, offset=13247)
    letter = BatchProcessor(CONFIG).process([message], {}).dead_letters[0]
    assert letter.reason == "bad_ticker" and letter.detail.startswith("key b'\\xff\\xff")
    said = f"key {message.key!r} is not the ticker 'PCR1'"
    assert letter.detail == f"{said[:DETAIL_LIMIT]}… (cut from {len(said):,} characters)"
    assert len(orjson.dumps(letter.to_dict())) < 3 * DETAIL_LIMIT


def test_a_bar_the_step_raises_on_is_dead_lettered_and_its_ticker_goes_on(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    # It raised out of the batch: the worker stopped, and stopped again on the same batch at every restart.
    a, b = bars_of("AAA", 40, 10.0), bars_of("BBB", 40, 50.0)
    bad = b[25]
    fail_step_when(monkeypatch, lambda batch, model: bad in batch)
    stream = interleave(a, b)
    processor = BatchProcessor(CONFIG, clock=lambda: "now")
    states: dict = {}
    got, letters = [], []
    for start in range(0, len(stream), 17):
        out = processor.process(messages(stream[start:start + 17], start), states)
        states.update(out.states)
        got += [record for _, record in prediction_records(out)]
        letters += out.dead_letters
    assert [(d.reason, d.source, d.raw) for d in letters] == [
        ("step_failed", f"bars/0/{stream.index(bad)}", orjson.dumps(bad.to_dict()).decode())]
    assert letters[0].detail.startswith(f"BBB {bad.date.isoformat()}: the forecasting step raised "
                                        "ZeroDivisionError: a bug of the core; not applied")
    assert caplog.text.count("failed on 1 bar(s) of the batch, dead-lettered as step_failed") == 1
    assert "ZeroDivisionError" in caplog.text
    # Every other bar as if the failed one had never come: BBB goes on from the state before it.
    expected = [record for result in run(a, CONFIG) + run([x for x in b if x is not bad], CONFIG)
                for record in (*result.scores, *result.predictions)]
    assert states["BBB"].last_date == b[-1].date
    assert sorted(map(orjson.dumps, got)) == sorted(map(orjson.dumps, expected))
