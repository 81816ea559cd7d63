"""Interval calibration by volatility regime: the core's intervals against textbook anchors, one run.

Run from the repository root (the GARCH anchor refits ``arch`` 16 times per S&P ticker: about 15
minutes of CPU for the 500 S&P tickers, shared among ``--jobs`` processes)::

    OPENBLAS_NUM_THREADS=1 .venv/bin/python -m bench.interval_bench \\
        [--sets sp500,601988,vgi,bokeh] [--jobs 2]

Every method forecasts the interval of the next log return ``r[t+1] = log(close[t+1] / close[t])``
at the close of ``t`` from bars up to ``t`` only, on the same ticker-days:

- ``core (new)``: ``forecaster backtest --model arima`` as this checkout runs it (its default
  interval centre, the volatility model of :mod:`models.core.volatility`, the calibration of
  :mod:`models.core.intervals`);
- ``core (old)``: the same at ``--old-rev`` (34f4230: the single EWMA(0.94) scale; a977328: the
  volatility model with the conformal quantiles of 250 residuals around the ARIMA), extracted with
  ``git archive`` (its ``models`` and ``producers``, which read the bars) and run in a subprocess;
- ``empirical``: the rolling 252-day empirical quantiles of the ticker's past returns;
- ``EWMA x conformal``: RiskMetrics' EWMA(0.94) scale times the conformal quantile of the last 250
  standardized returns (the core's rank rule);
- ``ACI``: adaptive conformal inference (Gibbs and Candès 2021) on the EWMA-standardized returns,
  step 0.005, window 250 (an empty quantile level, which the paper makes an infinite interval, takes
  the window's largest score so that means stay finite);
- ``GARCH(1,1)-t``: ``arch``'s GARCH(1,1) with Student-t innovations and zero mean, refitted every 63
  days on all past returns (at least 252), filtered with fixed parameters in between.

The anchors are centred on naive (a zero return), as the core is by default. Scored days: those with at least
``--history`` (504) bars before them, so every method is past its warm-up; on the S&P 500 also those
after 2015-12-31, the days the volatility model's hyper-parameters were not chosen on. Per level:
coverage overall and per volatility tercile (the standard deviation of the last 21 log returns up to
``t`` over its median on the ticker's scored days, terciles pooled), mean width and mean Winkler
score (log units x 1e4), and the 5th-95th percentile of per-ticker coverage. The volatility forecasts
(the core's ``sigma``, EWMA, GARCH) are scored against the realised squared return: QLIKE
(``log h + r^2 / h``) and MSE on variance (x 1e8).
"""

from __future__ import annotations

import argparse
import io
import math
import os
import subprocess
import sys
import tarfile
import tempfile
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.data import sp500_file
from forecaster import settings as settings_module

ROOT = Path(__file__).resolve().parents[1]
LEVELS = (0.8, 0.95)
SETS = {"sp500": "sp500-5yr.csv.gz", "601988": "601988.SH.csv", "vgi": "vgi", "bokeh": "bokeh-stocks.csv.gz"}
#: The S&P 500 days after this were not used to choose the volatility model's hyper-parameters.
TUNED_UNTIL = "2015-12-31"
WINDOW = 250
EWMA_DECAY = 0.94
ACI_STEP = 0.005
GARCH_REFIT = 63
GARCH_MIN = 252

#: Run in a subprocess with an old ``models`` package first on the path: the core's records as arrays.
_CORE_SCRIPT = """
import sys, numpy as np
from producers.readers import read_csv_bars
from models.backtest import run_backtest
from models.core.config import CoreConfig
bars = read_csv_bars([sys.argv[1]]).bars
result = run_backtest(bars, CoreConfig(model="arima"))
p = result.predictions
np.savez(sys.argv[2], ticker=np.array([r["ticker"] for r in p]), as_of=np.array([r["as_of"] for r in p]),
         sigma=np.array([r["sigma"] for r in p]),
         **{f"{side}_{lv}": np.array([r[f"{side}_{lv}"] for r in p], dtype=float)
            for side in ("lower", "upper") for lv in ("80", "95")})
"""


