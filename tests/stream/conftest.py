"""The stream suite's shared fixture: a batch handler's parts over fakes of Faust."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.stream.handler_fakes import Worker, new_worker


@pytest.fixture
def worker(tmp_path: Path) -> Worker:
    return new_worker(tmp_path)
