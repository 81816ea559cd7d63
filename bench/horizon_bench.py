"""Multi-horizon forecasts on the S&P 500: the core's h-step intervals and points beside their anchors.

Run from the repository root (7-10 minutes with ``--jobs 2`` on the shared 2-core VM, most of it
the core's backtest and the GARCH refits; docs/models.md, "Horizons: measured")::

    OPENBLAS_NUM_THREADS=1 .venv/bin/python -m bench.horizon_bench [--horizons 1,5,20] [--jobs 2]

At the close of bar ``t`` each method forecasts ``log(close[t+h] / close[t])`` from bars up to ``t``
only, on the same ticker-days (those of :func:`bench.interval_bench.pool`: at least ``--history``
(504) bars before ``t + 1``, ``t + 1`` after 2015-12-31, the days the volatility model's
hyper-parameters were not chosen on, and ``close[t+h]`` known). Intervals:

- ``core``: ``forecaster backtest --model arima`` with ``horizons`` as this checkout runs it (its
  default centre, the last close);
- ``GARCH(1,1)-t, t quantile`` and ``GARCH(1,1)-t, normal quantile``: the zero-mean GARCH(1,1)-t of
  :func:`bench.interval_bench.garch_path` (refitted every 63 bars on all past returns). The variance of
  the ``h``-day sum is the sum of the per-step variance forecasts (:func:`garch_sum_variance`: exact for a
  zero-mean GARCH, whose returns are uncorrelated); its quantile is the fit's unit-variance Student t
  quantile (the one-day shape kept) or the normal quantile (the sum's shape by the central limit
  theorem), both times the ``h``-day standard deviation. Which of the two the model itself implies is
  checked by simulating it (:func:`simulated_factors`) on a fixed-seed sample of scored ticker-days;
- ``scaled-naive``: the core's one-day interval, in log units around the last close, times ``sqrt(h)``
  (:func:`scaled_naive`).

Per horizon and level: coverage overall and per volatility tercile, mean width and mean Winkler
score (log units x 1e4), the 5th-95th percentile of per-ticker coverage
(:func:`bench.interval_bench.interval_rows`), and QLIKE of the ``h``-day variances; the core's
multipliers (half-width over ``sigma``), their mean and how much they vary within and across tickers.

Points (log closes, so no ticker weighs more for its price): the core's ARIMA, naive (the last close)
and drift (the last close moved by ``h`` times the mean daily log return of the last 252 bars, the
core's window). MASE: absolute errors over the ticker's in-sample mean absolute ``h``-day naive change,
on its bars up to its first scored day (:func:`naive_scale`: causal), pooled over ticker-days; the panel
Diebold-Mariano test (:func:`models.evaluation.panel_diebold_mariano`) of each against naive on those
scaled errors with ``max(Newey-West, h - 1)`` Bartlett lags, the ``h``-day errors of neighbouring days
overlapping by ``h - 1`` days.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np

from bench.data import sp500_file
from bench.interval_bench import (
    LEVELS,
    TUNED_UNTIL,
    Forecast,
    GarchPath,
    Pooled,
    Series,
    garch_path,
    interval_rows,
    load,
    pool,
    series_of,
    student_factor,
    variance_rows,
)
from models.evaluation import DieboldMariano, newey_west_lags, panel_diebold_mariano

HORIZONS = (1, 5, 20)
#: The drift's window: the core's ARIMA window (``FORECASTER_WINDOW``).
DRIFT_WINDOW = 252
#: Tickers handed to one core backtest: its records are held in memory until turned into arrays.
CORE_CHUNK = 64
#: The simulation check of the GARCH h-day quantile: ticker-days sampled, paths each, seed.
SIMULATED_DAYS, SIMULATED_PATHS, SEED = 200, 20_000, 31
CORE, GARCH_T, GARCH_NORMAL, SCALED = ("core", "GARCH(1,1)-t, t quantile", "GARCH(1,1)-t, normal quantile",
                                       "scaled-naive (one-day core x sqrt(h))")


@dataclass
class CoreHorizon:
    """The core's forecasts of one horizon for one ticker, at bar ``j`` (NaN: none): the interval and
    ``variance`` (``sigma**2``) as a :class:`Forecast`, and ``point``, its predicted log return."""

    forecast: Forecast
    point: np.ndarray


def core_chunk(bars: list, horizons: tuple[int, ...]) -> dict[int, dict[str, CoreHorizon]]:
    """The core's records (model arima, defaults otherwise) for some tickers' bars, as arrays."""
    from models.backtest import run_backtest
    from models.core.config import CoreConfig

    series = series_of(bars)
    fields = ["point", "variance", *(f"{side}_{lv * 100:g}" for side in ("lower", "upper") for lv in LEVELS)]
    arrays = {(h, t): {f: np.full(s.r.size, np.nan) for f in fields}
              for h in horizons for t, s in series.items()}
    index = {t: {d: j for j, d in enumerate(s.dates[:-1])} for t, s in series.items()}
    for record in run_backtest(bars, CoreConfig(model="arima", horizons=horizons)).predictions:
        ticker = record["ticker"]
        j = index[ticker].get(record["as_of"])
        if j is None:  # the last bar: nothing to score against
            continue
        row, base = arrays[record["horizon"], ticker], series[ticker].log_close[j]
        row["point"][j] = math.log(record["predicted_close"]) - base
        row["variance"][j] = record["sigma"] ** 2
        for f in fields[2:]:
            row[f][j] = math.log(record[f]) - base
    return {h: {t: CoreHorizon(Forecast({lv: arrays[h, t][f"lower_{lv * 100:g}"] for lv in LEVELS},
                                        {lv: arrays[h, t][f"upper_{lv * 100:g}"] for lv in LEVELS},
                                        arrays[h, t]["variance"]), arrays[h, t]["point"])
                for t in series} for h in horizons}


def scaled_naive(one_day: Forecast, horizon: int) -> Forecast:
    """A one-day interval (log units around the last close) widened by ``sqrt(horizon)``, its variance
    times ``horizon``: the square-root-of-time rule, as if daily returns were independent and alike.

    >>> day = Forecast({0.8: np.array([-0.01])}, {0.8: np.array([0.012])}, np.array([1e-4]))
    >>> week = scaled_naive(day, 4)
    >>> week.lower[0.8].tolist(), week.upper[0.8].tolist(), week.variance.tolist()
    ([-0.02], [0.024], [0.0004])
    """
    root = math.sqrt(horizon)
    variance = None if one_day.variance is None else one_day.variance * horizon
    return Forecast({lv: b * root for lv, b in one_day.lower.items()},
                    {lv: b * root for lv, b in one_day.upper.items()}, variance)


def garch_sum_variance(path: GarchPath, horizon: int) -> np.ndarray:
    """Forecast variance at bar ``j`` of ``r[j] + ... + r[j + horizon - 1]``: the sum of the per-step
    forecasts ``s_1 = variance[j]``, ``s_(k+1) = omega + (alpha + beta) s_k`` (a zero-mean GARCH's
    returns are uncorrelated, so the variance of the sum is the sum of the variances).

    >>> one = np.array([1.0])
    >>> path = GarchPath(variance=4 * one, omega=one, alpha=0.1 * one, beta=0.8 * one, nu=5 * one)
    >>> garch_sum_variance(path, 3).round(12).tolist()  # 4 + (1 + 0.9 x 4) + (1 + 0.9 x 4.6)
    [13.74]
    """
    step = path.variance
    total = step.copy()
    for _ in range(1, horizon):
        step = path.omega + (path.alpha + path.beta) * step
        total = total + step
    return total


def garch_forecasts(path: GarchPath, horizon: int) -> dict[str, Forecast]:
    """The ``horizon``-day GARCH intervals, with the fit's Student t quantile and with the normal one."""
    from scipy.stats import norm

    variance = garch_sum_variance(path, horizon)
    sd = np.sqrt(variance)
    t_half = {lv: sd * student_factor(lv, path.nu) for lv in LEVELS}
    normal_half = {lv: sd * float(norm.ppf((1 + lv) / 2)) for lv in LEVELS}
    return {GARCH_T: Forecast({lv: -h for lv, h in t_half.items()}, t_half, variance),
            GARCH_NORMAL: Forecast({lv: -h for lv, h in normal_half.items()}, normal_half, variance)}


