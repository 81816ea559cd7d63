"""Online drift detectors: input drift by PSI against a reference, error drift by Page-Hinkley.

Both are small, pure and incremental, in the style of River's drift detectors: PSI takes one value
at a time and gives its score; the Page-Hinkley tests take a batch of values of many keys at once
and say which raised an alarm. The :class:`Reference` is a contract between
training, which logs one per feature (:func:`models.training.feature_reference`), and the worker's
monitor (:mod:`stream_app.monitor`), which compares the stream against it: it lives here, below both.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> ref = Reference.from_sample(rng.normal(size=5000), bins=10)
>>> psi = PSI(ref, window=500)
>>> for x in rng.normal(size=500):
...     psi.update(x)
>>> psi.score() < 0.1
True
>>> for x in rng.normal(loc=2.0, size=500):
...     psi.update(x)
>>> psi.score() > 0.25
True
>>> ph = PageHinkleys(threshold=20.0, delta=0.1)
>>> calm = np.abs(rng.normal(size=250))   # |error| of a calm spell
>>> bool(ph.update_many(["AAA"] * calm.size, calm).any())
False
>>> storm = np.abs(rng.normal(scale=3.0, size=100))   # volatility triples
>>> bool(ph.update_many(["AAA"] * storm.size, storm).any())
True
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np

#: Proportions below this are floored so that an empty bin does not make the PSI infinite.
_EPS = 1e-4


@dataclass(frozen=True)
class Reference:
    """A feature's training distribution: interior bin edges (quantiles) and bin proportions."""

    edges: tuple[float, ...]
    proportions: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.proportions) != len(self.edges) + 1:
            raise ValueError(
                f"{len(self.edges)} edges need {len(self.edges) + 1} proportions, "
                f"got {len(self.proportions)}"
            )

    @classmethod
    def from_sample(cls, sample: np.ndarray, bins: int = 10) -> Reference:
        """Quantile bins of a sample (finite values only), each holding about 1/bins of it."""
        values = np.asarray(sample, dtype=float)
        values = values[np.isfinite(values)]
        if values.size < bins:
            raise ValueError(f"a reference needs at least {bins} finite values, got {values.size}")
        edges = np.unique(np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1]))
        counts = np.bincount(np.searchsorted(edges, values, side="right"), minlength=edges.size + 1)
        return cls(tuple(map(float, edges)), tuple(map(float, counts / counts.sum())))

    def to_dict(self) -> dict[str, list[float]]:
        return {"edges": list(self.edges), "proportions": list(self.proportions)}

    @classmethod
    def from_dict(cls, data: dict) -> Reference:
        return cls(tuple(map(float, data["edges"])), tuple(map(float, data["proportions"])))


class PSI:
    """Population stability index of a sliding window against a :class:`Reference`.

    ``PSI = sum((p_i - q_i) * ln(p_i / q_i))`` over the reference's bins, with ``q`` the reference
    proportions and ``p`` those of the last ``window`` values. Rule of thumb: below 0.1 stable,
    above 0.25 a shift. Values are added one at a time (:meth:`update`) or a batch at a time
    (:meth:`update_many`, vectorised: the worker's path).
    """

    def __init__(self, reference: Reference, window: int = 250) -> None:
        if window < 1:
            raise ValueError(f"window must be positive, got {window}")
        self.reference = reference
        self.window = window
        self._edges = np.asarray(reference.edges)
        self._q = np.maximum(np.asarray(reference.proportions), _EPS)
        # A ring of the last `window` values' bin numbers, and the count of each bin among them.
        self._ring = np.zeros(window, dtype=np.int64)
        self._next = 0
        self.n = 0
        self._counts = np.zeros(len(reference.proportions), dtype=np.int64)

    def update(self, x: float) -> None:
        self.update_many(np.array([x], dtype=float))

    def update_many(self, xs: np.ndarray) -> None:
        xs = np.asarray(xs, dtype=float)
        bins = np.searchsorted(self._edges, xs[np.isfinite(xs)], side="right")[-self.window:]
        k = bins.size
        if k == 0:
            return
        slots = (self._next + np.arange(k)) % self.window
        if self.n + k > self.window:
            # The oldest values leave the window. Until the ring is full, its first `window - n`
            # slots to be written are still empty; every slot after them holds a live value.
            evicted = self._ring[slots[self.window - self.n:]]
            self._counts -= np.bincount(evicted, minlength=self._counts.size)
        self._ring[slots] = bins
        self._counts += np.bincount(bins, minlength=self._counts.size)
        self._next = (self._next + k) % self.window
        self.n = min(self.window, self.n + k)

    @property
    def full(self) -> bool:
        """Whether the window holds ``window`` values. Before that the score is mostly the noise of
        small counts: each bin no value fell in yet adds ``q * ln(q / eps)``, so a handful of values
        from the reference's own distribution scores far above 0.25.

        >>> import numpy as np
        >>> rng = np.random.default_rng(1)
        >>> psi = PSI(Reference.from_sample(rng.normal(size=5000)), window=250)
        >>> psi.update_many(rng.normal(size=10))
        >>> psi.full, psi.score() > 0.25
        (False, True)
        >>> psi.update_many(rng.normal(size=240))
        >>> psi.full, psi.score() < 0.1
        (True, True)
        """
        return self.n == self.window

    def score(self) -> float:
        """The PSI of the current window (0.0 while it is empty; see :attr:`full`)."""
        if not self.n:
            return 0.0
        p = np.maximum(self._counts / self.n, _EPS)
        return float(np.sum((p - self._q) * np.log(p / self._q)))