@dataclass
class Series:
    """One ticker's bars as arrays; ``r[j]`` is the log return from bar ``j`` to ``j + 1``."""

    dates: np.ndarray   # ISO strings
    log_close: np.ndarray

    @property
    def r(self) -> np.ndarray:
        return np.diff(self.log_close)

    def ahead(self, horizon: int) -> np.ndarray:
        """``log(close[j + horizon] / close[j])`` at ``j``, aligned with :attr:`r` (NaN past the last bar)."""
        out = np.full(self.log_close.size - 1, np.nan)
        if horizon < self.log_close.size:
            out[: self.log_close.size - horizon] = self.log_close[horizon:] - self.log_close[:-horizon]
        return out


@dataclass
class Forecast:
    """A method's forecasts for ``r[j]`` made at bar ``j``: bounds per level (NaN: none) and variance."""

    lower: dict[float, np.ndarray]
    upper: dict[float, np.ndarray]
    variance: np.ndarray | None = None


def load(path: Path) -> tuple[dict[str, Series], list]:
    from producers.readers import read_csv_bars

    bars = read_csv_bars([path]).bars
    return series_of(bars), bars


def series_of(bars: list) -> dict[str, Series]:
    """Each ticker's :class:`Series`, from bars in date order."""
    grouped: dict[str, list] = {}
    for bar in bars:
        grouped.setdefault(bar.ticker, []).append(bar)
    return {t: Series(np.array([b.date.isoformat() for b in bs]), np.log([b.close for b in bs]))
            for t, bs in grouped.items()}


def core_forecasts(path: Path, series: dict[str, Series], rev: str | None) -> dict[str, Forecast]:
    """The core's intervals in log-return units, from this checkout (``rev`` None) or an old revision."""
    with tempfile.TemporaryDirectory() as tmp:
        paths = [str(ROOT)]
        if rev is not None:
            archive = subprocess.run(["git", "archive", rev, "models", "producers"], cwd=ROOT, check=True,
                                     capture_output=True).stdout
            with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
                tar.extractall(tmp, filter="data")
            paths.insert(0, tmp)
        out = Path(tmp) / "core.npz"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
        subprocess.run([sys.executable, "-c", _CORE_SCRIPT, str(path), str(out)], check=True, env=env,
                       cwd=tmp)
        data = dict(np.load(out))
    variances = {t: np.full(s.r.size, np.nan) for t, s in series.items()}
    forecasts = {t: Forecast({lv: np.full(s.r.size, np.nan) for lv in LEVELS},
                             {lv: np.full(s.r.size, np.nan) for lv in LEVELS}, variances[t])
                 for t, s in series.items()}
    index = {t: {d: j for j, d in enumerate(s.dates[:-1])} for t, s in series.items()}
    for k, (ticker, as_of) in enumerate(zip(data["ticker"].tolist(), data["as_of"].tolist(), strict=True)):
        j = index[ticker].get(as_of)
        if j is None:
            continue
        f, base = forecasts[ticker], series[ticker].log_close[j]
        variances[ticker][j] = data["sigma"][k] ** 2
        for lv in LEVELS:
            label = f"{lv * 100:g}"
            f.lower[lv][j] = math.log(data[f"lower_{label}"][k]) - base
            f.upper[lv][j] = math.log(data[f"upper_{label}"][k]) - base
    return forecasts


def _symmetric(half: dict[float, np.ndarray], variance: np.ndarray | None = None) -> Forecast:
    return Forecast({lv: -h for lv, h in half.items()}, dict(half), variance)


def _ewma_variance(r: np.ndarray) -> np.ndarray:
    """EWMA(0.94) variance forecast of ``r[j]`` made at bar ``j`` (knows ``r[:j]``), seeded by ``r[0]**2``."""
    out = np.full(r.size, np.nan)
    var = r[0] ** 2
    for j in range(1, r.size):
        var = EWMA_DECAY * var + (1 - EWMA_DECAY) * r[j - 1] ** 2
        out[j] = var
    return out


