"""``forecaster backtest`` and ``forecaster report`` on a real file."""

from __future__ import annotations

import base64
import csv
import re
from pathlib import Path

import pytest

from forecaster.cli import main
from tests.core.helpers import Reversal


def test_backtest_reproduces_the_reference_naive_figures_and_writes_rows_and_report(
        data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The paper's test period of 601988.SH is the last 180 days from 2021-06-22; the data README gives
    # the naive forecast's MAE 0.01172, RMSE 0.01645, MAPE 0.381 %, R² 0.845 there. The window's year
    # before it is read too, so that the ARIMA is fitted when the period starts.
    out, report = tmp_path / "preds.csv", tmp_path / "report.html"
    code = main(["backtest", str(data_dir / "601988.SH.csv"), "--model", "arima", "--start", "2020-06-01",
                 "--out", str(out), "--report", str(report)])
    printed = capsys.readouterr().out
    assert code == 0
    with out.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    period = [r for r in rows if r["actual_date"] >= "2021-06-22"]
    assert len(period) == 180 and all(r["warmup"] == "False" for r in period)
    naive_errors = [abs(float(r["naive_error"])) for r in period]
    assert sum(naive_errors) / 180 == pytest.approx(0.01172, abs=5e-6)
    assert re.search(r"^MAE \$ \(pooled\)\s+\d\.\d{4}\s+\d\.\d{4}$", printed, re.MULTILINE)
    assert re.search(r"^relative MAE over 1 tickers \(geometric mean\) 1\.\d{4}; "
                     r"MAE below naive on 0 of 1 tickers$", printed, re.MULTILINE)
    assert re.search(r"^95 % interval\s+coverage 0\.\d{4}", printed, re.MULTILINE)
    assert rows[0].keys() >= {"ticker", "as_of", "target_date", "predicted_close", "model", "actual_close",
                              "error", "lower_95", "upper_95", "warmup"}
    page = report.read_text()
    image = re.search(r"data:image/png;base64,([A-Za-z0-9+/=]+)", page)
    assert image and base64.b64decode(image.group(1)).startswith(b"\x89PNG")

    picture = tmp_path / "report.png"
    assert main(["report", str(out), "--out", str(picture), "--last", "100"]) == 0
    assert picture.read_bytes().startswith(b"\x89PNG")


def test_backtest_summarises_each_horizon_after_the_shortest(data_dir: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("FORECASTER_HORIZONS", "1,5")
    out = tmp_path / "preds.csv"
    assert main(["backtest", str(data_dir / "601988.SH.csv"), "--model", "arima", "--start", "2021-01-01",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out.splitlines()
    with out.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {r["horizon"] for r in rows} == {"1", "5"}

    def scored(horizon: str) -> list[dict[str, str]]:
        return [r for r in rows if r["horizon"] == horizon and r["actual_close"] and r["warmup"] == "False"]

    def mae(horizon: str) -> str:
        return f"{sum(abs(float(r['error'])) for r in scored(horizon)) / len(scored(horizon)):.4f}"

    # The lines before any "horizon H:" are the shortest horizon's, and say so; each longer one follows
    # with its own count, table and panel line, its figures computed from its own rows.
    assert printed[1].endswith(f"{len(scored('1'))} after warm-up (compared with naive on those days) "
                               f"(horizon 1)")
    (five,) = [i for i, line in enumerate(printed) if line.startswith("horizon ")]
    assert printed[five] == f"horizon 5: {len(scored('5'))} scored after warm-up"
    assert 0 < len(scored("5")) < len(scored("1"))
    maes = [line.split() for line in printed if line.startswith("MAE $ (pooled)")]
    assert [line[3] for line in maes] == [mae("1"), mae("5")]
    panels = [i for i, line in enumerate(printed) if line.startswith("relative MAE over 1 tickers")]
    assert len(panels) == 2 and panels[0] < five < panels[1]


def test_backtest_refuses_an_unknown_model_in_one_line(data_dir: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["backtest", str(data_dir / "601988.SH.csv"), "--model", "lstm"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "--model must be naive, arima or models:/NAME@ALIAS" in error


def test_report_refuses_a_file_that_is_not_a_backtest(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    other = tmp_path / "bars.csv"
    other.write_text("date,close\n2020-01-01,1.0\n")
    assert main(["report", str(other), "--out", str(tmp_path / "r.png")]) == 2
    assert "holds no predictions" in capsys.readouterr().err


@pytest.mark.parametrize(("content", "says"), [
    (bytes(range(256)), "is not UTF-8 text"),
    (b"ticker,predicted_close,actual_close\nACME,1.0\n", ":2: not as many fields as the header"),
    (b"ticker,predicted_close,actual_close\nACME,1.0,\x1b[2J\n", ":2: could not convert string to float: "
     "'\\x1b[2J'"),
], ids=["binary", "row cut short", "not a number"])
def test_report_names_the_file_and_line_it_cannot_read(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                       content: bytes, says: str) -> None:
    # It said "'utf-8' codec can't decode byte 0x80 in position 128", naming no file.
    predictions = tmp_path / "preds.csv"
    predictions.write_bytes(content)
    assert main(["report", str(predictions), "--out", str(tmp_path / "r.png")]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"forecaster report: error: {predictions}") and says in line, line
    assert line.endswith("(expected a `forecaster backtest --out` file)")


def test_backtest_serves_a_registered_model_by_uri(data_dir: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from models import registry

    asked = []
    monkeypatch.setattr(registry, "load_model", lambda uri, settings: asked.append(uri) or Reversal())
    out = tmp_path / "preds.csv"
    assert main(["backtest", str(data_dir / "601988.SH.csv"), "--model", "models:/next-close@champion",
                 "--start", "2021-01-01", "--out", str(out)]) == 0
    assert asked == ["models:/next-close@champion"]
    assert "model reversal:" in capsys.readouterr().out
    with out.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {r["model"] for r in rows} == {"reversal"} and rows[-1]["warmup"] == "False"
