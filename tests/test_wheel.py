"""The wheel works outside the checkout, without TensorFlow.

The project is built into a wheel from a copy of its sources and installed (not editable) into a
fresh virtual environment. That environment gets the dependencies already installed for the tests,
linked one by one, except TensorFlow and Keras (the ``neural`` extra) and the checkout's own editable
install: so every file a command needs must come from the wheel, and nothing may import TensorFlow.
From a folder outside the checkout it then runs the local broker, the demo on the sample data the
wheel ships, the HTTP API with its page and ``POST /forecast``, and a Keras family that must say
which extra it needs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from forecaster.kafka.broker import free_port
from tests.serving import serving

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
#: What the fresh environment must not see: the neural extra, and the checkout's editable install.
LEFT_OUT = ("tensorflow", "keras", "tf_keras", "tensorboard", "__editable__", "stream_forecaster",
            "_main_deps")
#: What a copy of the sources leaves out: local state and build leftovers that could leak into a wheel.
NOT_SOURCES = shutil.ignore_patterns(".git", ".venv", ".forecaster", "build", "dist", "*.egg-info",
                                     "__pycache__", ".pytest_cache", ".ruff_cache", ".device", ".whl")


@dataclass(frozen=True)
class Installed:
    """A fresh environment with the wheel installed, and a folder outside the checkout to run in."""

    bin: Path
    cwd: Path
    env: dict[str, str]

    def run(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.bin / "forecaster"), *args], cwd=self.cwd, env=self.env,
                              capture_output=True, text=True, timeout=timeout, check=False)


def _site_packages() -> list[Path]:
    return [Path(p) for p in sys.path if p.endswith("site-packages") and Path(p).is_dir()]


def _link_dependencies(target: Path) -> None:
    """Link every installed distribution of the test environment into ``target`` but :data:`LEFT_OUT`."""
    for site in _site_packages():
        for entry in site.iterdir():
            if entry.name.lower().startswith(LEFT_OUT) or (target / entry.name).exists():
                continue
            (target / entry.name).symlink_to(entry)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    base = tmp_path_factory.mktemp("wheel")
    sources = base / "sources"
    shutil.copytree(ROOT, sources, ignore=NOT_SOURCES)
    dist = base / "dist"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(dist),
                            str(sources)], capture_output=True, text=True, check=False)
    assert build.returncode == 0, build.stdout + build.stderr
    (wheel,) = dist.glob("stream_forecaster-*.whl")

    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    (site,) = (venv / "lib").glob("python3.*/site-packages")
    _link_dependencies(site)
    python = venv / "bin" / "python"
    install = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                              str(wheel)], capture_output=True, text=True, check=False)
    assert install.returncode == 0, install.stdout + install.stderr

    cwd = base / "elsewhere"
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("FORECASTER_", "PYTHON", "MLFLOW_", "VIRTUAL_ENV"))}
    env.update(FORECASTER_HOME=str(cwd / "home"), FORECASTER_METRICS_PORT=str(free_port()),
               PYTHONUNBUFFERED="1", PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}")
    return Installed(venv / "bin", cwd, env)


def test_the_wheel_is_what_runs_and_tensorflow_is_absent(installed: Installed) -> None:
    probe = subprocess.run(
        [str(installed.bin / "python"), "-c",
         "import importlib.util, forecaster, models, stream_app, producers, api\n"
         "print(forecaster.__file__)\n"
         "print([n for n in ('tensorflow', 'keras') if importlib.util.find_spec(n)])"],
        cwd=installed.cwd, env=installed.env, capture_output=True, text=True, check=True)
    location, neural = probe.stdout.splitlines()
    assert Path(location).is_relative_to(installed.bin.parent) and not Path(location).is_relative_to(ROOT)
    assert neural == "[]"
    version = installed.run("--version")
    assert version.returncode == 0 and version.stdout.strip().startswith("forecaster ")


def test_kafka_start_status_stop_from_the_wheel(installed: Installed) -> None:
    port = free_port()
    data = installed.cwd / "kafka"
    started = installed.run("kafka", "start", "--port", str(port), "--data-dir", str(data))
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        status = installed.run("kafka", "status", "--data-dir", str(data))
        assert status.returncode == 0 and f"127.0.0.1:{port}" in status.stdout, status.stdout + status.stderr
    finally:
        stopped = installed.run("kafka", "stop", "--data-dir", str(data))
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr


def test_demo_quick_on_the_sample_data_the_wheel_ships(installed: Installed) -> None:
    demo = installed.run("demo", "--quick", "--tickers", "AAPL,MSFT", "--port", str(free_port()), timeout=900)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    table = demo.stdout[demo.stdout.index("Out-of-sample days"):]
    assert "\nAAPL " in table and "\nMSFT " in table
    assert (installed.cwd / "home" / "demo-report.png").read_bytes()[:4] == b"\x89PNG"


@pytest.fixture
def server(installed: Installed) -> Iterator[str]:
    port = free_port()
    env = {**installed.env, "FORECASTER_BOOTSTRAP": f"127.0.0.1:{free_port()}"}  # no broker: forecasts only
    log = installed.cwd / f"serve-{port}.log"
    with serving([str(installed.bin / "forecaster"), "serve", "--port", str(port)], f"http://127.0.0.1:{port}",
                 log, env, cwd=installed.cwd):
        yield f"http://127.0.0.1:{port}"


def _post_csv(url: str, path: Path) -> dict:
    boundary = uuid.uuid4().hex
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{path.name}\"\r\n"
            "Content-Type: text/csv\r\n\r\n")
    body = head.encode() + path.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(f"{url}/forecast?model=arima", data=body, method="POST",
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    with urllib.request.urlopen(request, timeout=300) as response:
        return json.loads(response.read())


def test_serve_page_and_forecast_from_the_wheel(installed: Installed, server: str) -> None:
    with urllib.request.urlopen(f"{server}/", timeout=10) as response:
        page = response.read().decode()
    assert "<html" in page.lower() and "app.js" in page
    with urllib.request.urlopen(f"{server}/static/app.js", timeout=10) as response:
        assert response.status == 200
    sample = _installed_sample(installed) / "vgi" / "vgi2.csv"
    answer = _post_csv(server, sample)
    assert answer["tickers"] == ["VGI2"]
    assert answer["bars"] == len(answer["predictions"]) > 800 and answer["scores"]


def _installed_sample(installed: Installed) -> Path:
    out = subprocess.run([str(installed.bin / "python"), "-c",
                          "from forecaster.settings import SAMPLE_DATA_DIR; print(SAMPLE_DATA_DIR)"],
                         cwd=installed.cwd, env=installed.env, capture_output=True, text=True, check=True)
    sample = Path(out.stdout.strip())
    assert sample.is_relative_to(installed.bin.parent) and (sample / "README.md").exists()
    return sample


def test_a_keras_family_without_the_neural_extra_says_which_to_install(installed: Installed) -> None:
    sample = _installed_sample(installed) / "vgi" / "vgi2.csv"
    train = installed.run("train", str(sample), "--model", "bigru")
    assert train.returncode == 2
    (line,) = train.stderr.strip().splitlines()
    assert "pip install 'stream-forecaster[neural]'" in line and "bigru" in line


def test_backtest_and_an_xgboost_family_run_without_tensorflow(installed: Installed) -> None:
    sample = _installed_sample(installed) / "vgi" / "vgi2.csv"
    out = installed.cwd / "preds.csv"
    backtest = installed.run("backtest", str(sample), "--model", "arima", "--out", str(out))
    assert backtest.returncode == 0, backtest.stdout + backtest.stderr
    assert out.read_text().count("\n") > 100
    train = installed.run("train", str(sample), "--model", "xgboost", "--experiment", "wheel")
    assert train.returncode == 0, train.stdout + train.stderr
    assert "registered" in train.stdout


def test_a_worker_whose_champion_is_a_keras_model_says_which_extra_to_install(
        installed: Installed, data_dir: Path, tmp_path: Path) -> None:
    from forecaster.settings import load
    from models import registry
    from models.training import train
    from producers.readers import read_csv_bars

    # The champion is trained and promoted here, where TensorFlow is installed; the wheel's has none.
    settings = load().replace(home=str(tmp_path / "store"), mlflow_tracking_uri="", model_name="keras-one")
    bars = read_csv_bars([data_dir / "vgi" / "vgi2.csv"], ticker="VGI").bars
    outcome = train(bars, "bigru", settings, epochs=1, params={"lookback": 3, "units": 4}, test_days=20)
    store = registry.client(settings)
    store.set_registered_model_alias(settings.model_name, registry.CHAMPION, outcome.version)
    env = {**installed.env, "FORECASTER_MLFLOW_TRACKING_URI": settings.mlflow_uri,
           "FORECASTER_MODEL_NAME": settings.model_name}
    worker = subprocess.run([str(installed.bin / "forecaster"), "worker"], cwd=installed.cwd, env=env,
                            capture_output=True, text=True, timeout=300, check=False)
    assert worker.returncode == 2
    (line,) = worker.stderr.strip().splitlines()
    assert "pip install 'stream-forecaster[neural]'" in line and "bigru" in line
