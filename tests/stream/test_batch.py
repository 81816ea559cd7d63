"""The batch handler (admit -> process -> send -> write) without a broker: a fake sender, fake
tables and a fake consumer around the worker's real parts."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import datetime as dt
from collections.abc import Iterable

import orjson
import pytest
from faust.types import TP
from hypothesis import example, given, settings
from hypothesis import strategies as st

from models import registry
from models.core.config import CoreConfig
from models.core.state import TickerState
from stream_app.batch import record_encoder
from stream_app.metrics import WorkerMetrics
from stream_app.model_holder import ModelHolder
from stream_app.monitor import ForecastMonitor
from stream_app.processor import BatchProcessor
from tests.stream.fake_faust import event
from tests.stream.handler_fakes import DAY, Record, Worker, bar_event, bar_record


def kinds(records: list[Record]) -> list[tuple[str, bytes | None, str, str]]:
    """``(topic, key, record_type or reason, as_of or source)`` of each record sent."""
    out = []
    for topic, key, value in records:
        record = orjson.loads(value)
        out.append((topic, key, record.get("record_type", record.get("reason")),
                    record.get("as_of", record.get("source"))))
    return out


def test_a_batch_is_sent_then_its_states_and_positions_written(worker: Worker) -> None:
    handler = worker.handler()
    sent = worker.handle(handler, [bar_event("AAA", 0, 0, 0), bar_event("BBB", 0, 1, 0),
                                   bar_event("AAA", 1, 0, 1, close=11.0)])
    predictions = worker.settings.topic_predictions
    # In rounds (each ticker's k-th bar together); a bar's score before its own prediction.
    assert kinds(sent) == [(predictions, b"AAA", "prediction", "2024-01-02"),
                           (predictions, b"BBB", "prediction", "2024-01-02"),
                           (predictions, b"AAA", "score", "2024-01-02"),
                           (predictions, b"AAA", "prediction", "2024-01-03")]
    assert all("produced_at" in orjson.loads(value) for _, _, value in sent)
    assert worker.sender.writes_before_delivery == [0]  # nothing written before the outputs are out
    assert TickerState.from_bytes(worker.states[b"AAA"]).last_date == DAY + dt.timedelta(days=1)
    assert TickerState.from_bytes(worker.states[b"BBB"]).last_date == DAY
    assert worker.positions == {b"bars/0": b"2", b"bars/1": b"1"}


FIELD_NAMES = st.one_of(st.sampled_from(("produced_at", "record_type", "ticker", "")), st.text(max_size=4))
VALUES = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False),
                   st.text(max_size=6), st.lists(st.floats(allow_nan=False), max_size=2))


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(record=st.dictionaries(FIELD_NAMES, VALUES, max_size=6),
       extra=st.dictionaries(FIELD_NAMES, VALUES, max_size=2))
@example(record={"record_type": "score", "as_of": "2024-01-02"},
         extra={"produced_at": "2024-01-02T00:00:00.000+00:00"})
@example(record={}, extra={"produced_at": "now"})
@example(record={"produced_at": "then", "b": 1}, extra={"produced_at": "now"})
@example(record={"a": 1}, extra={})
def test_a_record_is_sent_as_the_json_of_its_fields_then_the_workers(record: dict, extra: dict) -> None:
    assert record_encoder(extra)(record) == orjson.dumps({**record, **extra})


def test_states_and_positions_are_read_and_written_under_their_own_partitions_event(worker: Worker) -> None:
    # After take_events the stream's current event is the batch's last (BBB's, partition 1): a
    # store left to it would put AAA's state and partition 0's position in partition 1.
    first, last = bar_event("AAA", 0, 0, 0), bar_event("BBB", 0, 1, 0)
    worker.handle(worker.handler(), [first, last])
    assert worker.states.reads == [(b"AAA", 0), (b"BBB", 1)]
    assert worker.states.writes == [(b"AAA", 0), (b"BBB", 1)]
    assert worker.positions.reads == [(b"bars/0", 0), (b"bars/1", 1)]
    assert worker.positions.writes == [(b"bars/0", 0), (b"bars/1", 1)]
    assert worker.stream.current_event is last


def test_the_states_changelog_records_go_to_their_events_partitions_before_the_positions(
        worker: Worker) -> None:
    # The worker sends the states' changelog itself (one record batch per partition): each to the
    # partition Faust would have used, after the outputs, and delivered before any position.
    worker.handle(worker.handler(), [bar_event("AAA", 0, 0, 0), bar_event("BBB", 0, 1, 0),
                                     bar_event("AAA", 1, 0, 1)])
    changelog = worker.states.changelog_topic.get_topic_name()
    assert [(topic, partition, key) for topic, partition, key, _ in worker.sender.placed[0]] == [
        (changelog, 0, b"AAA"), (changelog, 1, b"BBB")]
    assert [value for *_, value in worker.sender.placed[0]] == [worker.states[b"AAA"], worker.states[b"BBB"]]
    assert worker.states.persisted == {TP(changelog, 0): 0, TP(changelog, 1): 0}
    assert worker.positions == {b"bars/0": b"2", b"bars/1": b"1"}


def test_no_position_moves_when_the_states_changelog_is_not_delivered(worker: Worker) -> None:
    handler = worker.handler()
    sender = worker.sender

    async def fail_placed(records: Iterable[tuple[str, int, bytes | None, bytes]]) -> dict:
        raise ConnectionError("delivery failed")

    sender.send_placed = fail_placed  # type: ignore[method-assign]
    with pytest.raises(ConnectionError):
        worker.handle(handler, [bar_event("AAA", 0, 0, 0)])
    assert worker.positions == {}


def test_a_redelivered_bar_is_skipped_even_by_a_restarted_worker(worker: Worker) -> None:
    worker.handle(worker.handler(), [bar_event("AAA", 0, 0, 0), bar_event("AAA", 1, 0, 1)])
    restarted = worker.handler()  # a crash after the writes: the bars come again from offset 1
    sent = worker.handle(restarted, [bar_event("AAA", 1, 0, 1), bar_event("AAA", 2, 0, 2)])
    assert [as_of for _, _, kind, as_of in kinds(sent) if kind == "prediction"] == ["2024-01-04"]
    assert worker.metrics.redelivered._value.get() == 1
    assert worker.positions[b"bars/0"] == b"3"
    assert TickerState.from_bytes(worker.states[b"AAA"]).last_date == DAY + dt.timedelta(days=2)


def test_a_batch_whose_delivery_fails_writes_nothing_and_comes_again_whole(worker: Worker) -> None:
    batch = [bar_event("AAA", 0, 0, 0), bar_event("BBB", 0, 1, 0)]
    worker.sender.fail = True
    with pytest.raises(ConnectionError):
        worker.handle(worker.handler(), batch)
    assert worker.states == {} and worker.positions == {}
    worker.sender.fail = False
    sent = worker.handle(worker.handler(), batch)  # after the restart
    assert [(key, kind) for _, key, kind, _ in kinds(sent)] == [(b"AAA", "prediction"),
                                                                 (b"BBB", "prediction")]


def test_a_poison_message_is_dead_lettered_and_the_batch_goes_on(worker: Worker) -> None:
    negative = orjson.dumps({**bar_record("AAA", 1), "close": -1.0})
    sent = worker.handle(worker.handler(), [event(b"AAA", b"{not json", 0, 0), event(b"AAA", negative, 0, 1),
                                            bar_event("BBB", 0, 1, 0)])
    dlq, predictions = worker.settings.topic_dlq, worker.settings.topic_predictions
    kind = kinds(sent)
    assert kind[0] == (predictions, b"BBB", "prediction", "2024-01-02")
    # Keyed by the ticker the raw message names, when it names one (a ticker's rejects in order).
    assert kind[1][:2] == (dlq, None) and kind[1][3] == "bars/0/0"
    assert kind[2][:2] == (dlq, b"AAA") and kind[2][3] == "bars/0/1"
    assert kind[1][2] == "not_json"
    # Handled, not retried: the position moves past the poison, no state is made of it.
    assert worker.positions == {b"bars/0": b"2", b"bars/1": b"1"}
    assert b"AAA" not in worker.states


def test_offsets_skipped_by_the_consumer_are_not_handled_but_sought_back(worker: Worker) -> None:
    worker.handle(worker.handler(), [bar_event("AAA", 0, 0, 0)])
    handler = worker.handler()
    sent = worker.handle(handler, [bar_event("AAA", 2, 0, 2), bar_event("BBB", 0, 1, 0)])
    assert [key for _, key, _ in sent] == [b"BBB"]  # partition 0 waits for offset 1
    assert worker.consumer.seeks == [{TP("bars", 0): 1}]
    assert worker.positions[b"bars/0"] == b"1" and worker.metrics.rewinds._value.get() == 1
    assert handler.busy is False


def test_a_partitions_first_offsets_skipped_before_any_was_handled_are_sought_back(worker: Worker) -> None:
    # No position yet: the partition starts at its first offset on the broker (0), not at the first
    # message the consumer happens to hand over.
    handler = worker.handler()
    sent = worker.handle(handler, [bar_event("AAA", 3, 0, 3), bar_event("BBB", 0, 1, 0)])
    assert [key for _, key, _ in sent] == [b"BBB"]
    assert worker.consumer.seeks == [{TP("bars", 0): 0}]
    assert b"bars/0" not in worker.positions


def test_a_copy_of_the_message_met_fetched_before_the_seek_is_not_taken_for_an_empty_range(
        worker: Worker) -> None:
    # Faust's own seek to the committed offsets leaves a second copy of offset 3 in its pipeline:
    # it comes after the seek back to 1 as the message that seek met would, though 1 and 2 hold
    # bars. Passing them once lost a quarantined position's re-read in CI.
    worker.handle(worker.handler(), [bar_event("AAA", 0, 0, 0)])
    handler = worker.handler()
    worker.handle(handler, [bar_event("AAA", 3, 0, 3), bar_event("BBB", 0, 1, 0)])
    sent = worker.handle(handler, [bar_event("AAA", 3, 0, 3), bar_event("BBB", 1, 1, 1)])
    assert {key for _, key, _ in sent} == {b"BBB"}
    assert worker.consumer.seeks == [{TP("bars", 0): 1}, {TP("bars", 0): 1}]
    sent = worker.handle(handler, [bar_event("AAA", day, 0, day) for day in (1, 2, 3)])
    assert [as_of for _, _, kind, as_of in kinds(sent) if kind == "prediction"] == [
        "2024-01-03", "2024-01-04", "2024-01-05"]
    assert worker.positions[b"bars/0"] == b"4"


def test_offsets_the_broker_holds_no_message_at_are_passed_once_met_again(worker: Worker) -> None:
    worker.consumer.stored[TP("bars", 0)] = [0, 3]  # 1 and 2: transaction markers
    worker.handle(worker.handler(), [bar_event("AAA", 0, 0, 0)])
    handler = worker.handler()
    worker.handle(handler, [bar_event("AAA", 3, 0, 3), bar_event("BBB", 0, 1, 0)])
    sent = worker.handle(handler, [bar_event("AAA", 3, 0, 3)])
    assert [as_of for _, _, kind, as_of in kinds(sent) if kind == "prediction"] == ["2024-01-05"]
    assert worker.consumer.seeks == [{TP("bars", 0): 1}]
    assert worker.positions[b"bars/0"] == b"4"


def test_without_the_brokers_first_offset_the_first_message_met_starts_the_partition(worker: Worker) -> None:
    worker.consumer.broker_down = True  # the sends go elsewhere (a fake sender): only the lookup fails
    sent = worker.handle(worker.handler(), [bar_event("AAA", 3, 0, 3)])
    assert [key for _, key, _ in sent] == [b"AAA"] and worker.consumer.seeks == []
    assert worker.positions[b"bars/0"] == b"4"


def quarantined(metrics: WorkerMetrics, kind: str) -> float | None:
    return metrics.registry.get_sample_value("forecaster_quarantined_total", {"kind": kind})


@pytest.mark.parametrize("stored", [pytest.param("truncated", id="truncated"),
                                    pytest.param(b"\x00\xffgarbage\x9c", id="garbage")])
def test_a_state_that_does_not_decode_is_quarantined_and_the_ticker_starts_afresh(
        worker: Worker, stored: str | bytes) -> None:
    worker.handle(worker.handler(), [bar_event("AAA", 0, 0, 0), bar_event("AAA", 1, 0, 1)])
    raw = worker.states[b"AAA"][:-5] if stored == "truncated" else stored
    assert isinstance(raw, bytes)
    worker.states[b"AAA"] = raw  # as recovered from a corrupted changelog record
    restarted = worker.handler()  # the same record comes back at every restart: never a crash loop
    sent = worker.handle(restarted, [bar_event("AAA", 5, 0, 2), bar_event("AAA", 6, 0, 3)])
    dlq = worker.settings.topic_dlq
    letters = [orjson.loads(value) for topic, _, value in sent if topic == dlq]
    assert [(letter["reason"], letter["ticker"], letter["source"]) for letter in letters] == [
        ("corrupt_state", "AAA", "app-states-changelog/0")]
    assert base64.b64decode(letters[0]["raw"]) == raw and "starts afresh" in letters[0]["detail"]
    assert [key for topic, key, _ in sent if topic == dlq] == [b"AAA"]
    # Afresh: the first prediction of the new state is a warm-up one with nothing to score.
    predictions = [orjson.loads(value) for topic, _, value in sent if topic != dlq]
    assert [(p["record_type"], p["as_of"]) for p in predictions] == [
        ("prediction", "2024-01-07"), ("score", "2024-01-07"), ("prediction", "2024-01-08")]
    assert TickerState.from_bytes(worker.states[b"AAA"]).bars == 2
    assert quarantined(worker.metrics, "state") == 1 and quarantined(worker.metrics, "position") == 0
    assert worker.metrics.registry.get_sample_value("forecaster_dead_letters_total",
                                                    {"reason": "corrupt_state"}) == 1


def test_a_state_quarantined_is_dead_lettered_once_while_its_bytes_stay(worker: Worker) -> None:
    worker.states[b"AAA"] = b"FTS\x03\xff\xff\xff\x7f"  # the header announces more than there is
    handler = worker.handler()
    # Batches that apply no bar of AAA (poison here) leave its stored bytes as they are.
    first = worker.handle(handler, [event(b"AAA", b"{not json", 0, 0)])
    assert [kind for _, _, kind, _ in kinds(first)] == ["not_json", "corrupt_state"]
    again = worker.handle(handler, [event(b"AAA", b"{not json either", 0, 1)])
    assert [kind for _, _, kind, _ in kinds(again)] == ["not_json"]
    fresh = worker.handle(handler, [bar_event("AAA", 0, 0, 2)])
    assert [kind for _, _, kind, _ in kinds(fresh)] == ["prediction"]
    assert TickerState.from_bytes(worker.states[b"AAA"]).bars == 1
    assert quarantined(worker.metrics, "state") == 1


@pytest.mark.parametrize("stored", [pytest.param(b"", id="truncated"),
                                    pytest.param(b"\x8b\x00garbage", id="garbage")])
def test_a_position_that_does_not_decode_is_quarantined_and_its_partition_read_from_its_start(
        worker: Worker, stored: bytes) -> None:
    worker.handle(worker.handler(), [bar_event("AAA", 0, 0, 0), bar_event("AAA", 1, 0, 1)])
    worker.positions[b"bars/0"] = stored
    restarted = worker.handler()
    # The consumer resumes at offset 2 (its committed offset): without a position the partition
    # starts at its first offset on the broker, so it is sought back there, nothing skipped.
    sent = worker.handle(restarted, [bar_event("AAA", 2, 0, 2)])
    dlq = worker.settings.topic_dlq
    assert [(topic, key) for topic, key, _ in sent] == [(dlq, None)]
    letter = orjson.loads(sent[0][2])
    assert (letter["reason"], letter["source"]) == ("corrupt_position", "app-positions-changelog/0")
    assert base64.b64decode(letter["raw"]) == stored and "first offset" in letter["detail"]
    assert worker.consumer.seeks == [{TP("bars", 0): 0}]
    assert quarantined(worker.metrics, "position") == 1
    # Read again from offset 0: the bars handled before are refused by the state, none applied twice,
    # and the next one is handled; the position is whole again.
    sent = worker.handle(restarted, [bar_event("AAA", 0, 0, 0), bar_event("AAA", 1, 0, 1),
                                     bar_event("AAA", 2, 0, 2)])
    assert [kind for _, _, kind, _ in kinds(sent)] == ["score", "prediction", "out_of_order", "duplicate"]
    assert worker.positions[b"bars/0"] == b"3"
    assert quarantined(worker.metrics, "position") == 1


def test_the_consumer_lag_is_exported_from_a_partitions_first_batch(worker: Worker) -> None:
    worker.consumer.fetched[TP("bars", 1)] = None  # not fetched yet: left to the lag timer
    worker.handle(worker.handler(), [bar_event("AAA", 0, 0, 0), bar_event("AAA", 1, 0, 1),
                                     bar_event("BBB", 0, 1, 0)])
    lag = worker.metrics.registry.get_sample_value
    assert lag("forecaster_consumer_lag", {"partition": "0"}) == 98  # high water mark 100, position 2
    assert lag("forecaster_consumer_lag", {"partition": "1"}) is None


class _Broken:
    """A champion whose model raises, as one registered with a bug of its own does."""

    name, version, lookback = "broken", "3", 1

    def predict_returns(self, windows):  # type: ignore[no-untyped-def]
        raise RuntimeError("the model's own bug")


def test_a_champion_that_raises_gives_way_to_the_core_model_and_is_not_served_again(
        worker: Worker, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    # It raised out of the batch: the worker stopped, and stopped again on the same batch at every restart.
    holder = ModelHolder(worker.settings, ForecastMonitor(worker.settings, worker.metrics))
    holder.version = "3"
    holder.processor = worker.processor = BatchProcessor(CoreConfig(model="external"), _Broken(),
                                                         topic=worker.settings.topic_bars)
    handler = worker.handler()
    handler.fallback = holder
    models = []
    for day in range(4):  # the model is asked from the second bar on, once a feature row is kept
        sent = worker.handle(handler, [bar_event("AAA", day, 0, day)])
        models += [r["model"] for _, _, v in sent if (r := orjson.loads(v))["record_type"] == "prediction"]
        worker.processor = holder.processor  # as the worker asks the holder at every batch
    assert models == ["broken", "arima", "arima", "arima"]
    assert (holder.version, holder.failed_version) == (None, "3")
    assert caplog.text.count("champion next-close version 3 failed on a batch (model 'broken' version 3 "
                             "raised RuntimeError: the model's own bug): serving the core's 'arima' "
                             "model") == 1
    assert worker.metrics.registry.get_sample_value(
        "forecaster_model_info", {"name": "arima", "version": "core"}) == 1.0
    # The registry still names it: not loaded again. A new champion version is served.
    champion = ["3"]
    monkeypatch.setattr(registry, "champion_version", lambda settings: champion[0])
    monkeypatch.setattr(registry, "challenger_versions", lambda settings: {})
    monkeypatch.setattr(registry, "load_reference", lambda settings: None)
    loaded = []
    monkeypatch.setattr(registry, "load_champion", lambda settings: loaded.append(champion[0]) or _Broken())
    core = holder.processor
    asyncio.run(holder.reload())
    assert holder.processor is core and loaded == []
    champion[0] = "4"
    asyncio.run(holder.reload())
    assert loaded == ["4"] and holder.version == "4" and holder.processor.model is not None


def _at_levels(worker: Worker, levels: tuple[float, ...]) -> Worker:
    settings = worker.settings.replace(interval_levels=levels)
    return dataclasses.replace(worker, settings=settings, processor=BatchProcessor(
        CoreConfig.from_settings(settings, model="naive"), topic=settings.topic_bars, clock=lambda: "now"))


def test_interval_levels_of_any_precision_or_changed_between_runs_are_observed(worker: Worker) -> None:
    # Found by fuzzing the handler, each a KeyError at every batch with scores: 0.975 was "inside_98" to
    # the monitor and "inside_97.5" in the records; and after a restart with other levels, the stored
    # predictions' scores had the old levels' fields.
    def hits(level: str) -> float | None:
        return worker.metrics.registry.get_sample_value("forecaster_interval_hits_total", {"level": level})

    first = _at_levels(worker, (0.8, 0.975))
    handler = first.handler()
    for day in range(3):
        first.handle(handler, [bar_event("AAA", day, 0, day)])
    assert hits("0.975") is not None and hits("0.8") is not None
    scored = worker.metrics.registry.get_sample_value("forecaster_scores_total", {"model": "naive"})
    second = _at_levels(worker, (0.9, 0.99))
    handler = second.handler()
    sent = [orjson.loads(value) for day in (3, 4) for _, _, value in second.handle(
        handler, [bar_event("AAA", day, 0, day)])]
    scores = [record for record in sent if record["record_type"] == "score"]
    # The prediction made at the old levels is scored at them, and left out of the new levels' figures.
    assert ["inside_97.5" in scores[0], "inside_99" in scores[1]] == [True, True]
    scores_now = worker.metrics.registry.get_sample_value("forecaster_scores_total", {"model": "naive"})
    assert scores_now == scored + 1
    assert hits("0.9") is not None and hits("0.99") is not None
    assert TickerState.from_bytes(worker.states[b"AAA"]).interval_offsets.shape == (1, 2)
