"""What ``forecaster backtest`` writes: never over its inputs or itself, never half a file, and
memory that does not grow with the rows it rejects."""

from __future__ import annotations

import os
import stat
import tracemalloc
from pathlib import Path

import pytest

from forecaster.cli import main
from forecaster.commands.backtest import write_rows

HEADER = "date,open,high,low,close,volume\n"
ROWS = [f"2024-01-{day:02d},10,14,9,{10 + day / 10},100\n" for day in range(2, 31)]


def _error(capsys: pytest.CaptureFixture[str]) -> str:
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    return lines[0]


def test_an_output_that_is_an_input_or_the_other_output_is_refused_before_any_work(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Each was taken: the bars replaced by the predictions, the predictions by the report.
    bars = tmp_path / "acme.csv"
    bars.write_text(HEADER + "".join(ROWS))
    assert main(["backtest", str(bars), "--model", "naive", "--out", str(bars)]) == 2
    assert _error(capsys).endswith(f"--out {bars} is also an input: its bars would be overwritten; write "
                                   "elsewhere")
    assert main(["backtest", str(tmp_path), "--model", "naive", "--report", str(tmp_path / "ACME.CSV.html"),
                 "--out", str(tmp_path / "acme.csv")]) == 2
    assert "is also an input" in _error(capsys)
    assert bars.read_text() == HEADER + "".join(ROWS)
    same = tmp_path / "x.html"
    assert main(["backtest", str(bars), "--model", "naive", "--out", str(same), "--report", str(same)]) == 2
    assert _error(capsys).endswith(f"--out and --report are both {same}: the report would overwrite the "
                                   "predictions")
    assert not same.exists()


def test_a_write_that_fails_midway_leaves_the_file_that_was_there(tmp_path: Path) -> None:
    out = tmp_path / "preds.csv"
    out.write_text("before\n")
    rows = [{"ticker": "ACME", "close": 1.0}, {"ticker": "ACME", "close": 2.0, "extra": 3}]
    with pytest.raises(ValueError, match="extra"):
        write_rows(rows, out)
    assert out.read_text() == "before\n" and [p.name for p in tmp_path.iterdir()] == ["preds.csv"]
    write_rows(rows[:1], out)
    assert out.read_text().splitlines() == ["ticker,close", "ACME,1.0"]


def test_a_file_written_keeps_its_mode_and_a_link_is_written_through(tmp_path: Path) -> None:
    # Renamed from a temporary file, it was the owner's alone (0600), and a link became a file.
    out, rows = tmp_path / "preds.csv", [{"ticker": "ACME", "close": 1.0}]
    write_rows(rows, out)
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~umask
    out.chmod(0o640)
    write_rows(rows, out)
    assert stat.S_IMODE(out.stat().st_mode) == 0o640
    link = tmp_path / "latest.csv"
    link.symlink_to(out)
    write_rows([{"ticker": "ZETA", "close": 2.0}], link)
    assert link.is_symlink() and out.read_text().splitlines() == ["ticker,close", "ZETA,2.0"]


def test_rejected_rows_are_counted_not_held(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Each dead letter was kept though only their counts are shown: 100,000 took 45 MB, a million 690 MB.
    bad = [f"2013-01-{k % 28 + 1:02d},1,1,2,1,1\n" for k in range(100_000)]  # low above open and close
    path = tmp_path / "bad.csv"
    path.write_text(HEADER + "".join(bad) + "".join(ROWS))
    tracemalloc.start()
    try:
        assert main(["backtest", str(path), "--ticker", "B", "--model", "naive"]) == 0
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "100000 rejected (low_above_open_close 100000)" in capsys.readouterr().out
    assert peak < 25_000_000
