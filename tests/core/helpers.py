"""Small drivers, a deterministic external model and the S&P 500 sample shared by the core's tests."""

from __future__ import annotations

import inspect
import random
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import pytest

import models.core.step as step_module
from models.core.bar import Bar
from models.core.config import CoreConfig
from models.core.features import FEATURE_NAMES
from models.core.model_slot import PointModel
from models.core.state import TickerState
from models.core.step import StepResult, step, step_many

# Every 8th ticker (alphabetically) of the 470 S&P 500 tickers that have all 1,259 days of
# the S&P 500 file (sp500-5yr-sample.csv.gz carries them): a spread of sectors, chosen by rule rather
# than by result.
SP500_SAMPLE = (
    "A", "ADBE", "AES", "AKAM", "AME", "ANTM", "ARNC", "AZO", "BF.B", "BXP", "CBOE", "CHD", "CMA", "COF",
    "CSCO", "CXO", "DIS", "DRE", "ECL", "EQIX", "EW", "FBHS", "FL", "GE", "GPN", "HBAN", "HII", "HSIC",
    "INCY", "IT", "JPM", "KMX", "LEG", "LNT", "MAA", "MCO", "MMC", "MRO", "NBL", "NKE", "NUE", "PBCT",
    "PFG", "PM", "PSA", "RE", "RMD", "SBUX", "SLG", "SRE", "SYMC", "TJX", "TSN", "UHS", "UTX", "VRSK",
    "WEC", "WYN", "XRX",
)


class Reversal:
    """A deterministic external model: tomorrow undoes a tenth of today's return."""

    name, version, lookback = "reversal", "7", 3

    def __init__(self) -> None:
        self.calls: list[int] = []

    def predict_returns(self, windows: np.ndarray) -> np.ndarray:
        assert windows.shape[1:] == (self.lookback, len(FEATURE_NAMES)) and windows.dtype == np.float64
        self.calls.append(len(windows))
        return -0.1 * windows[:, -1, FEATURE_NAMES.index("log_return")]


def run(bars: Iterable[Bar], config: CoreConfig, model: PointModel | None = None) -> list[StepResult]:
    """``step`` over one ticker's bars, oldest first."""
    state = None
    results = []
    for bar in bars:
        result = step(state, bar, config, model)
        results.append(result)
        state = result.state
    return results


def fail_step_when(monkeypatch: pytest.MonkeyPatch,
                   when: Callable[[Sequence[Bar], PointModel | None], bool]) -> None:
    """Make the core's step raise ``ZeroDivisionError("a bug of the core")`` on the batches (bars and
    model) that ``when`` picks, late in the step, as a bug of the core that their numbers meet would."""
    made = step_module._made
    signature = inspect.signature(made)

    def failing(*args: Any, **kwargs: Any) -> Any:
        given = signature.bind(*args, **kwargs).arguments
        if when(given["bars"], given["model"]):
            raise ZeroDivisionError("a bug of the core")
        return made(*args, **kwargs)

    monkeypatch.setattr(step_module, "_made", failing)


#: A short window and frequent refits: the ARIMA fits within a test's few bars.
SMALL = dict(window=60, refit_every=10)


def run_in_random_batches(bars: list[Bar], config: CoreConfig, model: Reversal | None,
             rng: random.Random) -> dict[tuple[str, str], StepResult]:
    """Run bars in random batches (one bar per ticker per batch, each ticker's bars in order)."""
    states: dict[str, TickerState] = {}
    queues: dict[str, list[Bar]] = {}
    for bar in bars:
        queues.setdefault(bar.ticker, []).append(bar)
    out = {}
    while queues:
        tickers = rng.sample(sorted(queues), rng.randint(1, len(queues)))
        batch = [queues[t].pop(0) for t in tickers]
        for bar, result in zip(batch, step_many([states.get(b.ticker) for b in batch], batch, config, model),
                               strict=True):
            states[bar.ticker] = result.state
            out[(bar.ticker, bar.date.isoformat())] = result
        queues = {t: q for t, q in queues.items() if q}
    return out