def simulated_factors(path: GarchPath, days: np.ndarray, horizon: int, levels: tuple[float, ...], paths: int,
                      rng: np.random.Generator) -> np.ndarray:
    """The central quantiles ``[len(days), len(levels)]`` of the GARCH's own ``horizon``-day sum at the
    bars ``days``, from ``paths`` simulated paths, over the sum's standard deviation
    (:func:`garch_sum_variance`)."""
    omega, alpha, beta, nu = (a[days, None] for a in (path.omega, path.alpha, path.beta, path.nu))
    step = np.repeat(path.variance[days, None], paths, axis=1)
    total = np.zeros_like(step)
    for _ in range(horizon):
        shock = np.sqrt(step) * rng.standard_t(nu, size=step.shape) * np.sqrt((nu - 2) / nu)
        total += shock
        step = omega + alpha * shock ** 2 + beta * step
    sd = np.sqrt(garch_sum_variance(path, horizon)[days])
    return np.quantile(np.abs(total), levels, axis=1).T / sd[:, None]


def drift_points(s: Series, horizon: int) -> np.ndarray:
    """At bar ``j``: ``horizon`` times the mean of the last :data:`DRIFT_WINDOW` daily log returns."""
    out = np.full(s.r.size, np.nan)
    if s.r.size > DRIFT_WINDOW:
        out[DRIFT_WINDOW:] = horizon * np.lib.stride_tricks.sliding_window_view(
            s.r[:-1], DRIFT_WINDOW).mean(axis=1)
    return out