class PageHinkleys:
    """Page-Hinkley tests for an increase of the mean of a stream (e.g. standardized absolute
    error), one per key (a ticker), fed a batch at a time.

    Parameters
    ----------
    threshold
        Alarm when the cumulative deviation above the running minimum exceeds it (lambda).
    delta
        Magnitude of change tolerated (the test ignores drifts smaller than this).
    min_samples
        No alarm before this many values.

    After an alarm a key's test restarts, so a lasting shift raises one alarm, not one per value.
    Each key's values count in the order given, as if fed one by one; the arithmetic runs in numpy
    across the keys, one round per value a key has in the batch, instead of a Python call per value.

    >>> tests = PageHinkleys(threshold=1.0, min_samples=2)
    >>> tests.update_many(["a", "b", "a", "a"], np.array([0.0, 5.0, 3.0, 9.0])).tolist()
    [False, False, True, False]
    """

    def __init__(self, threshold: float = 50.0, delta: float = 0.005, min_samples: int = 30) -> None:
        if threshold <= 0:
            raise ValueError(f"threshold must be positive, got {threshold}")
        self.threshold = threshold
        self.delta = delta
        self.min_samples = min_samples
        self._slot: dict[Hashable, int] = {}  # each key's row of the figures below
        self._free: list[int] = []
        self.n = np.zeros(0, dtype=np.int64)
        self._mean = np.zeros(0)
        self._cum = np.zeros(0)
        self._min = np.zeros(0)

    def forget(self, key: Hashable) -> None:
        """Drop ``key``'s test: its next value starts a fresh one."""
        slot = self._slot.pop(key, None)
        if slot is not None:
            self.n[slot], self._mean[slot], self._cum[slot], self._min[slot] = 0, 0.0, 0.0, 0.0
            self._free.append(slot)

    def update_many(self, keys: Sequence[Hashable], xs: np.ndarray) -> np.ndarray:
        """Add ``xs[i]`` to the test of ``keys[i]``, in order; whether each value raised an alarm.
        Non-finite values are skipped (no alarm)."""
        for key in dict.fromkeys(keys):
            if key not in self._slot:
                self._slot[key] = self._free.pop() if self._free else self._grow()
        xs = np.asarray(xs, dtype=float)
        slots = np.fromiter(map(self._slot.__getitem__, keys), np.intp, len(keys))
        alarms = np.zeros(len(keys), dtype=bool)
        finite = np.flatnonzero(np.isfinite(xs))
        if not finite.size:
            return alarms
        # Each value's rank among its key's values: round r takes every key's r-th value at once.
        order = np.argsort(slots[finite], kind="stable")
        ordered = slots[finite][order]
        starts = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1])))
        rank = np.empty(finite.size, dtype=np.intp)
        rank[order] = np.arange(finite.size) - np.repeat(starts, np.diff(np.append(starts, finite.size)))
        for r in range(int(rank.max()) + 1):
            at = finite[rank == r]
            slot, x = slots[at], xs[at]
            n = self.n[slot] + 1
            mean = self._mean[slot]
            mean = mean + (x - mean) / n
            cum = self._cum[slot] + (x - mean - self.delta)
            low = np.minimum(self._min[slot], cum)
            alarm = (n >= self.min_samples) & (cum - low > self.threshold)
            n[alarm], mean[alarm], cum[alarm], low[alarm] = 0, 0.0, 0.0, 0.0  # an alarm restarts the test
            self.n[slot], self._mean[slot], self._cum[slot], self._min[slot] = n, mean, cum, low
            alarms[at] = alarm
        return alarms

    def _grow(self) -> int:
        """A new row for a key (the arrays double when full)."""
        used = len(self._slot) + len(self._free)
        if used == self.n.size:
            size = max(2 * used, 64)
            self.n, self._mean = np.resize(self.n, size), np.resize(self._mean, size)
            self._cum, self._min = np.resize(self._cum, size), np.resize(self._min, size)
        self.n[used], self._mean[used], self._cum[used], self._min[used] = 0, 0.0, 0.0, 0.0
        return used
