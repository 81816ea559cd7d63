"""``forecaster serve`` as a real process for the tests: started, awaited until it answers, stopped."""

from __future__ import annotations

import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def serving(command: list[str], url: str, log: Path, env: dict[str, str], cwd: Path | None = None,
            timeout_s: float = 120) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``command`` (a ``forecaster serve``) with its output in ``log``; yield the process once
    ``GET url/health`` answers, and stop it with SIGTERM afterwards (its exit code is then in
    ``returncode``). Fails with the log if the process ends or does not answer in ``timeout_s``."""
    with open(log, "wb") as out:
        process = subprocess.Popen(command, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            assert process.poll() is None, log.read_text()
            try:
                urllib.request.urlopen(f"{url}/health", timeout=5).close()
                break
            except OSError:  # refused, reset, or slow to answer while it starts on a busy machine
                assert time.monotonic() < deadline, f"no answer in {timeout_s:g} s:\n{log.read_text()}"
                time.sleep(0.2)
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


def peak_rss_kib(pid: int) -> int:
    """The peak resident memory of process ``pid`` in KiB (Linux's ``VmHWM``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM in /proc: Linux only")
