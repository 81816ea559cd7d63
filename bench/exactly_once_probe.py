"""Does Faust's exactly-once mode hold on this stack? A kill -9 in the middle, then count repeats.

The naive Faust agent (one output per bar) runs with ``processing_guarantee`` set as given, over
bars already in the topic; it is killed with SIGKILL once about half of its outputs are in the
topic and started again. Exactly-once means a ``read_committed`` consumer then sees every output
once: no repeat. The worker keeps at-least-once (repeats identical) unless this says otherwise
(docs/reliability.md).

Usage: ``python -m bench.exactly_once_probe [--bars 10000] [--guarantee exactly_once]``; needs a
running broker (``FORECASTER_BOOTSTRAP``, ``forecaster kafka start``).
"""

from __future__ import annotations

import argparse
import collections
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

from bench.data import sp500_file
from bench.worker_bench import end_offsets_total, fresh, read_all, start
from forecaster.settings import Settings, load
from producers.readers import ReadResult, read_csv_bars
from producers.replay import replay


def committed_outputs(settings: Settings) -> collections.Counter[tuple[str, str]]:
    """How often each (ticker, day) output is visible to a ``read_committed`` consumer now."""
    records = read_all(settings, settings.topic_predictions, "read_committed")
    return collections.Counter((record["ticker"], record["as_of"]) for _, record in records)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=10_000)
    parser.add_argument("--guarantee", choices=("exactly_once", "at_least_once"), default="exactly_once")
    parser.add_argument("--data", type=Path, default=None,
                        help="the CSV to replay (default: the full S&P 500 file, see bench/data.py)")
    args = parser.parse_args()
    if not os.environ.get("FORECASTER_BOOTSTRAP"):
        raise SystemExit("set FORECASTER_BOOTSTRAP to a running broker (forecaster kafka start)")
    logs = Path(tempfile.mkdtemp(prefix="exactly-once-probe-"))
    settings = fresh(load().replace(home=str(logs / "home"), partitions=4), "eos")
    bars = read_csv_bars([args.data or sp500_file()]).bars[:args.bars]
    replay(ReadResult(bars=bars, dead_letters=[], rows_read=len(bars), filtered=0), settings, progress=False)
    os.environ["NAIVE_AGENT_GUARANTEE"] = args.guarantee
    command = [sys.executable, "-m", "faust", "-A", "bench.naive_faust_agent", "worker", "-l", "warn"]
    agent = start(command, settings, logs / "first.log")
    while end_offsets_total(settings, settings.topic_predictions) < len(bars) // 2:
        if agent.poll() is not None:
            raise SystemExit(f"the agent exited with {agent.returncode}; see {logs}")
        time.sleep(0.2)
    agent.send_signal(signal.SIGKILL)
    agent.wait()
    restarted = time.monotonic()
    agent = start(command, settings, logs / "second.log")
    try:
        while len(seen := committed_outputs(settings)) < len(bars):
            if agent.poll() is not None or time.monotonic() - restarted > 600:
                raise SystemExit(f"the agent stopped or stalled; see {logs}")
            time.sleep(1.0)
        seconds = time.monotonic() - restarted
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(timeout=120)
    repeats = sum(seen.values()) - len(seen)
    print(f"{args.guarantee}: {len(bars):,} bars, one kill -9 halfway; read_committed sees {len(seen):,} "
          f"outputs, {repeats:,} of them repeated; all visible {seconds:.0f} s after the restart; "
          f"logs {logs}")


if __name__ == "__main__":
    main()