def naive_scale(log_close: np.ndarray, horizon: int, until: int) -> float:
    """The mean absolute ``horizon``-day change of ``log_close[: until + 1]`` (the bars up to ``until``):
    the in-sample naive error that scales MASE.

    >>> naive_scale(np.log([1.0, 2.0, 4.0, 2.0, 100.0]), 2, 3)  # |log 4| and |log 1|, not the 100
    0.6931471805599453
    """
    past = log_close[: until + 1]
    return float(np.abs(past[horizon:] - past[:-horizon]).mean())


POINTS = ("core", "naive", "drift")
#: The point forecasts tested against naive.
CONTENDERS = ("core", "drift")


@dataclass
class PointScores:
    """One horizon's point scores on the pooled days: MASE and panel DM against naive, by method."""

    horizon: int
    n: int
    mase: dict[str, float]
    dm: dict[str, DieboldMariano]
    lags: int

    def row(self) -> str:
        cells = [f"{self.horizon}", f"{self.n:,}", *(f"{self.mase[m]:.4f}" for m in POINTS)]
        for m in CONTENDERS:
            cells += [f"{self.mase[m] / self.mase['naive']:.4f}", f"{self.dm[m].statistic:.2f}",
                      f"{self.dm[m].p_value:.3f}"]
        return "| " + " | ".join([*cells, str(self.lags)]) + " |"


