"""The champion against a challenger on the same live bars: paired scores, scale-free losses, the verdict.

A challenger runs in the worker beside the champion (``stream_app/shadow.py``) and scores its own
predictions on the same bars. Two score records are a *pair* when they score the same ticker's
prediction made on the same day for the same horizon (a record without ``horizon`` is of horizon
1), and neither prediction was a warm-up (a model not ready yet gives way to naive's forecast). The
worker's metrics and ``forecaster promote --from-shadow`` judge the pairs the same way:

* each score's loss is its absolute error over the close its prediction was made from (the naive
  forecast), a scale no model chooses, known when the prediction is made and shared by both sides of
  a pair, so that no ticker weighs more for its price level. :mod:`models.evaluation` scales by each
  ticker's naive MAE over a training period, which a live stream does not have;
* the panel relative MAE is the challenger's summed loss over the champion's on the same pairs
  (below 1: the challenger's errors are smaller), a ratio of sums that Prometheus can pool over
  workers;
* the panel Diebold-Mariano test (:func:`models.evaluation.panel_diebold_mariano`) averages the loss
  differentials across tickers per day and tests them over days with a HAC variance; negative: the
  challenger's losses are lower.

Examples
--------
>>> champion = {"ticker": "A", "as_of": "2024-01-02", "error": 2.0, "naive_close": 100.0, "warmup": False}
>>> challenger = {**champion, "error": -1.0}
>>> pair_key(challenger), scaled_loss(challenger)
(('A', '2024-01-02', 1), 0.01)
>>> pairs = Pairs()
>>> pairs.add_champion([champion]); pairs.add_challenger([challenger, {**challenger, "ticker": "B"}])
>>> pairs.losses()
(['2024-01-02'], [0.02], [0.01])
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from models.evaluation import DieboldMariano, panel_diebold_mariano

#: The alias of a challenger; ``challenger-<anything>`` names more (an MLflow alias names one version).
CHALLENGER = "challenger"
#: Fewest distinct days of pairs that ``forecaster promote --from-shadow`` judges on (a DM test over
#: fewer days says little; its HAC variance needs a few weeks).
MIN_DAYS = 20
#: The one-sided significance that ``forecaster promote --from-shadow`` asks of the panel DM test.
ALPHA = 0.05

PairKey = tuple[str, str, int]


def is_challenger(alias: str) -> bool:
    """Whether an alias of the served model names a challenger.

    >>> [is_challenger(a) for a in ("challenger", "challenger-lstm", "champion", "challengers")]
    [True, True, False, False]
    """
    return alias == CHALLENGER or alias.startswith(CHALLENGER + "-")


def pair_key(score: Mapping[str, Any]) -> PairKey:
    """``(ticker, as_of, horizon)``: what a score is paired on (no ``horizon``: 1)."""
    return score["ticker"], score["as_of"], int(score.get("horizon", 1))


def scaled_loss(score: Mapping[str, Any]) -> float:
    """The score's absolute error over the close its prediction was made from."""
    return abs(score["error"]) / score["naive_close"]


def paired(champion: Iterable[Mapping[str, Any]], challenger: Iterable[Mapping[str, Any]]
           ) -> list[tuple[Mapping[str, Any], Mapping[str, Any]]]:
    """``(champion score, challenger score)`` of each key both have, neither a warm-up, in the
    challenger's order."""
    mine = {pair_key(s): s for s in champion if not s["warmup"]}
    return [(mine[key], s) for s in challenger if not s["warmup"] and (key := pair_key(s)) in mine]


class Pairs:
    """Score records of the champion and of one challenger, read in any order, paired when both are in.

    A key seen again (at-least-once delivery repeats a record, always identical) counts once.
    """

    def __init__(self) -> None:
        self._champion: dict[PairKey, Mapping[str, Any]] = {}
        self._challenger: dict[PairKey, Mapping[str, Any]] = {}

    def add_champion(self, scores: Iterable[Mapping[str, Any]]) -> None:
        self._champion.update((pair_key(s), s) for s in scores if not s["warmup"])

    def add_challenger(self, scores: Iterable[Mapping[str, Any]]) -> None:
        self._challenger.update((pair_key(s), s) for s in scores if not s["warmup"])

    def losses(self) -> tuple[list[str], list[float], list[float]]:
        """The day (``as_of``), the champion's loss and the challenger's loss of each pair, by key."""
        keys = sorted(self._champion.keys() & self._challenger.keys())
        return ([key[1] for key in keys], [scaled_loss(self._champion[k]) for k in keys],
                [scaled_loss(self._challenger[k]) for k in keys])


