"""Where ``step_many``'s time goes: each of its phases timed over the S&P 500 days that
``bench/core_ab.py`` runs, in µs a ticker-bar.

Run from the repository root::

    OPENBLAS_NUM_THREADS=1 .venv/bin/python -m bench.core_phases [--days 60]

The 495 tickers of the full file that have 252 + 300 bars are warmed up on 252 days, then each
phase function of :mod:`models.core.step` (the module docstring's list) is wrapped with a
``perf_counter`` timer and ``step_many`` runs ``--days`` days, one call a day, as the backtest
runs it. "outside the phases" is what ``step_many`` spends between them (the results, the
``[n, horizons]`` arrays). Wall-clock time of one process: run it on a quiet machine; the shares
are the point. A Markdown table for ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import gc
import time
from collections.abc import Callable
from typing import Any

from bench.core_ab import WINDOW, series_rows
from bench.core_bench import machine
from models.core import step as core
from models.core.bar import Bar
from models.core.config import CoreConfig

#: The phases of ``step_many``, as named in :mod:`models.core.step`.
PHASES = ("_checked", "_due", "_score_pending", "_update_volatility", "_kalman_step", "_extend_windows",
          "_extend_features", "_point_forecast", "_scale", "_calibrate", "_intervals", "trailing_vol_rank",
          "regimes", "_made", "_new_states")


def timed(function: Callable[..., Any], spent: dict[str, float], name: str) -> Callable[..., Any]:
    """``function``, adding the seconds each call takes to ``spent[name]``."""
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            spent[name] += time.perf_counter() - start
    return wrapper


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=int, default=60, help="timed days after the 252-day warm-up")
    args = parser.parse_args()
    series = {t: [Bar(*row) for row in rows] for t, rows in series_rows(args.days).items()}
    gc.freeze()  # the bench's own bars out of the collector's passes, as in bench/core_ab.py
    names = sorted(series)
    config = CoreConfig(model="arima")
    states: dict = {}

    def run(begin: int, end: int) -> None:
        for k in range(begin, end):
            bars = [series[t][k] for t in names]
            for bar, result in zip(bars, core.step_many([states.get(t) for t in names], bars, config),
                                   strict=True):
                states[bar.ticker] = result.state

    run(0, WINDOW)
    spent = dict.fromkeys(PHASES, 0.0)
    for name in PHASES:  # step_many looks each phase up in its module's globals at every call
        setattr(core, name, timed(getattr(core, name), spent, name))
    start = time.perf_counter()
    run(WINDOW, WINDOW + args.days)
    total = time.perf_counter() - start
    per_bar = 1e6 / (args.days * len(names))
    print(f"Machine: {machine()}; {len(names)} tickers x {args.days} days, step_many "
          f"{total * per_bar:.1f} µs a ticker-bar\n")
    print("| phase | µs a ticker-bar | share |")
    print("|---|---:|---:|")
    ranked = sorted(spent.items(), key=lambda item: -item[1])
    for name, seconds in [*ranked, ("outside the phases", total - sum(spent.values()))]:
        print(f"| {name} | {seconds * per_bar:.2f} | {seconds / total:.0%} |")


if __name__ == "__main__":
    main()