def _rank(level: float) -> int:
    return math.ceil(round((WINDOW + 1) * level, 9))


def empirical(s: Series) -> Forecast:
    r = s.r
    lower = {lv: np.full(r.size, np.nan) for lv in LEVELS}
    upper = {lv: np.full(r.size, np.nan) for lv in LEVELS}
    if r.size > 252:
        past = np.lib.stride_tricks.sliding_window_view(r[:-1], 252)  # row k: r[k : k + 252], for r[k + 252]
        for lv in LEVELS:
            lo, hi = np.quantile(past, [(1 - lv) / 2, (1 + lv) / 2], axis=1)
            lower[lv][252:], upper[lv][252:] = lo, hi
    return Forecast(lower, upper)


def ewma_conformal(s: Series) -> Forecast:
    r = s.r
    variance = _ewma_variance(r)
    with np.errstate(divide="ignore", invalid="ignore"):  # days without a move: scores inf or NaN
        scores = np.abs(r) / np.sqrt(variance)
    half = {lv: np.full(r.size, np.nan) for lv in LEVELS}
    if r.size > WINDOW + 1:
        past = np.sort(np.lib.stride_tricks.sliding_window_view(scores[1:-1], WINDOW), axis=1)
        for lv in LEVELS:
            half[lv][WINDOW + 1:] = past[:, _rank(lv) - 1] * np.sqrt(variance[WINDOW + 1:])
    return _symmetric(half, variance)


def aci(s: Series) -> Forecast:
    r = s.r
    sd = np.sqrt(_ewma_variance(r))
    with np.errstate(divide="ignore", invalid="ignore"):
        scores = np.abs(r) / sd
    half = {lv: np.full(r.size, np.nan) for lv in LEVELS}
    for lv in LEVELS:
        alpha = 1 - lv
        for j in range(WINDOW + 1, r.size):
            past = np.sort(scores[j - WINDOW: j])
            rank = math.ceil(round((WINDOW + 1) * (1 - alpha), 9)) if alpha > 0 else WINDOW + 1
            q = past[min(max(rank, 1), WINDOW) - 1]
            half[lv][j] = q * sd[j]
            alpha += ACI_STEP * ((1 - lv) - float(scores[j] > q))
    return _symmetric(half)


@dataclass
class GarchPath:
    """A GARCH(1,1)'s forecasts at each bar ``j`` (NaN before :data:`GARCH_MIN`), in log-return units.

    ``variance[j]`` is the one-step variance of ``r[j]``; ``omega``, ``alpha``, ``beta`` and ``nu`` (the
    Student t's degrees of freedom) are those of the fit in force at ``j``.
    """

    variance: np.ndarray
    omega: np.ndarray
    alpha: np.ndarray
    beta: np.ndarray
    nu: np.ndarray


def garch_path(s: Series) -> GarchPath:
    """``arch``'s zero-mean GARCH(1,1)-t, refitted every :data:`GARCH_REFIT` bars on all past returns
    (at least :data:`GARCH_MIN`) and filtered with fixed parameters in between: causal."""
    from arch import arch_model

    r = s.r
    x = 100 * r  # arch's optimiser wants percent returns
    path = GarchPath(*(np.full(r.size, np.nan) for _ in range(5)))
    h, omega, alpha, beta, nu, start = math.nan, 0.0, 0.0, 0.0, math.nan, None
    for j in range(GARCH_MIN, r.size):
        if (j - GARCH_MIN) % GARCH_REFIT == 0:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                # Started from the previous fit's parameters: the same optimum, in fewer iterations.
                fit = arch_model(x[:j], mean="Zero", vol="GARCH", p=1, q=1, dist="t").fit(
                    disp="off", starting_values=start)
            start = fit.params.to_numpy()
            omega, alpha, beta, nu = (float(fit.params[k]) for k in ("omega", "alpha[1]", "beta[1]", "nu"))
            h = float(fit.conditional_volatility[-1]) ** 2  # the variance of x[j - 1]
        h = omega + alpha * x[j - 1] ** 2 + beta * h
        path.variance[j], path.omega[j] = h / 1e4, omega / 1e4
        path.alpha[j], path.beta[j], path.nu[j] = alpha, beta, nu
    return path


