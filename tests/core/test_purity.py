"""The core stays pure: importing all of it loads no streaming, deep-learning or registry library."""

from __future__ import annotations

import subprocess
import sys


def test_core_imports_no_kafka_faust_tensorflow_or_mlflow() -> None:
    code = (
        "import sys, pkgutil, importlib, models.core, models.backtest\n"
        "for m in pkgutil.iter_modules(models.core.__path__):\n"
        "    importlib.import_module('models.core.' + m.name)\n"
        "heavy = {'kafka', 'faust', 'aiokafka', 'tensorflow', 'keras', 'mlflow', 'xgboost', 'statsmodels'}\n"
        "print(sorted(heavy & {name.split('.')[0] for name in sys.modules}))\n"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"
