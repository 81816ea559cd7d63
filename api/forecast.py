"""``POST /forecast``: the backtest of ``forecaster backtest`` over a request's bars, as one JSON answer."""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson

from api.champion import ModelChoice
from api.inputs import InputError
from forecaster.redaction import printable
from models.backtest import HorizonSummary, run_backtest
from models.core.bar import BarError
from models.core.config import CoreConfig
from models.core.deadletter import DeadLetter
from producers.readers import ReadResult


def parse_horizons(text: str) -> tuple[int, ...]:
    """The horizons of ``?horizons=1,5,20``, checked by :class:`~models.core.config.CoreConfig`, whose
    one-line error a bad value gets (as a 422).

    >>> parse_horizons("1, 5,20")
    (1, 5, 20)
    >>> parse_horizons("5,x")
    Traceback (most recent call last):
    ...
    api.inputs.InputError: ?horizons=5,x: horizons must be strictly increasing whole numbers of trading \
days in 1..260; got (5, 'x')
    """
    # A part that is not a whole number (a few ASCII digits: int() takes others, or refuses them
    # with its own error) stays text, which CoreConfig refuses with the others.
    parts = [part.strip() for part in text.split(",")]
    horizons = tuple(int(part) if part.isascii() and part.isdigit() and len(part) <= 9 else part
                     for part in parts)
    try:
        CoreConfig(horizons=horizons)  # type: ignore[arg-type]  # checked here, text parts included
    except ValueError as error:
        raise InputError(f"?horizons={printable(text, 100)}: {error}") from None
    return horizons  # type: ignore[return-value]  # every part is an int once CoreConfig took them


def with_horizons(choice: ModelChoice, horizons: tuple[int, ...] | None) -> ModelChoice:
    """``choice`` forecasting at ``horizons`` (None: the server's FORECASTER_HORIZONS)."""
    if horizons is None:
        return choice
    return dataclasses.replace(choice, config=dataclasses.replace(choice.config, horizons=horizons))


def check_size(result: ReadResult, max_bars: int, horizons: int = 1) -> None:
    """Refuse (413) more bars than one request may forecast at ``horizons`` horizons: the answer holds
    two records per bar and horizon, so ``max_bars`` bounds bars times horizons."""
    if len(result.bars) * horizons > max_bars:
        at = f" at {horizons} horizons" if horizons > 1 else ""
        raise InputError(f"{len(result.bars)} bars{at} is more than FORECASTER_API_MAX_BARS={max_bars}; "
                         "choose some tickers with ?tickers=A,B, a shorter history or fewer horizons",
                         status=413)


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

    The records are those of every horizon of ``choice.config``; ``metrics`` are the shortest
    horizon's, with each horizon's in ``metrics["by_horizon"]``.

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
    if not backtest.predictions:  # every bar set aside: the server's fault, which its log shows
        raise InputError("the forecasting step failed on every bar (step_failed)", status=500,
                         **dead_letters(result))
    # Every record of a run names its model and version (warm-up records too): the first one says.
    first = backtest.predictions[0]
    return {
        "model": {"name": first["model"], "version": first["model_version"], "requested": choice.requested},
        "rows_read": result.rows_read,
        "filtered": result.filtered,
        "bars": len(result.bars) - len(backtest.rejected),
        "tickers": sorted(backtest.states),
        "horizons": list(choice.config.horizons),
        **dead_letters(result),
        "predictions": backtest.predictions,
        "scores": backtest.scores,
        "metrics": {**_summary(backtest.by_horizon[choice.config.horizons[0]]),
                    "by_horizon": [{"horizon": h, **_summary(summary)}
                                   for h, summary in backtest.by_horizon.items()]},
    }


def _summary(summary: HorizonSummary) -> dict[str, Any]:
    return {"pooled": summary.pooled, "per_ticker": summary.per_ticker, "panel": summary.panel}
