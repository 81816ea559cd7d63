"""A forecast request's history, read into bars and dead letters, or refused with the reason.

A CSV upload goes through :func:`producers.readers.read_csv_bars`, the reader of ``forecaster replay``
and ``forecaster backtest``, from a temporary file that keeps the upload's name (a single-ticker file
takes its ticker from it). A gzipped upload is inflated into that file first, chunk by chunk, and
refused (413) once it passes the size limit: the reader would inflate it whole in memory.
JSON bars go through :meth:`models.core.bar.Bar.from_dict`, the stream
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
import shutil
import tempfile
import zlib
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path, PureWindowsPath
from typing import Any, BinaryIO

from models.core.bar import Bar, BarError
from models.core.deadletter import DeadLetter
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


#: Bytes read or inflated at a time: what an upload costs in memory beyond its bars.
CHUNK = 1 << 20
GZIP_MAGIC = b"\x1f\x8b"


def too_large(what: str, limit: int) -> InputError:
    """The 413 of an input over ``FORECASTER_API_MAX_BYTES``."""
    return InputError(f"{what} more than FORECASTER_API_MAX_BYTES ({limit:,} bytes): send a shorter "
                      "history, choose some tickers, or raise the setting", status=413)


def read_upload(name: str | None, source: BinaryIO, *, limit: int, ticker: str | None = None,
                columns: Mapping[str, str] | None = None,
                tickers: Collection[str] | None = None) -> ReadResult:
    """The bars and dead letters of an uploaded CSV file (plain or gzipped); ``tickers`` selects.

    ``source`` is read in chunks; a gzipped file (also one gzipped twice) is refused with a 413 once
    its inflated size passes ``limit`` bytes.
    """
    file_name = upload_name(name)
    with tempfile.TemporaryDirectory(prefix="forecaster-upload-") as folder:
        path = Path(folder) / file_name
        with path.open("wb") as out:
            shutil.copyfileobj(source, out, CHUNK)
        with path.open("rb") as handle:
            head = handle.read(2)
        while head == GZIP_MAGIC:
            head = _inflate(path, path.with_name(f"inflated-{file_name}"), limit, file_name)
        if not _has_text(path):
            raise InputError(f"{file_name}: the file is empty")
        try:
            return read_csv_bars([path], ticker=ticker, columns=columns, tickers=tickers)
        except LayoutError as error:  # bytes that are not CSV
            raise InputError(str(error)) from None


def _inflate(path: Path, scratch: Path, limit: int, label: str) -> bytes:
    """Replace the gzip file ``path`` by its content, refused past ``limit`` bytes; its first 2 bytes.

    >>> import gzip, tempfile
    >>> path = Path(tempfile.mkdtemp()) / "rows.csv.gz"
    >>> _ = path.write_bytes(gzip.compress(b"date,close\\n" * 1000) * 2)  # two gzip members
    >>> _inflate(path, path.with_suffix(".tmp"), 22_000, "rows.csv.gz"), path.stat().st_size
    (b'da', 22000)
    >>> _ = path.write_bytes(gzip.compress(b"date,close\\n" * 1000))
    >>> _inflate(path, path.with_suffix(".tmp"), 5_000, "rows.csv.gz")
    Traceback (most recent call last):
    ...
    api.inputs.InputError: rows.csv.gz inflates to more than FORECASTER_API_MAX_BYTES (5,000 bytes): ...
    """
    inflater = zlib.decompressobj(wbits=47)  # 32 + 15: a gzip header, any window
    written = 0
    with path.open("rb") as source, scratch.open("wb") as out:
        try:
            pending = source.read(CHUNK)
            while pending:
                # At most CHUNK bytes out per call, however much the input inflates.
                data = inflater.decompress(pending, CHUNK)
                written += len(data)
                if written > limit:
                    raise too_large(f"{label} inflates to", limit)
                out.write(data)
                if inflater.eof:  # the end of a gzip member; another may follow, as gzip allows
                    pending = inflater.unused_data or source.read(CHUNK)
                    inflater = zlib.decompressobj(wbits=47) if pending else inflater
                else:
                    pending = inflater.unconsumed_tail or source.read(CHUNK)
            data = inflater.flush()  # what zlib still holds: at most its window
            if written + len(data) > limit:
                raise too_large(f"{label} inflates to", limit)
            out.write(data)
            if not inflater.eof:
                raise zlib.error("the stream is cut short")
        except zlib.error as exc:
            raise InputError(f"{label}: starts like gzip but cannot be decompressed ({exc})") from None
    scratch.replace(path)
    with path.open("rb") as handle:
        return handle.read(2)


def _has_text(path: Path) -> bool:
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            if chunk.strip():
                return True
    return False


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
