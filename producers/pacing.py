"""When each bar of a replay may go out: as fast as possible, at a bar rate, or a day rate.

:class:`Pacing` is the pure schedule (seconds after the start at which bar ``i`` of trading day
``k`` is due); :class:`Pacer` waits for it on a clock. Both the clock and the sleep are injected,
so the schedule is tested without waiting.

Examples
--------
>>> Pacing(rate=4).due(bar_index=6, day_index=2), Pacing(speed=2).due(bar_index=6, day_index=2)
(1.5, 1.0)
>>> Pacing().unpaced
True
>>> Pacing(rate=10, speed=1)
Traceback (most recent call last):
...
ValueError: pace by --rate or by --speed, not both
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Pacing:
    """How fast a replay goes.

    Parameters
    ----------
    rate
        Bars per second, evenly spaced (``--rate``).
    speed
        Trading days per second; all bars of one date go out together (``--speed``).

    Neither: no pacing (``--max``), as fast as the broker takes them.
    """

    rate: float | None = None
    speed: float | None = None

    def __post_init__(self) -> None:
        if self.rate is not None and self.speed is not None:
            raise ValueError("pace by --rate or by --speed, not both")
        for name in ("rate", "speed"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"--{name} must be a positive number, got {value!r}")

    @property
    def unpaced(self) -> bool:
        return self.rate is None and self.speed is None

    def due(self, bar_index: int, day_index: int) -> float:
        """Seconds after the start at which bar ``bar_index`` (of day ``day_index``) is due."""
        if self.rate is not None:
            return bar_index / self.rate
        if self.speed is not None:
            return day_index / self.speed
        return 0.0

    def describe(self) -> str:
        """``"max"``, ``"500 bars/s"`` or ``"2 days/s"``, for the summary."""
        if self.rate is not None:
            return f"{self.rate:g} bars/s"
        if self.speed is not None:
            return f"{self.speed:g} days/s"
        return "max"


#: No pacing: as fast as the broker takes the bars (``--max``, the default).
UNPACED = Pacing()


class Pacer:
    """Holds each bar back until :meth:`Pacing.due` says it may go; the clock starts at the first bar.

    >>> now = [0.0]
    >>> pacer = Pacer(Pacing(rate=2), clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s))
    >>> for i in range(3):
    ...     pacer.wait(bar_index=i, day_index=0)
    >>> now[0]
    1.0
    """

    def __init__(self, pacing: Pacing, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.pacing = pacing
        self._clock = clock
        self._sleep = sleep
        self._start: float | None = None

    def wait(self, bar_index: int, day_index: int) -> None:
        if self._start is None:
            self._start = self._clock()
        ahead = self.pacing.due(bar_index, day_index) - (self._clock() - self._start)
        if ahead > 0:
            self._sleep(ahead)
