"""The progress line: what it says, and that it redraws only every so often."""

from __future__ import annotations

import io

from producers.progress import Progress, render


def test_render_shows_fraction_rate_and_eta() -> None:
    line = render(done=30_000, total=90_000, elapsed_s=1.5, width=9)
    assert line == "[###......]  33.3%  30,000/90,000 bars  20,000 bars/s  ETA 0:03"
    assert render(done=1, total=7200, elapsed_s=1.0).endswith("ETA 1:59:59")


def test_progress_redraws_at_most_every_interval_and_ends_the_line() -> None:
    now = [0.0]
    out = io.StringIO()
    progress = Progress(100, stream=out, clock=lambda: now[0], every_s=1.0)
    for done in range(1, 101):
        now[0] = done * 0.05  # five seconds in all
        progress.update(done)
    progress.close()
    frames = out.getvalue().split("\r")[1:]
    assert len(frames) == 5 + 1  # once a second, and the last line
    assert frames[-1].startswith("[" + "#" * 30 + "] 100.0%  100/100 bars") and frames[-1].endswith("\n")
