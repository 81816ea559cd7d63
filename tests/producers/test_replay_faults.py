"""The broker goes away in the middle of a replay: the replay fails loudly and never over-reports."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from forecaster.kafka.broker import LocalBroker, free_port
from forecaster.settings import Settings
from producers.pacing import Pacing
from producers.readers import read_csv_bars
from producers.replay import ReplayError, replay
from tests.kafka_helpers import read_topic

pytestmark = [pytest.mark.kafka, pytest.mark.faults, pytest.mark.slow]


def test_broker_lost_mid_replay_ends_in_an_error_that_never_over_reports(data_dir: Path,
                                                                         tmp_path: Path) -> None:
    broker = LocalBroker(tmp_path / "kafka")
    port = free_port()
    # The shortest delivery timeout: the replay gives up on the lost broker as soon as it may.
    settings = Settings(bootstrap=broker.start(port=port).bootstrap, partitions=2,
                        replay_delivery_timeout_s=16)
    result = read_csv_bars([data_dir / "vgi" / "vgi2.csv"])
    waits = [0]

    def sleep(seconds: float) -> None:  # waits between trading days; the broker dies at the 20th
        time.sleep(seconds)
        waits[0] += 1
        if waits[0] == 20:
            broker.stop()

    try:
        with pytest.raises(ReplayError, match=r"delivered \d+ bars and 0 dead letters of 854 rows read"
                           ) as caught:
            replay(result, settings, pacing=Pacing(speed=100), progress=False, sleep=sleep)
        summary = caught.value.summary
        assert summary.bars_sent < len(result.bars) and not summary.accounted

        broker.start(port=port)
        stored = read_topic(settings, settings.topic_bars)
        # Every bar reported as delivered is there; a bar written just as the broker stopped may be
        # there without its acknowledgement, so the topic can hold more, never fewer.
        assert summary.bars_sent <= len(stored) < len(result.bars)
    finally:
        broker.stop()