def student_factor(level: float, nu: np.ndarray) -> np.ndarray:
    """The central ``level`` quantile of a unit-variance Student t with ``nu`` degrees of freedom."""
    from scipy.stats import t as student

    return np.asarray(student.ppf((1 + level) / 2, nu) * np.sqrt((nu - 2) / nu))


def garch(s: Series) -> Forecast:
    path = garch_path(s)
    sd = np.sqrt(path.variance)
    return _symmetric({lv: sd * student_factor(lv, path.nu) for lv in LEVELS}, path.variance)


METHODS: dict[str, Callable[[Series], Forecast]] = {
    "empirical 252d": empirical, "EWMA(0.94) x conformal": ewma_conformal, "ACI": aci, "GARCH(1,1)-t": garch,
}


@dataclass
class Pooled:
    """Every method's forecasts on the scored ticker-days, pooled, with each day's tercile and ticker.

    ``r`` is the target (the log return over the horizon), ``origin`` the index of the bar forecast from.
    """

    r: np.ndarray
    tercile: np.ndarray
    ticker: np.ndarray
    origin: np.ndarray
    forecasts: dict[str, Forecast]


def pool(series: dict[str, Series], forecasts: dict[str, dict[str, Forecast]], history: int,
         after: str | None, horizon: int = 1) -> Pooled:
    """The days every method forecasts, with ``history`` bars before the next bar (and that bar after
    ``after``), and the return over ``horizon`` bars known."""
    rows: dict[str, list] = {"r": [], "vol": [], "ticker": [], "origin": []}
    parts: dict[str, dict[str, list]] = {m: {"lower": [], "upper": [], "var": []} for m in forecasts}
    for t, s in series.items():
        r, target = s.r, s.ahead(horizon)
        if r.size <= history:
            continue
        j = np.arange(r.size)
        scored = (j + 1 >= history) & np.isfinite(target)
        if after is not None:
            scored &= s.dates[1:] > after
        for f in (forecasts[m][t] for m in forecasts):
            for lv in LEVELS:
                scored &= np.isfinite(f.lower[lv]) & np.isfinite(f.upper[lv])
        if not scored.any():
            continue
        # Trailing volatility at the forecast's bar j: the last 21 returns up to bar j, r[j-21 .. j-1].
        vol = np.full(r.size, np.nan)
        past = np.lib.stride_tricks.sliding_window_view(r, 21).std(axis=1)  # past[k]: r[k .. k + 20]
        vol[21:] = past[: r.size - 21]
        scored &= np.isfinite(vol)
        rows["r"].append(target[scored])
        rows["vol"].append(vol[scored] / np.median(vol[scored]))
        rows["ticker"].append(np.full(scored.sum(), t))
        rows["origin"].append(j[scored])
        for m, by_ticker in forecasts.items():
            f = by_ticker[t]
            parts[m]["lower"].append(np.column_stack([f.lower[lv][scored] for lv in LEVELS]))
            parts[m]["upper"].append(np.column_stack([f.upper[lv][scored] for lv in LEVELS]))
            none = np.full(scored.sum(), np.nan)
            parts[m]["var"].append(none if f.variance is None else f.variance[scored])
    vol = np.concatenate(rows["vol"])
    tercile = np.digitize(vol, np.quantile(vol, [1 / 3, 2 / 3]))
    pooled = {m: Forecast({lv: np.concatenate(p["lower"])[:, k] for k, lv in enumerate(LEVELS)},
                          {lv: np.concatenate(p["upper"])[:, k] for k, lv in enumerate(LEVELS)},
                          np.concatenate(p["var"])) for m, p in parts.items()}
    return Pooled(np.concatenate(rows["r"]), tercile, np.concatenate(rows["ticker"]),
                  np.concatenate(rows["origin"]), pooled)


