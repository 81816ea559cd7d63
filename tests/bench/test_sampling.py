"""The bench's sampler: py-spy's stacks summed by function, and a real sample of a busy process."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from bench.sampling import Sampler, by_function, top


def test_a_function_counts_once_per_stack_however_deep_it_recurses() -> None:
    total, counts = by_function(["main (a.py:1);walk (b.py:4);walk (b.py:4);walk (b.py:9) 5",
                                 "main (a.py:2) 3"])
    assert total == 8
    assert counts == {"main (a.py)": 8, "walk (b.py)": 5}


def test_the_process_frame_and_a_command_line_cut_by_newlines_are_not_functions() -> None:
    # py-spy --subprocesses opens each stack with the process; a `python -c` command line holds newlines.
    lines = ['process 7:"python -c import time\n', "busy()\";busy (<string>:3) 4\n",
             'process 8:"forecaster worker";loop (c.py:1) 2\n']
    total, counts = by_function(lines)
    assert total == 6
    assert counts == {"busy (<string>)": 4, "loop (c.py)": 2}
    assert top(total, counts, 1) == ["  66.7 %  busy (<string>)"]


def test_the_sampler_finds_where_a_process_spends_its_time(tmp_path: Path) -> None:
    # A few seconds of work, then the process exits: py-spy writes its samples once it has gone.
    script = textwrap.dedent("""
        def spin():
            for _ in range(200_000):
                sum(range(1000))

        print("ready", flush=True)
        spin()
        """)
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    sampler = Sampler(tmp_path / "spin.stacks")
    try:
        assert process.stdout is not None and process.stdout.readline() == "ready\n"
        sampler.start(process.pid)
        process.wait()
    finally:
        process.kill()
        sampler.stop()
    total, counts = by_function(sampler.path.read_text().splitlines(keepends=True))
    assert total > 0
    # Nearly every sample is in spin(): a few may catch the start-up after "ready" or the exit.
    assert counts["spin (<string>)"] >= 0.9 * total
