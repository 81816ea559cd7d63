"""``POST /forecast``: the backtest of ``forecaster backtest`` over a request's bars, as one JSON answer."""

from __future__ import annotations

from typing import Any

import orjson

from api.champion import ModelChoice
from api.inputs import InputError
from models.backtest import run_backtest
from models.core.bar import BarError
from models.core.deadletter import DeadLetter
from producers.readers import ReadResult


def check_size(result: ReadResult, max_bars: int) -> None:
    """Refuse (413) more bars than one request may forecast: the answer holds two records per bar."""
    if len(result.bars) > max_bars:
        raise InputError(f"{len(result.bars)} bars is more than FORECASTER_API_MAX_BARS={max_bars}; "
                         "choose some tickers with ?tickers=A,B or a shorter history", status=413)


def run(result: ReadResult, choice: ModelChoice) -> dict[str, Any]:
    """Walk the core over ``result.bars`` with ``choice``; predictions, scores, metrics, dead letters.

    Raises
    ------
    InputError
        No bar to forecast: the input had no rows, or validation rejected every one (they are in
        the error's ``dead_letters``).
    """
    dead_letters = [letter.to_dict() for letter in result.dead_letters]
    if not result.bars:
        message = ("the input holds no rows" if not result.rows_read else
                   f"no bar to forecast among the {result.rows_read} rows: {len(dead_letters)} rejected, "
                   f"{result.filtered} of other tickers")
        raise InputError(message, dead_letters=dead_letters)
    backtest = run_backtest(result.bars, choice.config, choice.model)
    # The readers already refuse a second bar of a ticker and day, so the backtest applies every bar;
    # were one not applied, it is a dead letter like the worker's, and the count still adds up.
    dead_letters += [DeadLetter.rejected(BarError(reason, f"{bar.ticker} {bar.date} was not applied"),
                                         raw=orjson.dumps(bar.to_dict()), source=bar.source or "",
                                         ticker=bar.ticker).to_dict()
                     for bar, reason in backtest.rejected]
    # Every record of a run names its model and version (warm-up records too): the first one says.
    first = backtest.predictions[0]
    return {
        "model": {"name": first["model"], "version": first["model_version"], "requested": choice.requested},
        "rows_read": result.rows_read,
        "filtered": result.filtered,
        "bars": len(result.bars) - len(backtest.rejected),
        "tickers": sorted(backtest.states),
        "dead_letters": dead_letters,
        "predictions": backtest.predictions,
        "scores": backtest.scores,
        "metrics": {"pooled": backtest.pooled, "per_ticker": backtest.per_ticker, "panel": backtest.panel},
    }
