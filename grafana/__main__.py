"""``python -m grafana [--check]``: write (or compare) ``grafana/dashboards/*.json``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from grafana_foundation_sdk.cog.encoder import JSONEncoder

from grafana.boards import all_dashboards

OUTPUT_DIR = Path(__file__).resolve().parent / "dashboards"


def rendered() -> dict[Path, str]:
    """The JSON text of every dashboard, by the file it belongs in."""
    return {
        OUTPUT_DIR / f"{uid}.json": json.dumps(board, cls=JSONEncoder, indent=2, sort_keys=True) + "\n"
        for uid, board in all_dashboards().items()
    }


def stale_files() -> list[Path]:
    """Files that are missing, differ from the code, or belong to no dashboard."""
    expected = rendered()
    stale = [path for path, text in expected.items() if not path.exists() or path.read_text() != text]
    stale += [path for path in OUTPUT_DIR.glob("*.json") if path not in expected]
    return sorted(stale)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grafana", description=__doc__)
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if the committed JSON differs from the code, writing nothing")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files()
        for path in stale:
            print(f"out of date: {path}", file=sys.stderr)
        return 1 if stale else 0
    OUTPUT_DIR.mkdir(exist_ok=True)
    for path in OUTPUT_DIR.glob("*.json"):
        path.unlink()
    for path, text in rendered().items():
        path.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
