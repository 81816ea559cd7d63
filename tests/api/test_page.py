"""The web page end to end: ``forecaster serve`` in a child process, the real broker, headless Chromium.

The browser is the system's (Debian ``chromium`` and ``chromium-driver``), driven by Selenium; the
predictions topic is seeded with the records the worker would write, rather than running a worker.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from forecaster.kafka.broker import free_port
from forecaster.settings import Settings, to_environ
from models.backtest import run_backtest
from models.core.config import CoreConfig
from producers.readers import read_csv_bars
from tests.api.seeding import seed_predictions, streamed_records
from tests.serving import serving

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
TOKEN = "page-token-value"
# The page redraws the live table every few seconds: read it in one script call, never element by
# element (an element found before a redraw is gone after it).
READ_LIVE = ("return [...document.querySelectorAll('#live tbody tr')]"
             ".map(r => [r.dataset.ticker, r.dataset.horizon, [...r.cells].map(c => c.textContent)])")


@contextmanager
def _serve(settings: Settings, tmp_path: Path) -> Iterator[str]:
    """``forecaster serve`` on a free port; its base URL once /health answers; stopped by SIGTERM."""
    settings = settings.replace(api_port=free_port())
    log = tmp_path / "serve.log"
    url = f"http://{settings.api_host}:{settings.api_port}"
    command = [sys.executable, "-m", "forecaster.cli", "-l", "info", "serve"]
    with serving(command, url, log, env={**os.environ, **to_environ(settings)}, timeout_s=60) as process:
        yield url
    code = process.returncode
    # uvicorn shuts the app down (the lifespan stops the reader), then re-raises the signal.
    assert code == -signal.SIGTERM, f"serve ended with {code}:\n{log.read_text()}"
    assert "Application shutdown complete" in log.read_text()
    assert TOKEN not in log.read_text()


@pytest.fixture
def server(kafka_settings: Settings, tmp_path: Path) -> Iterator[str]:
    with _serve(kafka_settings, tmp_path) as url:
        yield url


@pytest.fixture
def token_server(kafka_settings: Settings, tmp_path: Path) -> Iterator[str]:
    """The server of a FORECASTER_API_TOKEN."""
    with _serve(kafka_settings.replace(api_token=TOKEN), tmp_path) as url:
        yield url


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    for path in (CHROMIUM, CHROMEDRIVER):
        assert shutil.which(path), f"{path} is missing: apt-get install chromium chromium-driver"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="chromium-")
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1280,1600", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def test_upload_charts_the_forecast_and_the_live_table_fills(
        server: str, browser: webdriver.Chrome, kafka_settings: Settings, data_dir: Path) -> None:
    """At several horizons: the upload's at 1, 5 and 20 bars, the topic's at 1 and 5."""
    records = streamed_records(data_dir, horizons=(1, 5))
    seed_predictions(kafka_settings, records)
    browser.get(server)
    wait = WebDriverWait(browser, 60, poll_frequency=0.2)

    path = data_dir / "601988.SH.csv"
    browser.find_element(By.ID, "file").send_keys(str(path))
    browser.find_element(By.ID, "horizons").send_keys("1,5,20")
    browser.find_element(By.ID, "submit").click()
    wait.until(lambda b: b.find_element(By.ID, "chart").get_attribute("data-points"))
    # The chart is horizon 1's: 3,681 bars give 3,680 scored predictions and the forecast for the
    # day after the last bar (the other horizons' records share their target days: not plotted).
    assert browser.find_element(By.ID, "chart").get_attribute("data-points") == "3681"
    assert browser.find_element(By.ID, "errors").get_attribute("data-points") == "3680"
    for line in ("actual", "predicted", "band"):
        assert browser.find_element(By.CSS_SELECTOR, f"#chart path.{line}").get_attribute("d").startswith("M")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#errors rect")) == 3680
    metrics = {row.find_elements(By.TAG_NAME, "td")[0].text for row in
               browser.find_elements(By.CSS_SELECTOR, "#metrics tbody tr")}
    assert {"mae", "rmse", "relative_mae", "coverage_95"} <= metrics
    summary = browser.find_element(By.ID, "summary").text
    assert "3681 bars of 1 ticker(s)" in summary and "relative MAE over 1 ticker(s)" in summary
    assert "of horizon 1, the shortest" in browser.find_element(By.ID, "shown-horizon").text
    # Ahead: the last bar's forecast at each horizon, the backtest's.
    config = CoreConfig.from_settings(kafka_settings, horizons=(1, 5, 20))
    last_bar = run_backtest(read_csv_bars([path]).bars, config).predictions[-3:]
    ahead = [[c.text for c in row.find_elements(By.TAG_NAME, "td")]
             for row in browser.find_elements(By.CSS_SELECTOR, "#ahead tbody tr")]
    assert [cells[:3] for cells in ahead] == [
        [str(p["horizon"]), p["target_date"], f"{p['predicted_close']:.4f}"] for p in last_bar]
    assert all(cells[3].endswith("(95 %)") for cells in ahead)

    wait.until(lambda b: len(b.execute_script(READ_LIVE)) == 8)
    rows = browser.execute_script(READ_LIVE)
    assert [(ticker, horizon) for ticker, horizon, _ in rows] == [
        (ticker, horizon) for ticker in ("ABC", "TEL", "VGI", "VTC") for horizon in ("1", "5")]
    for _, horizon, cells in rows[4:6]:  # VGI's
        last_vgi = [r for r in records if (r["ticker"], r["record_type"], str(r["horizon"])) ==
                    ("VGI", "prediction", horizon)][-1]
        assert cells[1:4] == [horizon, last_vgi["as_of"], last_vgi["target_date"]]
        assert cells[4] == f"{last_vgi['predicted_close']:.4f}"
    wait.until(lambda b: b.find_element(By.ID, "health").text.startswith("ok"))


def test_with_a_token_the_page_asks_for_it_once_and_then_works(
        token_server: str, browser: webdriver.Chrome, kafka_settings: Settings, data_dir: Path) -> None:
    seed_predictions(kafka_settings, streamed_records(data_dir))
    browser.get(token_server)
    wait = WebDriverWait(browser, 60, poll_frequency=0.2)
    wait.until(lambda b: "asks for a token" in b.find_element(By.ID, "reader").text)
    browser.find_element(By.ID, "token").send_keys(TOKEN, Keys.TAB)  # leaving the field commits it
    wait.until(lambda b: len(b.execute_script(READ_LIVE)) == 4)
    assert browser.execute_script("return sessionStorage.getItem('forecaster-api-token')") == TOKEN
    browser.find_element(By.ID, "file").send_keys(str(data_dir / "vgi" / "vgi2.csv"))
    browser.find_element(By.ID, "submit").click()
    wait.until(lambda b: b.find_element(By.ID, "chart").get_attribute("data-points"))
    assert browser.find_element(By.ID, "chart").get_attribute("data-points") == "854"
