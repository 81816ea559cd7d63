"""Fixtures for the deployment checks: one real Prometheus loaded with the project's alert rules."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.deploy.observability import RULES_DIR
from tests.deploy.prometheus_server import PrometheusServer, running_prometheus


@pytest.fixture(scope="session")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    """A real Prometheus with ``deploy/prometheus/rules`` loaded and nothing to scrape."""
    with running_prometheus(tmp_path_factory.mktemp("prometheus"),
                            rule_files=sorted(RULES_DIR.glob("*.yml"))) as server:
        yield server
