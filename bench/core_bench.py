"""Cost per ticker-bar of the forecasting core against statsmodels, side by side, on real data.

Run from the repository root::

    OPENBLAS_NUM_THREADS=1 .venv/bin/python -m bench.core_bench [--tickers 495] [--days 300]

(495 of the file's 505 tickers have the 252 + 300 bars it needs.)

It reads the full S&P 500 file (``bench/data.py``) with the producers' reader, then times, on the same
series and ARIMA order:

- statsmodels refitting ``ARIMA`` on the rolling window at every bar (what a naive stream would do);
- statsmodels ``results.extend`` with one new bar (fixed parameters);
- the core's hot path: one Kalman update plus the one-step forecast, one ticker and batched;
- the core's refit (least squares plus the end-of-window filter state), per refit and amortised;
- the whole ``step`` (scoring, ARIMA, features, intervals, records, new state; refits included)
  one ticker at a time and ``step_many`` over all tickers day by day;
- ``step_many`` with the horizons 1, 5 and 20 against the default (1 only), over the same days in
  alternating blocks, as a ratio with the CPU per ticker-bar of each.

Times are CPU time of this process (``time.process_time``), so that other work on a shared machine
slows the numbers less than it would wall-clock time; one BLAS thread keeps statsmodels from being
charged for threads that spin on a busy machine. The result is a Markdown section for
``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bench.data import sp500_file
from models.core.arima import Arima, kalman_update
from models.core.bar import Bar
from models.core.config import CoreConfig
from models.core.step import step, step_many
from producers.readers import read_csv_bars


def per_call(func: Callable[[], object], repeat: int) -> float:
    """Best-of-three mean CPU seconds per call over ``repeat`` calls."""
    best = float("inf")
    for _ in range(3):
        start = time.process_time()
        for _ in range(repeat):
            func()
        best = min(best, (time.process_time() - start) / repeat)
    return best


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} cores visible, Python {platform.python_version()}, "
            f"numpy {np.__version__}")


def load(tickers: int, days: int, warm: int) -> dict[str, list[Bar]]:
    path = sp500_file()
    by_ticker: dict[str, list[Bar]] = {}
    for bar in read_csv_bars([path]).bars:
        by_ticker.setdefault(bar.ticker, []).append(bar)
    complete = sorted(t for t, bars in by_ticker.items() if len(bars) >= warm + days)
    if len(complete) < tickers:
        raise SystemExit(f"only {len(complete)} tickers have {warm + days} bars")
    return {t: by_ticker[t][: warm + days] for t in complete[:tickers]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tickers", type=int, default=495)
    parser.add_argument("--days", type=int, default=300, help="timed bars per ticker after the window")
    args = parser.parse_args()
    config = CoreConfig(model="arima")
    arima = Arima(config.order)
    series = load(args.tickers, args.days, config.window)
    names = sorted(series)
    levels = {t: np.log([b.close for b in series[t]]) for t in names}
    us = 1e6
    rows: list[tuple[str, str]] = []

    # statsmodels, on the first ticker: refit at every bar and extend by one bar.
    from statsmodels.tsa.arima.model import ARIMA

    y = levels[names[0]]
    window = config.window
    warnings.simplefilter("ignore")
    ends = itertools.cycle(range(window, len(y)))
    refit_each = per_call(lambda: ARIMA(y[(i := next(ends)) - window: i], order=config.order).fit(), 10)
    result = ARIMA(y[:window], order=config.order).fit()
    extends = itertools.cycle(range(window, len(y)))
    extend = per_call(lambda: result.extend(y[(i := next(extends)): i + 1]), 100)
    rows += [("statsmodels ARIMA refit every bar (fit on the 252-bar window)", f"{refit_each * 1e3:.1f} ms"),
             ("statsmodels `results.extend` by one bar (fixed parameters)", f"{extend * 1e3:.2f} ms")]

    # The core's hot path: Kalman update + forecast.
    params = np.array([arima.fit(levels[t][:window]) for t in names])
    states = [arima.initial_state(p, levels[t][:window]) for p, t in zip(params, names, strict=True)]
    a_all = np.array([s[0] for s in states])
    cov_all = np.array([s[1] for s in states])
    phi, selection, sigma2 = arima.system(params)
    w_next = np.array([levels[t][window] - levels[t][window - 1] for t in names])
    lag_next = np.array([[levels[t][window]] for t in names])

    def hot(k: slice) -> None:
        a, _, _, _ = kalman_update(a_all[k], cov_all[k], phi[k], selection[k], sigma2[k], w_next[k])
        arima.forecast(params[k], a, lag_next[k])

    hot_single = per_call(lambda: hot(slice(0, 1)), 5000)
    hot_batch = per_call(lambda: hot(slice(None)), 200) / len(names)
    first = levels[names[0]][:window]
    refit_cost = per_call(lambda: arima.initial_state(arima.fit(first), first), 500)
    rows += [("core hot path, one ticker (Kalman update + forecast)", f"{hot_single * us:.1f} µs"),
             (f"core hot path, batched over {len(names)} tickers", f"{hot_batch * us:.2f} µs"),
             ("core refit (least squares + end-of-window state), per refit", f"{refit_cost * us:.0f} µs"),
             (f"core refit amortised over refit_every={config.refit_every}",
              f"{refit_cost / config.refit_every * us:.1f} µs")]

    # Whole steps, refits included: warm every ticker up, then time the next `days` bars.
    warm_states = step_many_days(series, names, config, 0, window)
    timed = sum(args.days for _ in names)
    start = time.process_time()
    step_many_days(series, names, config, window, window + args.days, warm_states)
    batched = (time.process_time() - start) / timed
    singles = names[:5]
    start = time.process_time()
    for t in singles:
        state = warm_states[t]
        for bar in series[t][window:]:
            state = step(state, bar, config).state
    single = (time.process_time() - start) / (len(singles) * args.days)
    rows += [("core `step`, one ticker at a time, everything included", f"{single * us:.1f} µs"),
             (f"core `step_many`, {len(names)} tickers per call, everything included",
              f"{batched * us:.1f} µs")]

    one, three = horizon_costs(series, names, config, window, args.days)
    rows += [("core `step_many`, horizons 1 (alternating blocks)", f"{one * us:.1f} µs"),
             ("core `step_many`, horizons 1,5,20 (alternating blocks)", f"{three * us:.1f} µs"),
             ("horizons 1,5,20 / horizons 1", f"{three / one:.2f}x")]

    threads = os.environ.get("OPENBLAS_NUM_THREADS")
    command = (f"OPENBLAS_NUM_THREADS={threads} " if threads else "") + "python -m bench.core_bench "
    command += " ".join(sys.argv[1:])
    load_average = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"Machine: {machine()}, load average at the end {load_average}  \nCommand: `{command.strip()}`  \n"
          f"Data: sp500-5yr.csv.gz, {len(names)} tickers, ARIMA{config.order} on log closes, window "
          f"{window}, refit every {config.refit_every}, timed over {args.days} bars per ticker.\n")
    print("| what (cost per ticker-bar unless said) | time |\n|---|---|")
    for what, value in rows:
        print(f"| {what} | {value} |")


def horizon_costs(series: dict[str, list[Bar]], names: list[str], config: CoreConfig, window: int,
                  days: int, block: int = 10) -> tuple[float, float]:
    """CPU per ticker-bar of ``step_many`` with horizons (1,) and (1, 5, 20), each warmed up, timed
    over the same ``days`` in alternating blocks of ``block`` days so that both meet the same load."""
    configs = [dataclasses.replace(config, horizons=(1,)), dataclasses.replace(config, horizons=(1, 5, 20))]
    states = [step_many_days(series, names, c, 0, window) for c in configs]
    spent = [0.0, 0.0]
    for begin in range(window, window + days, block):
        end = min(begin + block, window + days)
        for k, c in enumerate(configs):
            start = time.process_time()
            states[k] = step_many_days(series, names, c, begin, end, states[k])
            spent[k] += time.process_time() - start
    return spent[0] / (days * len(names)), spent[1] / (days * len(names))


def step_many_days(series: dict[str, list[Bar]], names: list[str], config: CoreConfig, begin: int, end: int,
                   states: dict | None = None) -> dict:
    states = dict(states or {})
    for k in range(begin, end):
        bars = [series[t][k] for t in names]
        for bar, result in zip(bars, step_many([states.get(t) for t in names], bars, config), strict=True):
            states[bar.ticker] = result.state
    return states


if __name__ == "__main__":
    main()
