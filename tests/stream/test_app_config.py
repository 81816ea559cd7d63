"""The Faust app's configuration from the settings (no broker needed: nothing connects)."""

from __future__ import annotations

from pathlib import Path

import pytest

from forecaster.settings import Settings
from stream_app.app import create_app


@pytest.mark.parametrize(("setting", "expected"), [("none", None), ("lz4", "lz4"), ("zstd", "zstd")])
def test_the_worker_compresses_its_records_as_configured(tmp_path: Path, setting: str,
                                                         expected: str | None) -> None:
    app = create_app(Settings(home=str(tmp_path), worker_compression=setting))
    assert app.conf.producer_compression_type == expected


def test_an_unknown_compression_is_refused_with_the_choices(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"FORECASTER_WORKER_COMPRESSION='brotli' is not one of none, gzip"):
        create_app(Settings(home=str(tmp_path), worker_compression="brotli"))
