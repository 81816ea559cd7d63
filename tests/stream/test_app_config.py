"""The Faust app's configuration from the settings (no broker needed: nothing connects)."""

from __future__ import annotations

import gc
import os
from pathlib import Path

import pytest

from forecaster.cli import build_parser
from forecaster.kafka.broker import free_port
from forecaster.settings import Settings
from models import registry
from stream_app import faust_adapter
from stream_app.app import FULL_PASS_AFTER, create_app, settle_collector
from stream_app.faust_adapter import ForecasterApp


@pytest.mark.parametrize(("setting", "expected"), [("none", None), ("lz4", "lz4"), ("zstd", "zstd")])
def test_the_worker_compresses_its_records_as_configured(tmp_path: Path, setting: str,
                                                         expected: str | None) -> None:
    app = create_app(Settings(home=str(tmp_path), worker_compression=setting))
    assert app.conf.producer_compression_type == expected


def test_an_unknown_compression_is_refused_with_the_choices(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"FORECASTER_WORKER_COMPRESSION='brotli' is not one of none, gzip"):
        create_app(Settings(home=str(tmp_path), worker_compression="brotli"))


def test_forecaster_worker_hands_its_options_to_the_app_not_to_the_environment(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from forecaster.commands import worker

    ran: list[tuple[ForecasterApp, str]] = []
    monkeypatch.setattr(worker, "require_broker", lambda settings, timeout_s: None)
    monkeypatch.setattr(registry, "require_champion_extras", lambda settings: None)
    monkeypatch.setattr(faust_adapter, "run_worker", lambda app, loglevel: ran.append((app, loglevel)))
    environ = dict(os.environ)
    port = free_port()
    args = build_parser().parse_args(["worker", "--workdir", str(tmp_path / "workdir"),
                                      "--metrics-port", str(port), "--bootstrap", "kafka-1:9092",
                                      "--connect-timeout", "1", "-l", "info"])
    worker.run(args, Settings(home=str(tmp_path / "home")))
    [(app, loglevel)] = ran
    settings = app.forecaster_settings
    assert (settings.home, settings.metrics_port, settings.bootstrap) == (str(tmp_path / "workdir"), port,
                                                                         "kafka-1:9092")
    assert [str(url) for url in app.conf.broker] == ["kafka://kafka-1:9092"] and loglevel == "info"
    assert (tmp_path / "workdir" / "worker").is_dir() and not (tmp_path / "home").exists()
    assert dict(os.environ) == environ


def test_a_started_worker_freezes_its_start_up_and_makes_full_collector_passes_rarer() -> None:
    before, frozen_before = gc.get_threshold(), gc.get_freeze_count()
    try:
        settle_collector()
        assert gc.get_freeze_count() > frozen_before
        assert gc.get_threshold() == (before[0], before[1], FULL_PASS_AFTER)
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