def point_scores(p: Pooled, series: dict[str, Series], core_points: dict[str, np.ndarray],
                 horizon: int) -> PointScores:
    """MASE of the core, naive and drift on the pooled days, and the panel DM of core and drift vs naive."""
    errors: dict[str, list[np.ndarray]] = {m: [] for m in POINTS}
    dates: list[np.ndarray] = []
    for ticker in np.unique(p.ticker):
        rows = p.ticker == ticker
        s, origin, target = series[ticker], p.origin[rows], p.r[rows]
        scale = naive_scale(s.log_close, horizon, int(origin.min()))
        errors["core"].append(np.abs(target - core_points[ticker][origin]) / scale)
        errors["naive"].append(np.abs(target) / scale)
        errors["drift"].append(np.abs(target - drift_points(s, horizon)[origin]) / scale)
        dates.append(s.dates[origin])
    loss = {m: np.concatenate(e) for m, e in errors.items()}
    day = np.concatenate(dates)
    lags = max(newey_west_lags(len(np.unique(day))), horizon - 1)
    return PointScores(horizon, len(day), {m: float(loss[m].mean()) for m in POINTS},
                       {m: panel_diebold_mariano(day, loss[m], loss["naive"], lags=lags) for m in CONTENDERS},
                       lags)


POINT_HEADER = ["| horizon | ticker-days | MASE core (arima) | MASE naive | MASE drift | core / naive | "
                "panel DM core vs naive | p | drift / naive | panel DM drift vs naive | p | HAC lags |",
                "|---|---|---|---|---|---|---|---|---|---|---|---|"]


def multiplier_row(p: Pooled, horizon: int) -> str:
    """The core's interval multipliers (half-width over ``sigma``) on the pooled days, per level: mean,
    the mean over tickers of their coefficient of variation over time, and that of the tickers' means."""
    core = p.forecasts[CORE]
    assert core.variance is not None
    _, inverse = np.unique(p.ticker, return_inverse=True)
    count = np.bincount(inverse)
    cells = [str(horizon)]
    for lv in LEVELS:
        q = (core.upper[lv] - core.lower[lv]) / 2 / np.sqrt(core.variance)
        mean = np.bincount(inverse, q) / count
        sd = np.sqrt(np.maximum(np.bincount(inverse, q * q) / count - mean ** 2, 0))
        cells += [f"{q.mean():.3f}", f"{(sd / mean).mean():.1%}", f"{mean.std() / mean.mean():.1%}"]
    return "| " + " | ".join(cells) + " |"


MULTIPLIER_HEADER = ["| horizon | mean 80 % | CV within tickers | CV across tickers | mean 95 % | "
                     "CV within tickers | CV across tickers |", "|---|---|---|---|---|---|---|"]


def simulation_rows(paths: dict[str, GarchPath], p: Pooled, horizons: tuple[int, ...]) -> list[str]:
    """The GARCH's own h-day quantile factor, simulated on a sample of the scored days, against the
    two closed-form ones (mean over the sample; ratio 1: the closed form is the model's)."""
    from scipy.stats import norm

    rng = np.random.default_rng(SEED)
    sample = rng.choice(len(p.r), size=min(SIMULATED_DAYS, len(p.r)), replace=False)
    out = ["| horizon | level | simulated factor | t factor | normal factor | simulated / t | "
           "simulated / normal |", "|---|---|---|---|---|---|---|"]
    for horizon in horizons:
        simulated, nu = [], []
        for ticker in np.unique(p.ticker[sample]):
            days = p.origin[sample][p.ticker[sample] == ticker]
            simulated.append(simulated_factors(paths[ticker], days, horizon, LEVELS, SIMULATED_PATHS, rng))
            nu.append(paths[ticker].nu[days])
        for k, lv in enumerate(LEVELS):
            sim, tf = np.concatenate(simulated)[:, k], student_factor(lv, np.concatenate(nu))
            normal = float(norm.ppf((1 + lv) / 2))
            out.append(f"| {horizon} | {lv:.0%} | {sim.mean():.3f} | {tf.mean():.3f} | {normal:.3f} | "
                       f"{(sim / tf).mean():.3f} | {(sim / normal).mean():.3f} |")
    return out


