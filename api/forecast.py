"""``POST /forecast``: the backtest of ``forecaster backtest`` over a request's bars, as one JSON answer."""

from __future__ import annotations

from typing import Any

import orjson

from api.champion import ModelChoice
from api.inputs import InputError
from forecaster.redaction import printable
from models.backtest import run_backtest
from models.core.bar import BarError
from models.core.deadletter import DeadLetter
from producers.readers import ReadResult


def check_size(result: ReadResult, max_bars: int) -> None:
    """Refuse (413) more bars than one request may forecast: the answer holds two records per bar."""
    if len(result.bars) > max_bars:
        raise InputError(f"{len(result.bars)} bars is more than FORECASTER_API_MAX_BARS={max_bars}; "
                         "choose some tickers with ?tickers=A,B or a shorter history", status=413)


#: Characters of a rejected row an answer shows: enough to see what it was, never a whole file.
RAW_SHOWN = 500


def dead_letters(result: ReadResult) -> dict[str, Any]:
    """The answer's dead letters: the ones ``result`` kept (their text cut and printable), and counts.

    >>> from models.core.bar import BarError
    >>> result = ReadResult(keep=1)
    >>> for raw in ("\x1b[2J1,2", "3"):
    ...     result.reject(DeadLetter.rejected(BarError("bad_date", "?"), raw=raw, source="a.csv:2"))
    >>> shown = dead_letters(result)
    >>> [d["raw"] for d in shown["dead_letters"]]
    ['\\\\x1b[2J1,2']
    >>> shown["dead_letters_total"], shown["dead_letters_by_reason"]
    (2, {'bad_date': 2})
    """
    return {
        "dead_letters": [{key: printable(value, RAW_SHOWN) if isinstance(value, str) else value
                          for key, value in letter.to_dict().items()} for letter in result.dead_letters],
        "dead_letters_total": result.dead_letters_total,
        "dead_letters_by_reason": result.rejected_by_reason(),
    }


def run(result: ReadResult, choice: ModelChoice) -> dict[str, Any]:
    """Walk the core over ``result.bars`` with ``choice``; predictions, scores, metrics, dead letters.

    Raises
    ------
    InputError
        No bar to forecast: the input had no rows, or validation rejected every one (the first ones
        are in the error's ``dead_letters``, all counted by reason).
    """
    if not result.bars:
        message = ("the input holds no rows" if not result.rows_read else
                   f"no bar to forecast among the {result.rows_read} rows: {result.dead_letters_total} "
                   f"rejected, {result.filtered} of other tickers")
        raise InputError(message, **dead_letters(result))
    backtest = run_backtest(result.bars, choice.config, choice.model)
    # The readers already refuse a second bar of a ticker and day, so the backtest applies every bar;
    # were one not applied, it is a dead letter like the worker's, and the count still adds up.
    for bar, reason in backtest.rejected:
        result.reject(DeadLetter.rejected(BarError(reason, f"{bar.ticker} {bar.date} was not applied"),
                                          raw=orjson.dumps(bar.to_dict()), source=bar.source or "",
                                          ticker=bar.ticker))
    # Every record of a run names its model and version (warm-up records too): the first one says.
    first = backtest.predictions[0]
    return {
        "model": {"name": first["model"], "version": first["model_version"], "requested": choice.requested},
        "rows_read": result.rows_read,
        "filtered": result.filtered,
        "bars": len(result.bars) - len(backtest.rejected),
        "tickers": sorted(backtest.states),
        **dead_letters(result),
        "predictions": backtest.predictions,
        "scores": backtest.scores,
        "metrics": {"pooled": backtest.pooled, "per_ticker": backtest.per_ticker, "panel": backtest.panel},
    }
