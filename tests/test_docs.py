"""The README's settings table is the one the code generates, so the two cannot disagree."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_lists_every_setting_with_its_default() -> None:
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- settings-table:start -->\n(.*?)<!-- settings-table:end -->", readme, re.S)
    assert block, "README.md lost its settings table markers"
    generated = subprocess.run([sys.executable, "-m", "forecaster.cli", "settings", "--markdown"],
                               capture_output=True, text=True, check=True).stdout
    assert block.group(1) == generated, "run `forecaster settings --markdown` and paste it into README.md"


def test_every_subcommand_has_help() -> None:
    from forecaster.cli import build_parser

    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert {"kafka", "topics", "replay", "worker", "tail", "demo", "settings"} <= set(commands)
    for name, sub in commands.items():
        assert sub.format_help().startswith(f"usage: forecaster {name}"), name
