"""Dead letters: a rejected input, kept with why it was rejected and where it came from.

A dead letter is the same record whichever side rejects: the replay producer (a CSV row, whose
``source`` is ``file:line``) or the stream worker (a poison message, whose ``source`` is
``topic/partition/offset``), and the API reports the rows of an upload it rejects with it. It is
published as JSON following ``schemas/dead_letter.schema.json``. It lives in the core, beside the
bar and its rejection reasons (:mod:`models.core.bar`), because every one of those sides may import
the core and none may import another.

Examples
--------
>>> from models.core.bar import BarError
>>> letter = DeadLetter.rejected(BarError("negative_volume", "volume -5.0 < 0"),
...                              raw="2013-02-08,1,2,1,2,-5,AAL", source="sp500.csv:2", ticker="AAL",
...                              at="2026-01-02T03:04:05.000+00:00")
>>> letter.to_dict()["reason"], letter.to_dict()["source"]
('negative_volume', 'sp500.csv:2')
>>> DeadLetter.rejected(BarError("not_json", "bad bytes"), raw=b"\\xff{", source="bars/0/7").raw
'\ufffd{'
"""

from __future__ import annotations

import base64
import datetime as dt
from dataclasses import asdict, dataclass, field
from typing import Any

from models.core.bar import REASONS, BarError

#: Characters of the rejected input a dead letter keeps. A message near the broker's size limit
#: grows as JSON (a control byte escapes to six): kept whole, its dead letter could not be published,
#: and a worker could only stop on it again at every restart. The first 16 Ki characters show what it
#: was; ``detail`` says how long it was.
RAW_LIMIT = 16 * 1024
#: Characters of ``detail`` kept. It quotes the rejected value as Python writes it, longer than the
#: value (a key byte of invalid UTF-8 is four characters): uncut, a 2.2 MB key made a dead letter of
#: 11 MB, which the broker refused, and the worker stopped on it at every restart.
DETAIL_LIMIT = 1000


def now_iso() -> str:
    """The current UTC time as ISO 8601 with milliseconds: the ``at`` of a rejection."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class DeadLetter:
    """One rejected row or message.

    Parameters
    ----------
    reason
        A key of :data:`models.core.bar.REASONS`: stable, usable as a metric label.
    detail
        A sentence for people: what exactly was wrong; its first :data:`DETAIL_LIMIT` characters
        when longer, then how long it was (and, with ``raw`` cut, how long that was).
    raw
        The original row text, or the message bytes decoded with ``errors="replace"`` (a stored
        record quarantined by the worker: its bytes in base64); its first :data:`RAW_LIMIT`
        characters when longer (``detail`` then says so).
    source
        ``file:line`` for a CSV row, ``topic/partition/offset`` for a message, ``changelog/partition``
        for a quarantined stored record.
    at
        When it was rejected (ISO 8601, UTC).
    ticker
        The ticker when it could be read, so the dead letter can be keyed like the bars.
    """

    reason: str
    detail: str
    raw: str
    source: str
    at: str = field(default_factory=now_iso)
    ticker: str | None = None

    def __post_init__(self) -> None:
        if self.reason not in REASONS:
            raise ValueError(f"unknown dead-letter reason {self.reason!r}; known: {', '.join(REASONS)}")
        # Frozen: the fields are set the one way dataclasses leave open in __post_init__.
        if len(self.detail) > DETAIL_LIMIT:
            cut = f"{self.detail[:DETAIL_LIMIT]}… (cut from {len(self.detail):,} characters)"
            object.__setattr__(self, "detail", cut)
        if len(self.raw) > RAW_LIMIT:
            object.__setattr__(self, "detail", f"{self.detail} (raw cut to its first {RAW_LIMIT:,} of "
                                               f"{len(self.raw):,} characters)")
            object.__setattr__(self, "raw", self.raw[:RAW_LIMIT])

    @classmethod
    def rejected(cls, error: BarError, *, raw: str | bytes, source: str, ticker: str | None = None,
                 at: str | None = None) -> DeadLetter:
        """The dead letter of a :class:`~models.core.bar.BarError` raised on ``raw``."""
        text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
        return cls(reason=error.reason, detail=error.detail, raw=text, source=source,
                   at=at or now_iso(), ticker=ticker or None)

    @classmethod
    def quarantined(cls, reason: str, error: Exception, raw: bytes, *, source: str, then: str,
                    ticker: str | None = None) -> DeadLetter:
        """The dead letter of a stored record the worker could not decode (``corrupt_state``,
        ``corrupt_position``): its bytes in base64 (a state is binary), why, where it was stored
        (``changelog/partition``) and, in ``then``, what the worker does instead.

        >>> letter = DeadLetter.quarantined("corrupt_position", ValueError("not an offset"), b"\\xff7",
        ...                                 source="app-source_positions-changelog/3",
        ...                                 then="partition 3 is read again from its first offset")
        >>> letter.raw, base64.b64decode(letter.raw), letter.detail
        ('/zc=', b'\\xff7', 'not an offset; partition 3 is read again from its first offset')
        """
        return cls(reason=reason, detail=f"{error}; {then}", raw=base64.b64encode(raw).decode(),
                   source=source, ticker=ticker)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form of ``schemas/dead_letter.schema.json``."""
        return asdict(self)