def run(args: argparse.Namespace) -> list[str]:
    horizons = tuple(sorted(set(args.horizons) | {1}))  # scaled-naive needs the one-day interval
    started = time.perf_counter()
    series, bars = load(sp500_file())
    names = sorted(series)
    if args.tickers:
        names = sorted(np.random.default_rng(SEED).choice(names, size=args.tickers, replace=False).tolist())
        series = {t: series[t] for t in names}
        bars = [b for b in bars if b.ticker in series]
    by_ticker: dict[str, list] = {}
    for bar in bars:
        by_ticker.setdefault(bar.ticker, []).append(bar)
    chunks = [[b for t in names[k: k + CORE_CHUNK] for b in by_ticker[t]]
              for k in range(0, len(names), CORE_CHUNK)]
    core: dict[int, dict[str, CoreHorizon]] = {h: {} for h in horizons}
    with ProcessPoolExecutor(args.jobs) as executor:
        core_done = [executor.submit(core_chunk, chunk, horizons) for chunk in chunks]
        garch_done = executor.map(garch_path, [series[t] for t in names], chunksize=8)
        for future in core_done:
            for h, part in future.result().items():
                core[h].update(part)
        print(f"core done after {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
        paths = dict(zip(names, garch_done, strict=True))
        print(f"GARCH done after {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    after = None if args.all_days else TUNED_UNTIL
    period = "all days" if after is None else f"t + 1 after {after}"
    lines, points, multipliers = [], list(POINT_HEADER), list(MULTIPLIER_HEADER)
    for h in args.horizons:
        forecasts: dict[str, dict[str, Forecast]] = {
            CORE: {t: core[h][t].forecast for t in names},
            SCALED: {t: scaled_naive(core[1][t].forecast, h) for t in names}}
        for t in names:
            for method, forecast in garch_forecasts(paths[t], h).items():
                forecasts.setdefault(method, {})[t] = forecast
        p = pool(series, forecasts, args.history, after, horizon=h)
        lines += [f"#### sp500, horizon {h}: {len(p.r):,} ticker-days of {len(np.unique(p.ticker))} tickers "
                  f"({args.history} bars of history, {period})", "",
                  *interval_rows(p), "", *variance_rows(p), ""]
        points.append(point_scores(p, series, {t: core[h][t].point for t in names}, h).row())
        multipliers.append(multiplier_row(p, h))
    # On the longest horizon's days (the last p), which every horizon's origins include.
    simulated = simulation_rows(paths, p, tuple(args.horizons))
    lines += [f"#### sp500: points, log closes ({period})", "", *points, "",
              "#### sp500: the core's interval multipliers, half-width over sigma", "", *multipliers, "",
              f"#### sp500: the GARCH(1,1)-t's own h-day quantile factor, simulated ({SIMULATED_PATHS:,} "
              f"paths on {SIMULATED_DAYS} ticker-days of the horizon-{max(args.horizons)} days, seed {SEED})",
              "",
              *simulated, ""]
    wall = time.perf_counter() - started
    lines.append(f"Wall time {wall:.0f} s, {platform.machine()}, {len(os.sched_getaffinity(0))} CPUs "
                 f"(nproc), Python {platform.python_version()}, --jobs {args.jobs}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--horizons", default=",".join(map(str, HORIZONS)),
                        type=lambda text: sorted({int(h) for h in text.split(",")}),
                        help="comma-separated trading days ahead")
    parser.add_argument("--history", type=int, default=504, help="bars before a scored origin's next bar")
    parser.add_argument("--all-days", action="store_true",
                        help=f"score the days up to {TUNED_UNTIL} too (the volatility model was tuned there)")
    parser.add_argument("--tickers", type=int, default=0, help="a random sample of tickers, seeded")
    parser.add_argument("--jobs", type=int, default=1, help="processes: core by ticker chunks, GARCH")
    args = parser.parse_args()
    print(f"Command: `python -m bench.horizon_bench {' '.join(sys.argv[1:])}`\n", flush=True)
    print("\n".join(run(args)), flush=True)


if __name__ == "__main__":
    main()