@dataclass(frozen=True)
class Comparison:
    """A challenger against the champion on their pairs.

    ``relative_mae``: the challenger's summed loss over the champion's (NaN without pairs);
    ``dm``: the panel Diebold-Mariano test of the challenger's losses against the champion's (NaN
    with fewer than 3 days); ``p_better``: its one-sided p-value for "the challenger's losses are
    lower".
    """

    pairs: int
    days: int
    relative_mae: float
    dm: DieboldMariano

    @property
    def p_better(self) -> float:
        if math.isnan(self.dm.p_value):
            return math.nan
        half = self.dm.p_value / 2
        return half if self.dm.statistic < 0 else 1 - half

    def metrics(self) -> dict[str, float]:
        """Flat numbers, as MLflow logs them."""
        return {"pairs": float(self.pairs), "days": float(self.days), "relative_mae": self.relative_mae,
                "dm_statistic": self.dm.statistic, "dm_p_value": self.dm.p_value, "p_better": self.p_better}


_NO_TEST = DieboldMariano(statistic=math.nan, p_value=math.nan)


def compare(days: Sequence[Any], champion_loss: Sequence[float], challenger_loss: Sequence[float]
            ) -> Comparison:
    """The :class:`Comparison` of paired losses (``days[i]``: the day of pair ``i``).

    >>> rng = np.random.default_rng(3)
    >>> days = np.repeat(np.arange(60), 5)
    >>> champion = np.abs(rng.normal(size=300))
    >>> c = compare(days, champion, 0.7 * champion)
    >>> c.pairs, c.days, round(c.relative_mae, 3), c.dm.statistic < 0, c.p_better < 0.001
    (300, 60, 0.7, True, True)
    """
    dates = np.asarray(days)
    theirs, mine = np.asarray(champion_loss, dtype=float), np.asarray(challenger_loss, dtype=float)
    distinct = len(set(dates.tolist()))
    total = float(theirs.sum())
    relative = float(mine.sum()) / total if total > 0 else math.nan
    dm = panel_diebold_mariano(dates, mine, theirs) if distinct >= 3 else _NO_TEST
    return Comparison(pairs=len(dates), days=distinct, relative_mae=relative, dm=dm)


class RunningPanelDM:
    """The panel Diebold-Mariano statistic over the last ``days`` days of pairs, in bounded memory.

    Keeps, per day, the sum and count of the loss differentials (challenger minus champion); a day
    older than the ``days`` latest is dropped. Pairs of a day already dropped are ignored.

    >>> running = RunningPanelDM(days=3)
    >>> for i, day in enumerate(("d1", "d2", "d3", "d4")):
    ...     running.add([day, day], [1.0, 1.0], [0.5, 0.4 + i / 10])
    >>> sorted(running.sums), running.test().statistic < 0
    (['d2', 'd3', 'd4'], True)
    """

    def __init__(self, days: int) -> None:
        self.days = days
        self.sums: dict[str, list[float]] = {}  # day -> [sum of differentials, pairs]

    def add(self, days: Sequence[str], champion_loss: Sequence[float],
            challenger_loss: Sequence[float]) -> None:
        for day, theirs, mine in zip(days, champion_loss, challenger_loss, strict=True):
            if day not in self.sums and len(self.sums) >= self.days and day < min(self.sums):
                continue
            entry = self.sums.setdefault(day, [0.0, 0.0])
            entry[0] += mine - theirs
            entry[1] += 1
        for day in sorted(self.sums)[: max(len(self.sums) - self.days, 0)]:
            del self.sums[day]

    def test(self) -> DieboldMariano:
        """The test on the days kept (NaN with fewer than 3)."""
        if len(self.sums) < 3:
            return _NO_TEST
        means = np.array([total / count for total, count in (self.sums[d] for d in sorted(self.sums))])
        # One mean per day: the panel test on them is the test on the per-day means.
        return panel_diebold_mariano(np.arange(len(means)), means, np.zeros(len(means)))
