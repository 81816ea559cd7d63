"""``forecaster promote --from-shadow`` against the real broker and a real MLflow store: score records
written to ``predictions`` and ``predictions.shadow`` as the worker writes them, the decision, the
alias moved (or not) and the evidence logged."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import orjson
import pytest
from kafka import KafkaProducer

from forecaster.cli import main
from forecaster.kafka.client import kafka_python_options
from forecaster.settings import Settings, to_environ
from models import registry

pytestmark = pytest.mark.kafka

TICKERS = ("AAA", "BBB", "CCC", "DDD")
DAYS = 30


def score(ticker: str, day: int, error: float, version: str, warmup: bool = False) -> dict:
    as_of = (dt.date(2024, 1, 1) + dt.timedelta(days=day)).isoformat()
    return {"record_type": "score", "ticker": ticker, "as_of": as_of, "error": error, "naive_close": 100.0,
            "model": "xgboost", "model_version": version, "warmup": warmup}


def publish(settings: Settings, champion_scale: float, challenger_scale: float) -> None:
    """Champion version 1 and challenger version 2 scored on the same ticker-days; errors drawn once,
    each side's scaled. Each record goes twice (at-least-once repeats), and noise of other versions
    and of warm-ups is mixed in."""
    rng = np.random.default_rng(7)
    producer = KafkaProducer(**kafka_python_options(settings))
    for day in range(DAYS):
        for ticker in TICKERS:
            base = float(abs(rng.normal())) + 0.1
            mine = base * challenger_scale * (1 + 0.05 * float(rng.normal()))
            theirs = base * champion_scale
            for topic, record in ((settings.topic_predictions, score(ticker, day, theirs, "1")),
                                  (settings.topic_shadow, score(ticker, day, -mine, "2")),
                                  (settings.topic_shadow, score(ticker, day, 0.0, "3")),
                                  (settings.topic_predictions, score(ticker, day, 0.0, "1", warmup=True))):
                for _ in range(2 if record["model_version"] != "3" else 1):
                    producer.send(topic, key=ticker.encode(), value=orjson.dumps(record))
    producer.send(settings.topic_shadow, key=b"AAA", value=b"not JSON")
    producer.flush()
    producer.close()


@pytest.fixture
def registered(kafka_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Three versions: 1 the champion, 2 the challenger, 3 another challenger's."""
    settings = kafka_settings.replace(model_name="next-close", mlflow_tracking_uri="",
                                      mlflow_env_tracking_uri="", mlflow_env_registry_uri="")
    client = registry.client(settings)
    client.create_registered_model(settings.model_name)
    for _ in range(3):
        client.create_model_version(settings.model_name, source=str(Path(settings.home) / "none"))
    for alias, version in (("champion", "1"), ("challenger", "2"), ("challenger-other", "3")):
        client.set_registered_model_alias(settings.model_name, alias, version)
    for name, value in to_environ(settings).items():
        monkeypatch.setenv(name, value)
    return settings


def champion(settings: Settings) -> str:
    return str(registry.client(settings).get_registered_model(settings.model_name).aliases["champion"])


def evidence(settings: Settings) -> dict:
    client = registry.client(settings)
    experiment = client.get_experiment_by_name(registry.SHADOW_EXPERIMENT)
    [run] = client.search_runs([experiment.experiment_id])
    with open(client.download_artifacts(run.info.run_id, "shadow_decision.json", settings.home)) as file:
        logged = json.load(file)
    assert run.data.metrics["pairs"] == logged["pairs"] == len(TICKERS) * DAYS
    assert run.data.metrics["days"] == DAYS
    return logged


def test_a_clearly_better_challenger_is_promoted_and_the_evidence_logged(
        registered: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    publish(registered, champion_scale=1.0, challenger_scale=0.6)
    assert main(["promote", registered.model_name, "--from-shadow"]) == 0
    client = registry.client(registered)
    model = client.get_registered_model(registered.model_name)
    assert {alias: str(v) for alias, v in model.aliases.items()} == {"champion": "2", "challenger-other": "3"}
    logged = evidence(registered)
    assert logged["promoted"] is True and logged["reasons"] == []
    assert (logged["champion_version"], logged["challenger_version"]) == ("1", "2")
    assert logged["relative_mae"] == pytest.approx(0.6, abs=0.02)
    assert logged["dm_statistic"] < 0 and logged["p_better"] < 0.05
    assert "promoted" in client.get_model_version(registered.model_name, "2").tags["shadow_decision"]
    tags = client.get_model_version(registered.model_name, "1").tags
    assert "challenged by version 2" in tags["shadow_decision"]
    assert "promoted next-close version 2 to @champion" in capsys.readouterr().out


def test_a_slightly_worse_challenger_is_not_promoted(registered: Settings,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    publish(registered, champion_scale=1.0, challenger_scale=1.03)
    assert main(["promote", registered.model_name, "--from-shadow"]) == 1
    said = capsys.readouterr().err.strip().splitlines()
    assert len(said) == 1 and said[0].startswith("forecaster promote: not promoted: "), said
    assert "is not below 1" in said[0] and "not significantly better" in said[0]
    assert champion(registered) == "1"
    logged = evidence(registered)
    assert logged["promoted"] is False and logged["relative_mae"] == pytest.approx(1.03, abs=0.02)


def test_too_few_days_of_pairs_decide_nothing(registered: Settings,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    publish(registered, champion_scale=1.0, challenger_scale=0.6)
    assert main(["promote", registered.model_name, "--from-shadow", "--min-days", str(DAYS + 1)]) == 1
    assert f"{DAYS} days of pairs, fewer than {DAYS + 1}" in capsys.readouterr().err
    assert champion(registered) == "1"
