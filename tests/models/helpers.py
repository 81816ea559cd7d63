"""Reference implementations the model tests check the project's against."""

from __future__ import annotations

import math


def plain_page_hinkley(xs: list[float], threshold: float, delta: float, min_samples: int) -> list[int]:
    """The indices of ``xs`` at which the textbook Page-Hinkley test alarms, recomputed from the
    values since the last restart (non-finite values skipped)."""
    alarms: list[int] = []
    seen: list[float] = []
    cums = [0.0]
    for i, x in enumerate(xs):
        if not math.isfinite(x):
            continue
        seen.append(x)
        cums.append(cums[-1] + x - sum(seen) / len(seen) - delta)
        if len(seen) >= min_samples and cums[-1] - min(cums) > threshold:
            alarms.append(i)
            seen, cums = [], [0.0]
    return alarms
