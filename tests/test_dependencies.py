"""The package declares what its code imports, and its requirements install on the common platforms."""

from __future__ import annotations

import ast
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
FIRST_PARTY = {"forecaster", "models", "producers", "stream_app", "api"}
#: Imported only where the ``neural`` extra is checked first (models.families.neural.require_neural).
NEURAL_IMPORTS = {"keras", "tensorflow"}
#: Declared though no module imports them by name: each is loaded by a dependency on our behalf.
INDIRECT = {
    "scikit-learn": "xgboost's XGBRegressor needs it",
    "lz4": "kafka-python's lz4 codec", "cramjam": "aiokafka's codecs",
    "python-snappy": "kafka-python's snappy codec", "zstandard": "kafka-python's zstd codec",
    "crc32c": "kafka-python's record checksums", "python-multipart": "FastAPI's form uploads",
}
#: Platforms (uv's names) whose binary wheels the runtime requirements must resolve to, and the packages
#: that publish no wheel for one of them and so come from their source distribution there.
PLATFORMS = {
    "x86_64-manylinux_2_28": (),
    "aarch64-manylinux_2_28": ("faust-streaming",),  # 0.15.3 publishes wheels for x86-64 and macOS only
    "aarch64-apple-darwin": (),
}


def _name(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _imported_modules() -> set[str]:
    """Top-level modules imported anywhere in the runtime packages (module level or inside functions)."""
    found: set[str] = set()
    for package in FIRST_PARTY:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    found |= {alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    found.add(node.module.split(".")[0])
    return found - FIRST_PARTY - set(sys.stdlib_module_names) - {"__future__"}


def test_every_import_is_a_declared_dependency_and_every_dependency_is_used() -> None:
    declared = {_name(r) for r in PROJECT["dependencies"]}
    distributions = importlib.metadata.packages_distributions()
    imported = _imported_modules()
    providers = {module: {d.lower().replace("_", "-") for d in distributions.get(module, [])}
                 for module in imported - NEURAL_IMPORTS}
    undeclared = {module: names for module, names in providers.items() if not names & declared}
    assert not undeclared, f"imported but not declared in [project] dependencies: {undeclared}"
    used = set().union(*providers.values())
    unused = declared - used - set(INDIRECT)
    assert not unused, f"declared but never imported (dev extra, or INDIRECT with a reason): {unused}"


def test_tensorflow_is_only_in_the_neural_extra() -> None:
    extras = PROJECT["optional-dependencies"]
    assert not any(_name(r).startswith("tensorflow") for r in PROJECT["dependencies"])
    assert {_name(r) for r in extras["neural"]} == {"tensorflow-cpu", "tensorflow"}


@pytest.mark.slow
@pytest.mark.parametrize("platform", sorted(PLATFORMS))
def test_runtime_requirements_resolve_to_wheels_without_tensorflow(platform: str, tmp_path: Path) -> None:
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    assert uv, "uv (dev extra) is needed to resolve for other platforms"
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("\n".join(PROJECT["dependencies"]))
    lock = tmp_path / "lock.txt"
    source_only = [arg for name in PLATFORMS[platform] for arg in ("--no-binary", name)]
    result = subprocess.run(
        [uv, "pip", "compile", "--quiet", "--python-version", "3.11", "--python-platform", platform,
         "--only-binary", ":all:", *source_only, str(requirements), "-o", str(lock)],
        capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr
    pinned = {line.split("==")[0].lower() for line in lock.read_text().splitlines() if "==" in line}
    assert {"faust-streaming", "mlflow", "xgboost", "fastapi"} <= pinned
    assert not {name for name in pinned if name.startswith(("tensorflow", "keras"))}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted({name for names in PLATFORMS.values() for name in names}))
def test_a_package_without_a_wheel_builds_without_a_compiler(name: str, tmp_path: Path) -> None:
    """Where :data:`PLATFORMS` lets a package come from source, it must install on a machine with no C
    compiler: its build falls back to pure Python (faust-streaming's C speedups are optional)."""
    (requirement,) = [r for r in PROJECT["dependencies"] if _name(r) == name]
    pip = [sys.executable, "-m", "pip"]
    subprocess.run([*pip, "download", "--quiet", "--no-deps", "--no-binary", ":all:",
                    "-d", str(tmp_path / "sdist"), requirement], check=True, capture_output=True, timeout=600)
    (sdist,) = (tmp_path / "sdist").iterdir()
    no_compiler = {**os.environ, "CC": "/bin/false", "CXX": "/bin/false"}
    subprocess.run([*pip, "wheel", "--quiet", "--no-deps", "-w", str(tmp_path / "wheel"), str(sdist)],
                   check=True, capture_output=True, timeout=600, env=no_compiler)
    (wheel,) = (tmp_path / "wheel").iterdir()
    assert wheel.name.endswith("-py3-none-any.whl")
