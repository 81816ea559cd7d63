"""The delivery bench runs both consumers on both event loops and prints one parseable line each."""

from __future__ import annotations

import re
import subprocess
import sys


def test_each_consumer_gets_a_line_per_event_loop_and_a_ratio() -> None:
    out = subprocess.run([sys.executable, "-m", "bench.delivery_bench", "--messages", "200", "--rounds", "2"],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    figures = re.findall(r"^(asyncio|uvloop)\s+(Faust's consumer|EagerConsumer)\s+([0-9.]+) us CPU/message",
                         out, re.MULTILINE)
    assert sorted((loop, consumer) for loop, consumer, _ in figures) == [
        ("asyncio", "EagerConsumer"), ("asyncio", "Faust's consumer"),
        ("uvloop", "EagerConsumer"), ("uvloop", "Faust's consumer")]
    assert all(float(us) > 0 for _, _, us in figures)
    assert len(re.findall(r"EagerConsumer / Faust's consumer: [0-9.]+$", out, re.MULTILINE)) == 2
