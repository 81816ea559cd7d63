"""A dependency-free progress bar on stderr: done/total, rate and time left.

It redraws one line in place (carriage return) at most a few times a second, so calling
:meth:`Progress.update` for every bar costs a clock read.

Examples
--------
>>> render(done=250_000, total=1_000_000, elapsed_s=5.0, width=10)
'[##........]  25.0%  250,000/1,000,000 bars  50,000 bars/s  ETA 0:15'
>>> render(done=0, total=0, elapsed_s=0.0, width=10)
'[##########] 100.0%  0/0 bars  0 bars/s  ETA 0:00'
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO


def _clock_text(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def render(done: int, total: int, elapsed_s: float, width: int = 30) -> str:
    """One line of progress for ``done`` of ``total`` bars after ``elapsed_s`` seconds."""
    fraction = 1.0 if total <= 0 else min(done / total, 1.0)
    rate = done / elapsed_s if elapsed_s > 0 else 0.0
    left = (total - done) / rate if rate > 0 else 0.0
    filled = int(fraction * width)
    return (f"[{'#' * filled}{'.' * (width - filled)}] {fraction:6.1%}  {done:,}/{total:,} bars  "
            f"{rate:,.0f} bars/s  ETA {_clock_text(left)}")


class Progress:
    """Draws :func:`render` on ``stream``, at most every ``every_s`` seconds, and a last line on close."""

    def __init__(self, total: int, *, stream: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic, every_s: float = 0.25) -> None:
        self.total = total
        self._stream = stream if stream is not None else sys.stderr
        self._clock = clock
        self._every_s = every_s
        self._start = clock()
        self._next_draw = self._start + every_s  # no rate or ETA worth showing before then
        self._done = 0

    def update(self, done: int) -> None:
        self._done = done
        now = self._clock()
        if now >= self._next_draw:
            self._next_draw = now + self._every_s
            self._draw(now)

    def _draw(self, now: float) -> None:
        self._stream.write("\r" + render(self._done, self.total, now - self._start))
        self._stream.flush()

    def close(self) -> None:
        self._draw(self._clock())
        self._stream.write("\n")
        self._stream.flush()
