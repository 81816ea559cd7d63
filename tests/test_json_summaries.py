"""``--format json`` of replay, backtest, train and promote: one JSON object on stdout, with the
figures the text summary prints, from real runs (the session broker, a real MLflow store)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from forecaster.cli import main
from forecaster.settings import Settings
from tests.kafka_helpers import read_topic


def _one_object(out: str) -> dict:
    lines = out.splitlines()
    assert len(lines) == 1, out
    value = json.loads(lines[0])
    assert isinstance(value, dict)
    return value


@pytest.mark.kafka
def test_replay_json_counts_what_reached_the_topic(data_dir: Path, kafka_settings: Settings,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["replay", str(data_dir / "vgi" / "vgi2.csv"), "--ticker", "VGI", "--start", "2021-01-01",
                 "--bootstrap", kafka_settings.bootstrap, "--topic", kafka_settings.topic_bars,
                 "--no-progress", "--format", "json"])
    summary = _one_object(capsys.readouterr().out)
    assert code == 0
    records = read_topic(kafka_settings, kafka_settings.topic_bars)
    assert summary["bars_sent"] == len(records) > 0 and summary["topic"] == kafka_settings.topic_bars
    assert summary["accounted"] is True
    assert summary["rows_read"] == summary["bars_sent"] + summary["dead_letters_sent"] + summary["filtered"]


def test_backtest_json_holds_the_figures_the_text_prints(data_dir: Path, capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    command = ["backtest", str(data_dir / "601988.SH.csv"), "--model", "arima", "--start", "2020-06-01"]
    assert main(command) == 0
    text = capsys.readouterr().out
    assert main([*command, "--format", "json"]) == 0
    summary = _one_object(capsys.readouterr().out)
    mae = re.search(r"^MAE \$ \(pooled\)\s+(\d\.\d{4})\s+(\d\.\d{4})$", text, re.MULTILINE)
    pooled = summary["pooled"]
    assert mae and (mae[1], mae[2]) == (f"{pooled['mae']:.4f}", f"{pooled['naive_mae']:.4f}")
    assert f"model arima: {summary['predictions']} predictions, {summary['scored']} scored" in text
    assert summary["tickers"] == 1 and list(summary["per_ticker"]) == ["601988.SH"]


def test_train_and_promote_json_match_the_mlflow_store(data_dir: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    frame = pd.read_csv(data_dir / "sp500-5yr-sample.csv.gz")
    path = tmp_path / "aph.csv"
    frame[(frame["Name"] == "APH") & (frame["date"] >= "2016-12-01")].to_csv(path, index=False)
    uri = f"sqlite:///{tmp_path / 'store.db'}"
    monkeypatch.setenv("FORECASTER_MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("FORECASTER_WINDOW", "64")
    assert main(["train", str(path), "--model", "arima", "--test-days", "60", "--format", "json",
                 "--params", '{"order": [2, 1, 0], "lookback": 64}']) == 0
    trained = _one_object(capsys.readouterr().out)
    run = mlflow.MlflowClient(uri).get_run(trained["run_id"])
    assert (trained["version"], trained["model_name"], trained["family"]) == ("1", "next-close", "arima")
    assert trained["evaluation"]["metrics"]["mae"] == pytest.approx(run.data.metrics["test_mae"])
    assert trained["counts"]["test"] == 60 and trained["split"]["test_start"] == run.data.params["test_start"]
    assert "model" not in trained and "predicted_closes" not in trained["evaluation"]

    # APH's ARIMA(2,1,0) beats naive on these 60 days (MASE 0.93): exit 0, promoted.
    assert main(["promote", "next-close", "--format", "json"]) == 0
    decision = _one_object(capsys.readouterr().out)
    assert decision["promoted"] is True and decision["candidate"] == "1" and decision["reasons"] == []
    assert decision["scores"]["candidate v1"]["mae"] == pytest.approx(trained["evaluation"]["metrics"]["mae"])
    assert main(["promote", "next-close", "--format", "json"]) == 1  # already the champion
    assert _one_object(capsys.readouterr().out)["reasons"] == ["version 1 is already the champion"]
