"""A forecast request's history, read into bars and dead letters, or refused with the reason.

A CSV upload goes through :func:`producers.readers.read_csv_bars`, the reader of ``forecaster replay``
and ``forecaster backtest``, from a temporary file that keeps the upload's name (a single-ticker file
takes its ticker from it). JSON bars go through :meth:`models.core.bar.Bar.from_dict`, the stream
worker's validation of a message. Either way a row that validation rejects becomes a dead letter
with its reason and source, and a request whose input cannot be read at all raises
:class:`InputError`, which the app answers with a 4xx.

Examples
--------
>>> bar = {"ticker": "ACME", "date": "2024-01-05", "open": 10, "high": 11, "low": 9, "close": 10, "volume": 9}
>>> result = read_json_bars([bar, bar, {**bar, "date": "2024-01-08", "high": 9}])
>>> [b.source for b in result.bars], [(d.reason, d.source) for d in result.dead_letters]
(['bars[0]'], [('duplicate', 'bars[1]'), ('high_below_open_close', 'bars[2]')])
>>> upload_name("../../etc/passwd"), upload_name(r"C:\\data\\aapl.csv"), upload_name("..")
('passwd', 'aapl.csv', 'upload.csv')
"""

from __future__ import annotations

import datetime as dt
import json
import re
import tempfile
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path, PureWindowsPath
from typing import Any

from models.core.bar import Bar, BarError
from producers.deadletter import DeadLetter
from producers.readers import LayoutError, ReadResult, read_csv_bars


class InputError(ValueError):
    """Input that cannot be read at all; ``status`` is the HTTP status of the answer.

    ``details`` (e.g. the rejected rows) join the message in the answer's ``detail`` object.
    """

    def __init__(self, message: str, status: int = 422, **details: Any) -> None:
        super().__init__(message)
        self.status = status
        self.details = details

    @property
    def detail(self) -> dict[str, Any]:
        """The answer's ``detail``: the message and the details."""
        return {"message": str(self), **self.details}


def upload_name(name: str | None) -> str:
    """The upload's base name, safe as a file name (no folders, no leading dots)."""
    base = re.sub(r"[^\w.-]", "_", PureWindowsPath(name or "").name).lstrip(".")
    return base or "upload.csv"


def read_upload(name: str | None, data: bytes, *, ticker: str | None = None,
                columns: Mapping[str, str] | None = None,
                tickers: Collection[str] | None = None) -> ReadResult:
    """The bars and dead letters of an uploaded CSV file (plain or gzipped); ``tickers`` selects."""
    file_name = upload_name(name)
    if not data.strip():
        raise InputError(f"{file_name}: the file is empty")
    with tempfile.TemporaryDirectory(prefix="forecaster-upload-") as folder:
        path = Path(folder) / file_name
        path.write_bytes(data)
        try:
            return read_csv_bars([path], ticker=ticker, columns=columns, tickers=tickers)
        except LayoutError as error:  # also a corrupt gzip stream or bytes that are not CSV
            raise InputError(str(error)) from None


def read_json_bars(records: Sequence[Any], *, tickers: Collection[str] | None = None) -> ReadResult:
    """The bars and dead letters of JSON bar objects; ``bars[i]`` is the source of the i-th.

    With ``tickers``, objects of other tickers are counted as filtered, as the CSV reader does.
    """
    result = ReadResult(rows_read=len(records))
    accepted: dict[tuple[str, dt.date], str] = {}
    selected = None if tickers is None else set(tickers)
    for index, record in enumerate(records):
        source = f"bars[{index}]"
        if selected is not None and isinstance(record, Mapping) and record.get("ticker") not in selected:
            result.filtered += 1
            continue
        try:
            bar = Bar.from_dict({**record, "source": source} if isinstance(record, Mapping) else record)
            first = accepted.setdefault((bar.ticker, bar.date), source)
            if first != source:
                raise BarError("duplicate", f"{bar.ticker} {bar.date} was already given as {first}")
        except BarError as error:
            ticker = record.get("ticker") if isinstance(record, Mapping) else None
            result.dead_letters.append(DeadLetter.rejected(
                error, raw=json.dumps(record), source=source,
                ticker=ticker.strip() if isinstance(ticker, str) else None))
            continue
        result.bars.append(bar)
    result.bars.sort(key=lambda bar: (bar.date, bar.ticker))
    return result
