"""The suite's own layout: no module under tests/ imports a test module or a conftest. Helpers shared
by tests live in helper modules (tests/worker.py, tests/core/helpers.py, ...), shared fixtures in
conftests, which pytest loads by itself."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def _is_test_module(dotted: str) -> bool:
    last = dotted.rsplit(".", 1)[-1]
    return last.startswith("test_") or last == "conftest"


def imported_test_modules(source: str, module: str) -> list[str]:
    """The test modules (``test_*``) and conftests that ``source``, the module ``module``, imports.

    >>> imported_test_modules("from tests.stream.test_processor import CONFIG", "tests.stream.test_x")
    ['tests.stream.test_processor']
    >>> imported_test_modules("from . import conftest, helpers", "tests.core.test_x")
    ['tests.core.conftest']
    >>> imported_test_modules("from .helpers import run", "tests.core.test_x")
    []
    """
    package = module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            # `from package import name` may name a module as well as an attribute.
            found += [base, *(f"{base}.{alias.name}" for alias in node.names)]
    return [name for name in found if name.startswith("tests.") and _is_test_module(name)]


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(TESTS.parent).with_suffix("").parts)


def test_no_module_of_the_suite_imports_a_test_module_or_a_conftest() -> None:
    offenders = {str(path.relative_to(TESTS)): found for path in sorted(TESTS.rglob("*.py"))
                 if (found := imported_test_modules(path.read_text(), _module_name(path)))}
    assert offenders == {}


def test_an_import_of_a_test_module_is_found_however_it_is_written() -> None:
    module = "tests.stream.test_worker"
    for source in ["import tests.test_alerts", "from tests import test_alerts",
                   "def f():\n    from tests.test_alerts import FOR", "from ..test_alerts import FOR"]:
        assert imported_test_modules(source, module) == ["tests.test_alerts"], source
