"""Where a process under a bench spends its CPU: py-spy's samples of it, summed by function.

``python -m bench.worker_bench --profile`` samples each contender over the bars it is timed on
(:class:`Sampler`) and prints, per contender, the functions in most of its samples
(:func:`by_function`, :func:`top`). py-spy (in the ``dev`` extra) reads the process from outside,
non-blocking: the process runs as it does unsampled, and every thread and the worker pool's
processes are seen, the event loop's polls and C calls included (each sample is charged to the
Python frame that made the call). cProfile in the process would double its cost and see one thread.

The samples are py-spy's "raw" (collapsed) stacks, one line per distinct stack with its count;
``flamegraph.pl`` draws them. Idle threads are not sampled, so the shares are of busy samples.

>>> lines = ["main (a.py:1);main (a.py:5);step (b.py:9) 3", "main (a.py:1) 1", "loop (d.py:2) 2"]
>>> total, counts = by_function(lines)
>>> top(total, counts, 2)
['  66.7 %  main (a.py)', '  50.0 %  step (b.py)']
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

#: Samples a second: enough for shares to a percent over a timed run of ten seconds and more.
RATE = 100


def py_spy() -> str:
    """The py-spy executable: beside this Python's, else on ``PATH``."""
    beside = Path(sys.executable).with_name("py-spy")
    found = str(beside) if beside.exists() else shutil.which("py-spy")
    if found is None:
        raise SystemExit("--profile needs py-spy: pip install -e '.[dev]' (or pip install py-spy)")
    return found


class Sampler:
    """Samples one process and its children into ``path`` between :meth:`start` and :meth:`stop`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, pid: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [py_spy(), "record", "--pid", str(pid), "--subprocesses", "--nonblocking",
             "--rate", str(RATE), "--format", "raw", "--output", str(self.path)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def stop(self) -> None:
        """Stop sampling; py-spy writes its samples on SIGINT (as on Ctrl-C)."""
        if self.process is None:
            return
        self.process.send_signal(signal.SIGINT)
        _, err = self.process.communicate(timeout=60)
        if not self.path.exists():
            raise RuntimeError(f"py-spy wrote no samples: {err.decode(errors='replace').strip()}")


def by_function(lines: Iterable[str]) -> tuple[int, Counter[str]]:
    """The samples in ``lines`` (collapsed stacks) and, per function (``name (file)``), how many of
    them it is in: once per stack, however deep it recurses."""
    total = 0
    counts: Counter[str] = Counter()
    pending = ""  # a stack cut by a newline in a process's command line (``python -c``'s)
    for line in lines:
        stack, _, count = (pending + line.rstrip("\n")).rpartition(" ")
        if not count.isdigit():
            pending += line
            continue
        pending = ""
        total += int(count)
        functions = (_function(frame) for frame in stack.split(";") if not frame.startswith("process "))
        counts.update(dict.fromkeys(functions, int(count)))
    return total, counts


def _function(frame: str) -> str:
    # py-spy writes a frame as "name (path:line)", and with --subprocesses a stack's first as
    # 'process PID:"command"' (dropped by the caller); the line is dropped so that a function's
    # lines add up.
    name, _, where = frame.partition(" (")
    return f"{name} ({where.rsplit(':', 1)[0]})" if where else name


def top(total: int, counts: Counter[str], n: int) -> list[str]:
    """The ``n`` functions in most samples, with their share of ``total``, one line each."""
    return [f"{100 * count / total:6.1f} %  {function}" for function, count in counts.most_common(n)]
