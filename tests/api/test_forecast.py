"""POST /forecast with FastAPI's test client, on real files, without a broker or a registry.

The answer must be the backtest's, record for record, and every row must be accounted for: a bar or
a dead letter with its reason and source. Input that cannot be read is a 4xx that says why.
"""

from __future__ import annotations

import codecs
import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

import api.app as app_module
from api.app import create_app
from api.champion import ModelChoice
from forecaster.settings import Settings
from models.backtest import run_backtest
from models.core.config import CoreConfig
from producers.readers import read_csv_bars
from tests.core.helpers import fail_step_when


@pytest.fixture(scope="module")
def client(offline_settings: Settings) -> Iterator[TestClient]:
    """One app for the module: requests do not change its state."""
    with TestClient(create_app(offline_settings), base_url="http://localhost") as test_client:
        yield test_client


def upload(client: TestClient, path: Path, data: bytes | None = None, **query: str) -> Any:
    content = path.read_bytes() if data is None else data
    return client.post("/forecast", params=query, files={"file": (path.name, content)})


def assert_accounted(answer: dict[str, Any]) -> None:
    assert answer["rows_read"] == answer["bars"] + answer["dead_letters_total"] + answer["filtered"]
    assert len(answer["dead_letters"]) == min(answer["dead_letters_total"], 100)
    assert len(answer["predictions"]) == answer["bars"]


def test_csv_upload_is_the_backtest_of_the_same_file(client: TestClient, data_dir: Path,
                                                     offline_settings: Settings) -> None:
    path = data_dir / "601988.SH.csv"
    response = upload(client, path)
    assert response.status_code == 200, response.text
    answer = response.json()
    # No champion is registered: the champion request is served by the core's own model.
    assert answer["model"] == {"name": "arima", "version": "2,1,0", "requested": "champion"}
    assert (answer["rows_read"], answer["bars"], answer["dead_letters"]) == (3681, 3681, [])
    assert answer["tickers"] == ["601988.SH"]
    expected = run_backtest(read_csv_bars([path]).bars, CoreConfig.from_settings(offline_settings))
    assert answer["predictions"] == expected.predictions
    assert answer["scores"] == expected.scores
    assert answer["metrics"]["pooled"] == pytest.approx(expected.pooled)
    assert answer["metrics"]["per_ticker"]["601988.SH"] == pytest.approx(expected.pooled)
    pooled = answer["metrics"]["pooled"]
    assert {"mae", "naive_mae", "relative_mae", "coverage_95", "winkler_80"} <= pooled.keys()
    assert pooled["relative_mae"] == pytest.approx(pooled["mae"] / pooled["naive_mae"])
    # One ticker: its geometric mean is its own relative MAE.
    assert answer["metrics"]["panel"] == pytest.approx(
        {"tickers": 1, "tickers_beating_naive": float(pooled["relative_mae"] < 1),
         "relative_mae": pooled["relative_mae"]})


def test_rejected_rows_come_back_with_reason_and_source(client: TestClient, two_sp500_tickers: Path) -> None:
    answer = upload(client, two_sp500_tickers, model="naive").json()
    assert_accounted(answer)
    assert answer["rows_read"] == len(two_sp500_tickers.read_text().splitlines()) - 1
    assert answer["tickers"] == ["DHR", "LNT"]
    assert [(d["source"], d["reason"], d["raw"]) for d in answer["dead_letters"]] == [
        ("dhr-lnt.csv:437", "low_above_open_close", "2014-11-06,78.47,81.305,80.49,81.26,1614419,DHR"),
        ("dhr-lnt.csv:600", "missing_field", "2015-07-17,,88.76,88.24,88.72,2056819,DHR"),
        ("dhr-lnt.csv:723", "missing_field", "2016-01-12,,,,88.55,0,DHR"),
        ("dhr-lnt.csv:2070", "low_above_open_close", "2016-05-19,35.19,35.785,35.085,17.87,1231722,LNT"),
    ]
    assert answer["model"]["name"] == "naive"
    assert answer["metrics"]["pooled"]["relative_mae"] == 1.0  # naive against itself
    assert answer["metrics"]["panel"] == {"tickers": 2, "tickers_beating_naive": 0, "relative_mae": 1.0}


