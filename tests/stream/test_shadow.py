"""Challengers in shadow inside the batch handler, without a broker: the worker's real parts around
fakes of Faust (tests/stream/test_batch.py's), a challenger put in the holder's place by hand."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from models import registry
from models.core.state import TickerState
from stream_app import shadow_states
from stream_app.batch import BatchHandler
from stream_app.shadow import Challenger, Challengers, Shadow
from stream_app.shadow_states import shadow_key
from tests.core.helpers import fail_step_when
from tests.stream.handler_fakes import Record, Worker, bar_event, bar_record, event


class Drift:
    """A challenger: predicts a rise of ``rate`` a day from one feature row."""

    name, lookback = "drift", 1

    def __init__(self, version: str, rate: float = 0.001) -> None:
        self.version = version
        self.rate = rate

    def predict_returns(self, windows):  # type: ignore[no-untyped-def]
        return [self.rate] * len(windows)


def shadow_handler(worker: Worker, challengers: Challengers) -> BatchHandler:
    handler = worker.handler()
    handler.shadow = Shadow(worker.settings, worker.states, challengers, worker.metrics)
    return handler


def challenger_state(worker: Worker, ticker: str, alias: str = "challenger") -> TickerState:
    return shadow_states.decode(worker.states[shadow_key(ticker)])[alias]


def records_of(sent: list[Record], topic: str) -> list[dict]:
    return [orjson.loads(value) for t, _, value in sent if t == topic]


def closes(day: int) -> float:
    return 10.0 + (day % 3) * 0.1


def days(worker: Worker, handler: BatchHandler, first: int, last: int) -> list[Record]:
    """One batch per day from ``first`` to ``last``, AAA on partition 0 and BBB on partition 1."""
    sent: list[Record] = []
    for day in range(first, last + 1):
        sent += worker.handle(handler, [bar_event("AAA", day, 0, day, closes(day)),
                                        bar_event("BBB", day, 1, day, closes(day + 1))])
    return sent


def test_without_a_challenger_nothing_goes_to_the_shadow_topic_and_the_records_are_the_same(
        worker: Worker) -> None:
    plain = days(worker, worker.handler(), 0, 5)
    worker.states.clear()
    worker.positions.clear()
    idle = days(worker, shadow_handler(worker, Challengers(worker.settings)), 0, 5)
    strip = [(t, k, {**orjson.loads(v), "produced_at": None}) for t, k, v in plain]
    assert [(t, k, {**orjson.loads(v), "produced_at": None}) for t, k, v in idle] == strip
    assert records_of(idle, worker.settings.topic_shadow) == []
    assert set(worker.states) == {b"AAA", b"BBB"}


def test_a_challenger_predicts_at_once_from_the_champions_state_and_is_scored_beside_it(
        worker: Worker) -> None:
    challengers = Challengers(worker.settings)
    handler = shadow_handler(worker, challengers)
    days(worker, handler, 0, 39)  # the champion alone for 40 days: its intervals are calibrated
    champion = {key: TickerState.from_bytes(raw) for key, raw in worker.states.items()}
    challengers.running = {"challenger": Challenger("challenger", "7", Drift("7"))}
    first = records_of(days(worker, handler, 40, 40), worker.settings.topic_shadow)
    sent = days(worker, handler, 41, 44)
    shadow = records_of(sent, worker.settings.topic_shadow)
    predictions = records_of(sent, worker.settings.topic_predictions)
    # Its first bar: a prediction (not a warm-up: the champion's state has the feature rows), no score.
    assert {(r["record_type"], r["ticker"], r["model"], r["model_version"], r["warmup"]) for r in first} == {
        ("prediction", "AAA", "drift", "7", False), ("prediction", "BBB", "drift", "7", False)}
    assert len([r for r in shadow if r["record_type"] == "score"]) == 2 * 4
    # Its states sit beside the champion's, under each ticker's own partition.
    mine = [shadow_key(ticker) for ticker in ("AAA", "BBB")]
    assert set(worker.states.writes[-4:]) == {(b"AAA", 0), (b"BBB", 1), (mine[0], 0), (mine[1], 1)}
    started = challenger_state(worker, "AAA")
    assert started.bars == champion[b"AAA"].bars + 5
    m = worker.metrics.registry.get_sample_value
    labels = {"alias": "challenger", "version": "7"}
    assert m("forecaster_shadow_pairs_total", labels) == 2 * 4
    ratio = (m("forecaster_shadow_challenger_loss_total", labels)
             / m("forecaster_shadow_champion_loss_total", labels))
    assert ratio == pytest.approx(_loss_ratio(sent, worker))
    assert m("forecaster_shadow_panel_dm", labels) is not None  # 4 days of pairs
    # The champion's records are those of a champion alone.
    worker.states.clear()
    worker.positions.clear()
    alone = records_of(days(worker, worker.handler(), 0, 44), worker.settings.topic_predictions)
    assert [{**r, "produced_at": 0} for r in predictions] == [
        {**r, "produced_at": 0} for r in alone[-len(predictions):]]


def _loss_ratio(sent: list[Record], worker: Worker) -> float:
    def loss(topic: str) -> float:
        return sum(abs(r["error"]) / r["naive_close"] for r in records_of(sent, topic)
                   if r["record_type"] == "score")
    return loss(worker.settings.topic_shadow) / loss(worker.settings.topic_predictions)


class Broken(Drift):
    """A challenger whose model raises, as a model registered with a bug of its own does."""

    def predict_returns(self, windows):  # type: ignore[no-untyped-def]
        raise RuntimeError("the model's own bug")


def _beside_a_warm_champion(worker: Worker, first: Drift) -> tuple[Challengers, BatchHandler]:
    """Challengers ``challenger`` (``first``, version 7) and ``challenger-b`` (version 8), running from
    day 40 beside a champion that has stepped days 0 to 39."""
    challengers = Challengers(worker.settings)
    handler = shadow_handler(worker, challengers)
    days(worker, handler, 0, 39)
    challengers.running = {"challenger": Challenger("challenger", "7", first),
                           "challenger-b": Challenger("challenger-b", "8", Drift("8"))}
    return challengers, handler


def test_a_challenger_that_raises_stops_running_and_the_champion_goes_on(
        worker: Worker, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    # It raised out of the batch: the worker stopped, and stopped again on the same batch at every restart.
    challengers, handler = _beside_a_warm_champion(worker, Broken("7"))
    sent = days(worker, handler, 40, 42)
    assert {r["model_version"] for r in records_of(sent, worker.settings.topic_shadow)} == {"8"}
    assert set(challengers.running) == {"challenger-b"}
    assert caplog.text.count("challenger 'challenger' (version 7) failed on a batch and no longer runs") == 1
    predictions = records_of(sent, worker.settings.topic_predictions)
    worker.states.clear()
    worker.positions.clear()
    alone = records_of(days(worker, worker.handler(), 0, 42), worker.settings.topic_predictions)
    assert [{**r, "produced_at": 0} for r in predictions] == [
        {**r, "produced_at": 0} for r in alone[-len(predictions):]]
    # The registry still names it: not loaded again. A new version under its alias runs.
    aliases = {"challenger": "7", "challenger-b": "8"}
    monkeypatch.setattr(registry, "challenger_versions", lambda settings: dict(aliases))
    monkeypatch.setattr(registry, "load_model", lambda uri, settings: Drift(uri.rsplit("/", 1)[1]))
    asyncio.run(challengers.reload(champion_version="1"))
    assert {alias: c.version for alias, c in challengers.running.items()} == {"challenger-b": "8"}
    aliases["challenger"] = "9"
    asyncio.run(challengers.reload(champion_version="1"))
    assert {alias: c.version for alias, c in challengers.running.items()} == {"challenger": "9",
                                                                              "challenger-b": "8"}


def test_a_challenger_whose_step_raises_stops_running_and_the_champion_goes_on(
        worker: Worker, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    # Not its model's error: the step on its states (a bug of the core they meet). Set aside bar by
    # bar, as the champion's would be, it would leave the challenger's series full of holes.
    challengers, handler = _beside_a_warm_champion(worker, Drift("7"))
    fail_step_when(monkeypatch, lambda bars, model: model is not None and model.version == "7")
    sent = days(worker, handler, 40, 42)
    assert {r["model_version"] for r in records_of(sent, worker.settings.topic_shadow)} == {"8"}
    assert set(challengers.running) == {"challenger-b"}
    assert caplog.text.count("challenger 'challenger' (version 7) failed on a batch and no longer runs; "
                             "the champion is not affected: ZeroDivisionError: a bug of the core") == 1
    assert not [r for r in records_of(sent, worker.settings.topic_dlq)]
    assert len(records_of(sent, worker.settings.topic_predictions)) == 2 * 3 * 2  # scores and predictions


def test_a_challenger_state_past_the_bars_starts_again_from_the_champions(worker: Worker) -> None:
    # The champion's state of AAA is quarantined (it starts afresh) and an older AAA bar comes again:
    # the champion takes it, and the challenger's stored state, past it, made the batch raise.
    challengers = Challengers(worker.settings)
    handler = shadow_handler(worker, challengers)
    days(worker, handler, 0, 39)
    challengers.running = {"challenger": Challenger("challenger", "7", Drift("7"))}
    days(worker, handler, 40, 42)
    worker.states[b"AAA"] = b"FTS\x05garbage"
    sent = worker.handle(handler, [bar_event("AAA", 20, 0, 43, closes(20)),
                                   bar_event("BBB", 43, 1, 43, closes(44))])
    assert set(challengers.running) == {"challenger"}
    shadow = records_of(sent, worker.settings.topic_shadow)
    assert {(r["ticker"], r["record_type"]) for r in shadow} == {("AAA", "prediction"), ("BBB", "prediction"),
                                                                 ("BBB", "score")}
    champion = TickerState.from_bytes(worker.states[b"AAA"])
    assert challenger_state(worker, "AAA").last_date == champion.last_date


def test_a_challenger_whose_alias_moves_starts_again_from_the_champions_state(worker: Worker) -> None:
    challengers = Challengers(worker.settings)
    handler = shadow_handler(worker, challengers)
    challengers.running = {"challenger": Challenger("challenger", "7", Drift("7"))}
    days(worker, handler, 0, 3)
    challengers.running = {"challenger": Challenger("challenger", "8", Drift("8", rate=-0.001))}
    sent = days(worker, handler, 4, 4)
    shadow = records_of(sent, worker.settings.topic_shadow)
    # Version 8's first bar: a prediction of its own, and no score of version 7's pending prediction.
    assert {(r["record_type"], r["model_version"]) for r in shadow} == {("prediction", "8")}
    state = challenger_state(worker, "AAA")
    assert state.bars == TickerState.from_bytes(worker.states[b"AAA"]).bars
    labels = {"alias": "challenger", "version": "7"}
    assert worker.metrics.registry.get_sample_value("forecaster_shadow_panel_dm", labels) is None


def test_the_states_of_a_challenger_that_no_longer_runs_leave_the_table(worker: Worker) -> None:
    challengers = Challengers(worker.settings)
    handler = shadow_handler(worker, challengers)
    first, second = (Challenger("challenger-a", "7", Drift("7")),
                     Challenger("challenger-b", "8", Drift("8", rate=-0.001)))
    challengers.running = {"challenger-a": first, "challenger-b": second}
    days(worker, handler, 0, 3)
    both = shadow_states.decode(worker.states[shadow_key("AAA")])
    assert set(both) == {"challenger-a", "challenger-b"}
    challengers.running = {"challenger-b": second}
    shadow = records_of(days(worker, handler, 4, 4), worker.settings.topic_shadow)
    # One record per ticker holds the challengers' states: the stopped one's went with the rewrite,
    # and the one still running went on from its own state (a score of its pending prediction).
    assert set(worker.states) == {b"AAA", b"BBB", shadow_key("AAA"), shadow_key("BBB")}
    for ticker in ("AAA", "BBB"):
        left = shadow_states.decode(worker.states[shadow_key(ticker)])
        assert set(left) == {"challenger-b"}
    assert challenger_state(worker, "AAA", "challenger-b").bars == both["challenger-b"].bars + 1
    assert {(r["record_type"], r["model_version"]) for r in shadow} == {("prediction", "8"), ("score", "8")}


def test_a_corrupt_record_of_challenger_states_starts_them_again_from_the_champions(worker: Worker) -> None:
    challengers = Challengers(worker.settings)
    handler = shadow_handler(worker, challengers)
    challengers.running = {"challenger": Challenger("challenger", "7", Drift("7"))}
    days(worker, handler, 0, 3)
    worker.states[shadow_key("AAA")] = b"FSS\x01garbage"
    shadow = records_of(days(worker, handler, 4, 4), worker.settings.topic_shadow)
    assert {(r["ticker"], r["record_type"]) for r in shadow} == {
        ("AAA", "prediction"), ("BBB", "prediction"), ("BBB", "score")}
    assert challenger_state(worker, "AAA").bars == TickerState.from_bytes(worker.states[b"AAA"]).bars


def test_a_version_named_by_two_aliases_runs_once_under_the_alias_that_ran_it(
        worker: Worker, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    aliases = {"challenger-b": "7"}
    monkeypatch.setattr(registry, "challenger_versions", lambda settings: dict(aliases))
    monkeypatch.setattr(registry, "load_model", lambda uri, settings: Drift(uri.rsplit("/", 1)[1]))
    challengers = Challengers(worker.settings)
    asyncio.run(challengers.reload(champion_version="1"))
    aliases["challenger-a"] = "7"  # sorts first, but the version runs as challenger-b already
    for _ in range(2):
        asyncio.run(challengers.reload(champion_version="1"))
        assert {alias: c.version for alias, c in challengers.running.items()} == {"challenger-b": "7"}
    assert caplog.text.count("'challenger-a' is version 7, run as 'challenger-b' already") == 1
    del aliases["challenger-b"]
    asyncio.run(challengers.reload(champion_version="1"))
    assert {alias: c.version for alias, c in challengers.running.items()} == {"challenger-a": "7"}


def test_a_message_under_a_challenger_records_key_is_refused_without_reading_the_record(
        worker: Worker) -> None:
    challengers = Challengers(worker.settings)
    handler = shadow_handler(worker, challengers)
    challengers.running = {"challenger": Challenger("challenger", "7", Drift("7"))}
    days(worker, handler, 0, 3)
    stored = worker.states[shadow_key("AAA")]
    # No ticker's key holds the byte 0xff: the message names no ticker, so no state is read for it.
    sent = worker.handle(handler, [event(shadow_key("AAA"), orjson.dumps(bar_record("AAA", 4, 10.0)), 0, 4)])
    assert [r["reason"] for r in records_of(sent, worker.settings.topic_dlq)] == ["bad_ticker"]
    assert worker.states[shadow_key("AAA")] == stored
