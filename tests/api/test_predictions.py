"""GET /predictions and /health against the real broker: the latest record per ticker, clean shutdown."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from kafka import KafkaConsumer

from api.app import create_app
from forecaster.kafka.client import kafka_python_options
from forecaster.settings import Settings
from tests.api.seeding import seed_predictions, streamed_records

pytestmark = pytest.mark.kafka


def poll(get: Callable[[], Any], done: Callable[[Any], bool], timeout_s: float = 60.0) -> Any:
    """``get()`` until ``done`` holds for its value; the last value."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = get()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"still {value!r} after {timeout_s} s")
        time.sleep(0.1)


def reader_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "latest-predictions"]


def test_latest_record_per_ticker_from_the_topic(kafka_settings: Settings, data_dir: Path) -> None:
    records = streamed_records(data_dir)
    seed_predictions(kafka_settings, records, extra=[b"not json", b'{"record_type": "prediction"}'])
    with TestClient(create_app(kafka_settings), base_url="http://localhost") as client:
        sent = len(records) + 2
        answer = poll(lambda: client.get("/predictions").json(),
                      lambda a: a["reader"]["records_read"] + a["reader"]["records_skipped"] == sent)
        assert answer["reader"]["records_skipped"] == 2
        latest = {entry["ticker"]: entry for entry in answer["predictions"]}
        assert sorted(latest) == ["ABC", "TEL", "VGI", "VTC"]
        for ticker, entry in latest.items():
            mine = [r for r in records if r["ticker"] == ticker]
            assert entry["prediction"] == [r for r in mine if r["record_type"] == "prediction"][-1]
            assert entry["score"] == [r for r in mine if r["record_type"] == "score"][-1]
            assert client.get(f"/predictions/{ticker}").json() == entry

        missing = client.get("/predictions/NOPE")
        assert missing.status_code == 404
        assert kafka_settings.topic_predictions in missing.json()["detail"]["message"]

        health = poll(lambda: client.get("/health").json(), lambda h: h["broker"]["lag"] == 0)
        assert health["status"] == "ok"  # broker up; no champion registered is not a fault
        assert health["broker"]["reachable"] is True
        assert health["model"]["loaded"] is False
    assert reader_threads() == []  # the reader stopped with the app


def test_the_latest_records_of_every_horizon(kafka_settings: Settings, data_dir: Path) -> None:
    records = streamed_records(data_dir, horizons=(1, 5, 20))
    seed_predictions(kafka_settings, records)
    with TestClient(create_app(kafka_settings), base_url="http://localhost") as client:
        answer = poll(lambda: client.get("/predictions").json(),
                      lambda a: a["reader"]["records_read"] == len(records))
    assert [entry["ticker"] for entry in answer["predictions"]] == ["ABC", "TEL", "VGI", "VTC"]
    last = {(r["ticker"], r["record_type"], r["horizon"]): r for r in records}
    for entry in answer["predictions"]:
        ticker = entry["ticker"]

        assert [h["horizon"] for h in entry["horizons"]] == [1, 5, 20]
        for shown in entry["horizons"]:
            assert shown["prediction"] == last[ticker, "prediction", shown["horizon"]]
            assert shown["score"] == last[ticker, "score", shown["horizon"]]
        # The top-level records stay the shortest horizon's, as clients read them before horizons.
        assert (entry["horizon"], entry["prediction"], entry["score"]) == (
            1, last[ticker, "prediction", 1], last[ticker, "score", 1])


def test_a_missing_topic_is_reported_and_not_created(kafka_settings: Settings) -> None:
    settings = kafka_settings.replace(topic_predictions=f"{kafka_settings.topic_predictions}-missing")
    with TestClient(create_app(settings), base_url="http://localhost") as client:
        health = poll(lambda: client.get("/health").json(), lambda h: h["broker"]["reachable"])
        assert health["broker"]["detail"] == f"the topic {settings.topic_predictions} does not exist yet"
        assert client.get("/predictions").json()["predictions"] == []
    consumer = KafkaConsumer(**kafka_python_options(settings))
    try:
        assert settings.topic_predictions not in consumer.topics()
    finally:
        consumer.close()


def test_records_written_while_the_app_runs_replace_older_ones(kafka_settings: Settings,
                                                              data_dir: Path) -> None:
    records = [r for r in streamed_records(data_dir) if r["ticker"] == "VGI"]
    predictions = [r for r in records if r["record_type"] == "prediction"]
    seed_predictions(kafka_settings, predictions[:-1])
    with TestClient(create_app(kafka_settings), base_url="http://localhost") as client:
        def latest_as_of() -> Any:
            response = client.get("/predictions/VGI")
            return response.json()["prediction"]["as_of"] if response.status_code == 200 else None

        poll(latest_as_of, lambda as_of: as_of == predictions[-2]["as_of"])
        seed_predictions(kafka_settings, predictions[-1:])
        poll(latest_as_of, lambda as_of: as_of == predictions[-1]["as_of"])
    assert reader_threads() == []