def interval_rows(p: Pooled) -> list[str]:
    out = ["| method | level | coverage | calm | middle | volatile | worst tercile off | mean width | "
           "mean interval score | per-ticker coverage p5-p95 |", "|---|---|---|---|---|---|---|---|---|---|"]
    tickers, inverse = np.unique(p.ticker, return_inverse=True)
    for lv in LEVELS:
        for name, f in p.forecasts.items():
            lo, hi = f.lower[lv], f.upper[lv]
            inside = (lo <= p.r) & (p.r <= hi)
            miss = np.maximum(lo - p.r, 0) + np.maximum(p.r - hi, 0)
            score = (hi - lo + 2 / (1 - lv) * miss).mean() * 1e4
            terciles = [inside[p.tercile == k].mean() for k in range(3)]
            worst = max(abs(c - lv) for c in terciles) * 100
            per_ticker = np.bincount(inverse, inside) / np.bincount(inverse)
            p5, p95 = np.percentile(per_ticker, [5, 95]) if len(tickers) > 1 else (per_ticker[0],) * 2
            out.append(f"| {name} | {lv:.0%} | {inside.mean():.1%} | "
                       + " | ".join(f"{c:.1%}" for c in terciles)
                       + f" | {worst:.1f} pts | {(hi - lo).mean() * 1e4:.0f} | {score:.1f} | "
                       f"{p5:.1%}-{p95:.1%} |")
    return out


def variance_rows(p: Pooled) -> list[str]:
    out = ["| volatility forecast | QLIKE (log h + r²/h) | MSE on variance (x 1e8) |", "|---|---|---|"]
    r2 = p.r * p.r
    for name, f in p.forecasts.items():
        h = f.variance
        if h is None or not np.isfinite(h).all():
            continue
        qlike = np.mean(np.log(h) + r2 / h)
        out.append(f"| {name} | {qlike:.4f} | {np.mean((r2 - h) ** 2) * 1e8:.3f} |")
    return out


def run_set(name: str, path: Path, args: argparse.Namespace) -> list[str]:
    series, _ = load(path)
    started = time.perf_counter()
    forecasts: dict[str, dict[str, Forecast]] = {
        "core (new)": core_forecasts(path, series, None),
        f"core (old, {args.old_rev})": core_forecasts(path, series, args.old_rev)}
    names = sorted(series)
    with ProcessPoolExecutor(args.jobs) as pool_:
        for method, func in METHODS.items():
            done = pool_.map(func, [series[t] for t in names], chunksize=8)
            forecasts[method] = dict(zip(names, done, strict=True))
            print(f"{name}: {method} done after {time.perf_counter() - started:.0f} s", file=sys.stderr,
                  flush=True)
    periods: list[tuple[str, str | None]] = [(f"after {args.history} bars of history", None)]
    if name == "sp500":
        periods.append((f"after {args.history} bars of history and after {TUNED_UNTIL} "
                        "(after the tuning period)", TUNED_UNTIL))
    lines = []
    for title, after in periods:
        p = pool(series, forecasts, args.history, after)
        lines += [f"#### {name}: {title}: {len(p.r):,} ticker-days of {len(np.unique(p.ticker))} tickers", "",
                  *interval_rows(p), "", *variance_rows(p), ""]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sets", default=",".join(SETS), help=f"comma-separated, of {', '.join(SETS)}")
    parser.add_argument("--history", type=int, default=504, help="bars before a scored target day")
    parser.add_argument("--old-rev", default="34f4230", help="the revision whose core is 'core (old)'")
    parser.add_argument("--jobs", type=int, default=1, help="processes for the anchors, ticker by ticker")
    args = parser.parse_args()
    print(f"Command: `python -m bench.interval_bench {' '.join(sys.argv[1:])}`\n", flush=True)
    for name in args.sets.split(","):
        # All 505 S&P 500 tickers come from FORECASTER_BENCH_DATA; the small sets ship in the package.
        path = sp500_file() if name == "sp500" else Path(settings_module.load().data_dir) / SETS[name]
        print("\n".join(run_set(name, path, args)), flush=True)


if __name__ == "__main__":
    main()