def test_gzipped_upload_of_many_tickers_within_the_size_limit(client: TestClient, data_dir: Path) -> None:
    path = data_dir / "bokeh-stocks.csv.gz"
    too_big = upload(client, path, model="naive")
    assert too_big.status_code == 413
    assert "12154 bars is more than FORECASTER_API_MAX_BARS=10000" in too_big.json()["detail"]["message"]
    answer = upload(client, path, model="naive", tickers="AAPL,FB,GOOG").json()
    assert_accounted(answer)
    assert answer["tickers"] == ["AAPL", "FB", "GOOG"]
    assert (answer["rows_read"], answer["bars"], answer["filtered"]) == (12154, 3270 + 196 + 2148, 2 * 3270)
    assert set(answer["metrics"]["per_ticker"]) == set(answer["tickers"])


def test_a_file_without_ticker_column_takes_the_file_name_or_the_ticker_given(client: TestClient,
                                                                              data_dir: Path) -> None:
    path = data_dir / "vgi" / "vgi2.csv"
    assert upload(client, path, model="naive").json()["tickers"] == ["VGI2"]
    assert upload(client, path, model="naive", ticker="VGI").json()["tickers"] == ["VGI"]
    # As forecaster backtest names it: the name made safe to save the upload under is not the ticker.
    content = path.read_bytes()
    for name, ticker in (("^GSPC.csv", "^GSPC"), ("BRK B.csv", "BRK B"), (r"C:\data\^DJI.csv", "^DJI")):
        response = client.post("/forecast", params={"model": "naive"}, files={"file": (name, content)})
        assert response.json()["tickers"] == [ticker]


def test_json_bars_are_validated_like_messages(client: TestClient, data_dir: Path,
                                               offline_settings: Settings) -> None:
    bars = read_csv_bars([data_dir / "vgi" / "vgi2.csv"], ticker="VGI").bars[:300]
    records: list[Any] = [{k: v for k, v in bar.to_dict().items() if k != "source"} for bar in bars]
    bad = [{**records[10], "date": "2019-02-30"}, records[20], "not a bar", {**records[30], "close": -1}]
    response = client.post("/forecast", json={"bars": records + bad})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert_accounted(answer)
    letters = [(d["source"], d["reason"]) for d in answer["dead_letters"]]
    assert letters == [("bars[300]", "bad_date"), ("bars[301]", "duplicate"), ("bars[302]", "not_json"),
                       ("bars[303]", "non_positive_price")]
    other = client.post("/forecast", params={"tickers": "OTHER"}, json={"bars": records + bad})
    assert other.status_code == 422
    # Only the object that is not an object has no ticker to select by: it is rejected.
    assert other.json()["detail"]["message"] == (
        "no bar to forecast among the 304 rows: 1 rejected, 303 of other tickers")
    expected = run_backtest(bars, CoreConfig.from_settings(offline_settings))
    assert answer["predictions"] == expected.predictions


