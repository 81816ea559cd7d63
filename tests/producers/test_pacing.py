"""The pacing schedule, observed on a fake clock: no test waits."""

from __future__ import annotations

import pytest

from producers.pacing import Pacer, Pacing


class FakeTime:
    """A clock that moves only when slept on, recording the sleeps."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def _send_times(pacing: Pacing, days: list[int], work_s: float = 0.0) -> list[float]:
    """When each bar went out, relative to the first, sending bars of the given day indexes."""
    fake = FakeTime()
    pacer = Pacer(pacing, clock=fake.clock, sleep=fake.sleep)
    times = []
    for index, day in enumerate(days):
        pacer.wait(index, day)
        times.append(fake.now - 100.0)
        fake.now += work_s  # time spent sending the bar
    return times


def test_rate_spaces_bars_evenly() -> None:
    assert _send_times(Pacing(rate=4), [0, 0, 1, 1, 2]) == [0.0, 0.25, 0.5, 0.75, 1.0]


def test_speed_sends_a_days_bars_together() -> None:
    assert _send_times(Pacing(speed=2), [0, 0, 0, 1, 1, 2]) == [0.0, 0.0, 0.0, 0.5, 0.5, 1.0]


def test_slow_sending_is_not_made_slower() -> None:
    # Sending takes longer than the schedule allows: never sleep, never try to catch up by bursting.
    fake_times = _send_times(Pacing(rate=10), [0, 0, 0], work_s=0.5)
    assert fake_times == [0.0, 0.5, 1.0]


def test_unpaced_never_sleeps() -> None:
    fake = FakeTime()
    pacer = Pacer(Pacing(), clock=fake.clock, sleep=fake.sleep)
    for index in range(100):
        pacer.wait(index, index)
    assert fake.sleeps == []


@pytest.mark.parametrize("kwargs, message", [
    ({"rate": 0}, "--rate must be a positive number"),
    ({"speed": -1}, "--speed must be a positive number"),
    ({"rate": 1, "speed": 1}, "not both"),
])
def test_invalid_pacing(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Pacing(**kwargs)


def test_describe() -> None:
    assert [Pacing().describe(), Pacing(rate=500).describe(), Pacing(speed=2.5).describe()] == [
        "max", "500 bars/s", "2.5 days/s"]
