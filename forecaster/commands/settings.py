"""``forecaster settings``: every setting, its environment variable, default and current value.

Settings that are resolved from several variables (the MLflow store) end the list with a comment
line saying which value is in force and why.
"""

from __future__ import annotations

import argparse
import dataclasses

from forecaster.redaction import SHOWN, redact
from forecaster.settings import Settings, env_name, env_value, table
from forecaster.startup import core_config

#: Settings whose whole value is a secret; the user information of any URI is hidden as well.
SECRET_WORDS = ("password", "token")


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("settings", help="list every setting with its current value")
    parser.add_argument("--markdown", action="store_true",
                        help="print the defaults as the README's Markdown table")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.markdown:
        print("| variable | default | meaning |\n|---|---|---|")
        for variable, default, meaning in table():
            print(f"| `{variable}` | `{default}` | {meaning} |" if default else
                  f"| `{variable}` | | {meaning} |")
        return 0
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        secret = any(word in f.name for word in SECRET_WORDS) and value
        print(f"{env_name(f.name)}={SHOWN if secret else redact(env_value(value))}")
    for store, (uri, why) in settings.mlflow_sources().items():
        print(f"# MLflow {store} URI in force: {redact(uri)} ({why})")
    core_config(settings)  # after the list: a value the core refuses ends it with the one-line error
    return 0