def test_a_bar_the_step_raises_on_is_a_dead_letter_and_the_rest_is_forecast(
        client: TestClient, data_dir: Path, offline_settings: Settings,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # A bug of the core that one bar met was a 500 with no forecast at all.
    bars = read_csv_bars([data_dir / "vgi" / "vgi2.csv"], ticker="VGI").bars[:120]
    records = [{k: v for k, v in bar.to_dict().items() if k != "source"} for bar in bars]
    expected = run_backtest(bars[:90] + bars[91:], CoreConfig.from_settings(offline_settings))
    fail_step_when(monkeypatch, lambda batch, model: any(b.date == bars[90].date for b in batch))
    response = client.post("/forecast", json={"bars": records})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert_accounted(answer)
    assert [(d["source"], d["reason"]) for d in answer["dead_letters"]] == [("bars[90]", "step_failed")]
    assert answer["predictions"] == expected.predictions and answer["scores"] == expected.scores
    # Every bar set aside: a one-line 500 that lists them, not a traceback.
    fail_step_when(monkeypatch, lambda batch, model: True)
    failed = client.post("/forecast", json={"bars": records[:3]})
    assert failed.status_code == 500
    assert failed.json()["detail"]["message"] == "the forecasting step failed on every bar (step_failed)"
    assert [d["reason"] for d in failed.json()["detail"]["dead_letters"]] == ["step_failed"] * 3


def test_a_model_that_raises_is_a_one_line_500(client: TestClient, data_dir: Path, offline_settings: Settings,
                                               monkeypatch: pytest.MonkeyPatch,
                                               caplog: pytest.LogCaptureFixture) -> None:
    class Broken:  # a registered model with a bug of its own
        name, version, lookback = "broken", "3", 1

        def predict_returns(self, windows: Any) -> Any:
            raise RuntimeError("the model's own bug")

    choice = ModelChoice(CoreConfig.from_settings(offline_settings, model="external"), Broken(), "3")
    monkeypatch.setattr(app_module, "resolve", lambda *args: choice)
    bars = read_csv_bars([data_dir / "vgi" / "vgi2.csv"], ticker="VGI").bars[:5]
    records = [{k: v for k, v in bar.to_dict().items() if k != "source"} for bar in bars]
    response = client.post("/forecast", params={"model": "3"}, json={"bars": records})
    assert response.status_code == 500
    said = response.json()["detail"]["message"]
    assert said == ("the model failed on these bars: model 'broken' version 3 raised RuntimeError: "
                    "the model's own bug")
    assert caplog.text.count(said) == 1 and 'raise RuntimeError("the model\'s own bug")' in caplog.text


def test_a_json_body_with_a_byte_order_mark_is_read(client: TestClient) -> None:
    # Windows tools write UTF-8 with a BOM; it was refused as "not a JSON object".
    bar = {"ticker": "ACME", "date": "2024-01-05", "open": 10, "high": 11, "low": 9, "close": 10, "volume": 9}
    response = client.post("/forecast", content=codecs.BOM_UTF8 + json.dumps({"bars": [bar]}).encode(),
                           headers={"Content-Type": "application/json"})
    assert response.status_code == 200, response.text
    assert response.json()["bars"] == 1


@pytest.mark.parametrize(("name", "data", "says"), [
    ("empty.csv", b"", "empty"),
    ("blank.csv", b"\n\n  \n", "empty"),
    ("header.csv", b"date,open,high,low,close,volume,Name\n", "no rows"),
    ("dax.csv", b"Datum,Schluss\n2024-01-05,10\n", "cannot tell which columns"),
    ("cut.csv.gz", gzip.compress(b"date,open,high,low,close,volume,Name\n")[:20], "cannot be decompressed"),
    ("photo.csv", bytes(range(256)) * 8, "cannot tell which columns"),
], ids=["empty", "blank", "header only", "foreign columns", "cut gzip", "binary"])
def test_unreadable_uploads_are_422_with_the_reason(client: TestClient, name: str, data: bytes,
                                                     says: str) -> None:
    response = client.post("/forecast", files={"file": (name, data)})
    assert response.status_code == 422, response.text
    assert says in response.json()["detail"]["message"]


def test_every_row_rejected_is_422_with_the_rows(client: TestClient) -> None:
    data = b"date,open,high,low,close,volume,Name\n2013-02-08,,,,69.08,3,BHF\n2013-02-11,1,1,1,1,-5,BHF\n"
    response = client.post("/forecast", files={"file": ("bhf.csv", data)})
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert "among the 2 rows: 2 rejected, 0 of other tickers" in detail["message"]
    assert [(d["source"], d["reason"]) for d in detail["dead_letters"]] == [
        ("bhf.csv:2", "missing_field"), ("bhf.csv:3", "negative_volume")]


@pytest.mark.parametrize(("body", "loc"), [
    (b"{\"bars\": [", []),
    (b"[1, 2]", []),
    (b"{\"bars\": []}", ["bars"]),
    (b"{\"rows\": [{}]}", ["bars"]),
])
def test_invalid_json_bodies_are_422_with_the_location(client: TestClient, body: bytes, loc: list) -> None:
    response = client.post("/forecast", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 422
    assert response.json()["detail"]["errors"][0]["loc"] == loc


def test_requests_that_are_neither_upload_nor_json(client: TestClient) -> None:
    response = client.post("/forecast", content=b"a,b\n", headers={"Content-Type": "text/csv"})
    assert response.status_code == 415
    response = client.post("/forecast", files={"other": ("x.csv", b"a\n")})
    assert response.status_code == 422
    assert "no file field named 'file'" in response.json()["detail"]["message"]
    # Read as it is, a gzipped JSON body was "not a JSON object".
    response = client.post("/forecast", content=gzip.compress(b'{"bars": []}'),
                           headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert response.status_code == 415
    assert response.json()["detail"]["message"].startswith("a body of Content-Encoding 'gzip' is not read")
    # Escaped once: printable's escapes, not repr's over them.
    escaped = client.post("/forecast", content=b"{}", headers={"Content-Type": "application/json",
                                                               "Content-Encoding": "\x1b[31m"})
    assert escaped.json()["detail"]["message"].startswith("a body of Content-Encoding '\\x1b[31m' is not")


@pytest.mark.parametrize(("content_type", "body", "says"), [
    ("multipart/form-data; boundary=b",
     b'--b\r\nContent-Disposition: form-data; name="file"\r\n\r\n' + bytes(1 << 20) + b"x\r\n--b--\r\n",
     "Part exceeded maximum size of 1024KB."),
    ("multipart/form-data", b"--b\r\n", "Missing boundary in multipart."),
], ids=["field over 1 MiB", "no boundary"])
def test_a_multipart_body_that_cannot_be_parsed_is_a_one_line_400_and_one_log_line(
        client: TestClient, caplog: pytest.LogCaptureFixture, content_type: str, body: bytes,
        says: str) -> None:
    response = client.post("/forecast", content=body, headers={"Content-Type": content_type})
    message = f"the multipart body cannot be read: {says}"
    assert (response.status_code, response.json()) == (400, {"detail": {"message": message}})
    assert [r.getMessage() for r in caplog.records if r.name == "api.refused"] == [
        f"refused 400 POST /forecast: {message} (client testclient)"]


def test_bad_options_are_4xx(client: TestClient, data_dir: Path) -> None:
    path = data_dir / "vgi" / "vgi2.csv"
    assert upload(client, path, model="lstm").status_code == 404
    assert upload(client, path, columns="price=Kurs").status_code == 422


def test_without_a_broker_forecasts_are_served_and_health_says_so(client: TestClient, data_dir: Path) -> None:
    assert upload(client, data_dir / "vgi" / "vgi2.csv", model="naive").status_code == 200
    health = client.get("/health").json()
    assert health["status"] == "degraded"
    assert health["broker"]["reachable"] is False
    assert health["model"]["loaded"] is False
    assert "no champion" in health["model"]["serving"]
    models = client.get("/models").json()
    assert models["champion"] is None and models["serving"] == "the core's arima model"


def test_reads_never_create_the_registry_store(offline_settings: Settings, tmp_path: Path) -> None:
    settings = offline_settings.replace(home=str(tmp_path))
    bars = {"bars": [{"ticker": "A", "date": "2024-01-05", "open": 1, "high": 1, "low": 1, "close": 1,
                      "volume": 1}]}
    with TestClient(create_app(settings), base_url="http://localhost") as fresh:
        assert fresh.get("/models").json()["champion"] is None
        for model in ("3", "models:/other/1"):
            answer = fresh.post("/forecast", params={"model": model}, json=bars)
            assert answer.status_code == 404
            assert "no model is registered" in answer.json()["detail"]["message"]
    assert list(tmp_path.iterdir()) == []


def test_openapi_documents_both_request_bodies(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    body = spec["paths"]["/forecast"]["post"]["requestBody"]["content"]
    assert {"multipart/form-data", "application/json"} <= body.keys()
    # The body is read a bar at a time: bars is its only field, as the schema says.
    assert body["application/json"]["schema"]["additionalProperties"] is False
    parameters = {p["name"] for p in spec["paths"]["/forecast"]["post"]["parameters"]}
    assert parameters == {"model", "ticker", "columns", "tickers", "horizons"}
    paths = {"/forecast", "/predictions", "/predictions/{ticker}", "/health", "/models"}
    assert paths <= spec["paths"].keys()
    assert client.get("/docs").status_code == 200
    page = client.get("/")
    assert page.status_code == 200 and 'id="chart"' in page.text
    assert client.get("/static/app.js").status_code == 200


def test_several_horizons_are_the_backtest_at_those_horizons(client: TestClient, data_dir: Path,
                                                             offline_settings: Settings) -> None:
    path = data_dir / "vgi" / "vgi2.csv"
    response = upload(client, path, model="naive", horizons="1,5,20")
    assert response.status_code == 200, response.text
    answer = response.json()
    config = CoreConfig.from_settings(offline_settings, model="naive", horizons=(1, 5, 20))
    expected = run_backtest(read_csv_bars([path]).bars, config)
    assert answer["horizons"] == [1, 5, 20]
    assert answer["predictions"] == expected.predictions
    assert answer["scores"] == expected.scores
    assert [p["horizon"] for p in answer["predictions"][:3]] == [1, 5, 20]
    metrics = answer["metrics"]
    assert [m["horizon"] for m in metrics["by_horizon"]] == [1, 5, 20]
    for shown in metrics["by_horizon"]:
        summary = expected.by_horizon[shown["horizon"]]
        assert shown["pooled"] == pytest.approx(summary.pooled)
        assert shown["panel"] == pytest.approx(summary.panel)
        assert shown["per_ticker"].keys() == summary.per_ticker.keys()
    # The existing shape is the shortest horizon's, as without the parameter.
    assert metrics["pooled"] == metrics["by_horizon"][0]["pooled"]
    assert metrics["pooled"]["n"] > metrics["by_horizon"][2]["pooled"]["n"]


def test_without_horizons_the_answer_is_the_servers_one_day(client: TestClient, data_dir: Path) -> None:
    answer = upload(client, data_dir / "vgi" / "vgi2.csv", model="naive").json()
    assert answer["horizons"] == [1]
    assert {p["horizon"] for p in answer["predictions"]} == {1}
    (one_day,) = answer["metrics"]["by_horizon"]
    assert one_day == {"horizon": 1, **{k: answer["metrics"][k] for k in ("pooled", "per_ticker", "panel")}}


@pytest.mark.parametrize("horizons", ["5,1", "0", "1,x", "", "1,261", "1,,5"])
def test_bad_horizons_are_a_one_line_422(client: TestClient, data_dir: Path, horizons: str) -> None:
    response = upload(client, data_dir / "vgi" / "vgi2.csv", horizons=horizons)
    assert response.status_code == 422, response.text
    message = response.json()["detail"]["message"]
    assert message.startswith(f"?horizons={horizons}: horizons must be strictly increasing whole numbers")
    assert "\n" not in message


def test_the_bar_limit_counts_each_horizon(client: TestClient, data_dir: Path) -> None:
    path = data_dir / "bokeh-stocks.csv.gz"
    response = upload(client, path, model="naive", tickers="AAPL,FB,GOOG", horizons="1,5")
    assert response.status_code == 413
    assert response.json()["detail"]["message"].startswith(
        "5614 bars at 2 horizons is more than FORECASTER_API_MAX_BARS=10000")
