"""CPU per ticker-bar of ``step_many`` by several checkouts of the core, each in processes of its own,
alternating, on the same S&P 500 days: the A/B of a change to ``models/core``.

Run from the repository root, with each contender's tree (``git archive <commit> models | tar -x -C
DIR`` makes one; ``.`` is this checkout)::

    OPENBLAS_NUM_THREADS=1 .venv/bin/python -m bench.core_ab before=/tmp/f2337fc:1 after=.:1 \\
        after-1,5,20=.:1,5,20 [--rounds 3] [--days 100]

A contender is ``label=tree:horizons``; a tree whose ``CoreConfig`` has no horizons runs only ``1``.
Each round runs every contender once (the order reversed every other round) on the 495 tickers of
the full file that have 252 + 300 bars: warmed up on 252 days, then timed over ``--days`` (CPU time
of the child process, the garbage collector on, as the worker runs it). The medians over the rounds
and each contender's median ratio to the first contender are printed as Markdown.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WINDOW = 252


def child(bars_file: str, horizons: str, days: int) -> None:
    """In a contender's process: warm up, time ``days`` days, print the CPU µs per ticker-bar."""
    from models.core.bar import Bar
    from models.core.config import CoreConfig
    from models.core.step import step_many

    rows_of = pickle.loads(Path(bars_file).read_bytes())
    series = {t: [Bar(*row) for row in rows] for t, rows in rows_of.items()}
    # The bench's own bars (273,000 objects) out of the collector's passes, as the worker freezes
    # what start-up loaded: otherwise each full pass traverses them, and the contenders that
    # allocate more pay for the bench's heap (docs/benchmarks.md).
    gc.freeze()
    names = sorted(series)
    config = CoreConfig(model="arima")
    if horizons != "1":  # a core before horizons has no such setting
        config = dataclasses.replace(config, horizons=tuple(int(h) for h in horizons.split(",")))
    states: dict = {}

    def run(begin: int, end: int) -> None:
        for k in range(begin, end):
            bars = [series[t][k] for t in names]
            results = step_many([states.get(t) for t in names], bars, config)
            for bar, result in zip(bars, results, strict=True):
                states[bar.ticker] = result.state

    run(0, WINDOW)
    start = time.process_time()
    run(WINDOW, WINDOW + days)
    print((time.process_time() - start) / (days * len(names)) * 1e6)


def series_rows(days: int) -> dict[str, list[tuple]]:
    """The bars of the full file's tickers that have ``WINDOW + 300`` of them, their first
    ``WINDOW + days``, as the fields of :class:`~models.core.bar.Bar` (plain values: they pickle)."""
    from bench.data import sp500_file
    from producers.readers import read_csv_bars

    by_ticker: dict[str, list[tuple]] = {}
    for bar in read_csv_bars([sp500_file()]).bars:
        by_ticker.setdefault(bar.ticker, []).append(
            (bar.ticker, bar.date, bar.open, bar.high, bar.low, bar.close, bar.volume))
    return {t: rows[: WINDOW + days] for t, rows in sorted(by_ticker.items()) if len(rows) >= WINDOW + 300}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("contenders", nargs="*", help="label=tree:horizons")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--days", type=int, default=100, help="timed days after the 252-day warm-up")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], args.days)
        return
    from bench.core_bench import machine

    contenders = []
    for spec in args.contenders:
        label, _, rest = spec.partition("=")
        tree, _, horizons = rest.rpartition(":")
        contenders.append((label, str(Path(tree).resolve()), horizons))
    rows_of = series_rows(args.days)
    names = sorted(rows_of)
    times: dict[str, list[float]] = {label: [] for label, _, _ in contenders}
    with tempfile.TemporaryDirectory() as scratch:
        bars_file = Path(scratch) / "bars.pickle"
        bars_file.write_bytes(pickle.dumps(rows_of))
        for round_ in range(args.rounds):
            for label, tree, horizons in contenders if round_ % 2 == 0 else contenders[::-1]:
                # Run as a file, not a module: the tree's models come first on the path, not this checkout's.
                out = subprocess.run([sys.executable, __file__, "--days", str(args.days), "--child",
                                      str(bars_file), horizons], env={**os.environ, "PYTHONPATH": tree},
                                     check=True, capture_output=True, text=True).stdout
                times[label].append(float(out))
                print(f"round {round_ + 1}: {label} {float(out):.1f} µs", file=sys.stderr)
    first = contenders[0][0]
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"Machine: {machine()}, load average at the end {load}; {len(names)} tickers x {args.days} days, "
          f"{args.rounds} rounds\n")
    print(f"| contender | µs CPU per ticker-bar, median (min-max) | / {first}, median (min-max) |")
    print("|---|---:|---:|")
    for label, _, _ in contenders:
        ratios = [a / b for a, b in zip(times[label], times[first], strict=True)]
        spent = times[label]
        print(f"| {label} | {statistics.median(spent):.1f} ({min(spent):.1f}-{max(spent):.1f}) | "
              f"{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f}) |")


if __name__ == "__main__":
    main()
