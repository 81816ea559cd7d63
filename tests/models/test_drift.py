"""Drift detectors: the vectorised PSI window equals a plain sliding window, and PSI and
Page-Hinkley tell a shift from noise."""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest

from models.drift import PSI, PageHinkleys, Reference

from .helpers import plain_page_hinkley


def test_batched_psi_window_matches_a_plain_sliding_window() -> None:
    rng = np.random.default_rng(1)
    reference = Reference.from_sample(rng.normal(size=1000))
    for _ in range(100):
        window = int(rng.integers(1, 50))
        psi, plain = PSI(reference, window), deque(maxlen=window)
        for _ in range(20):
            xs = rng.normal(size=int(rng.integers(0, 80))) * rng.choice([1.0, 3.0])
            if xs.size and rng.random() < 0.2:
                xs[0] = np.nan  # skipped, not counted
            psi.update_many(xs)
            plain.extend(np.searchsorted(reference.edges, xs[np.isfinite(xs)], side="right"))
            counts = np.bincount(np.array(plain, dtype=int), minlength=len(reference.proportions))
            assert psi.n == len(plain)
            p = np.maximum(counts / max(len(plain), 1), 1e-4)
            q = np.maximum(np.array(reference.proportions), 1e-4)
            expected = float(np.sum((p - q) * np.log(p / q))) if plain else 0.0
            assert psi.score() == pytest.approx(expected)


def test_psi_is_small_for_the_reference_distribution_and_large_after_a_shift() -> None:
    rng = np.random.default_rng(7)
    psi = PSI(Reference.from_sample(rng.normal(size=5000)), window=500)
    psi.update_many(rng.normal(size=500))
    assert psi.score() < 0.1
    psi.update_many(rng.normal(scale=2.0, size=500))
    assert psi.score() > 0.25


def test_page_hinkley_false_alarm_rate_is_low_and_a_volatility_jump_is_caught() -> None:
    rng = np.random.default_rng(3)
    false_alarms = caught = 0
    one = ["AAA"]
    for _ in range(100):
        calm = np.abs(rng.normal(size=500))
        false_alarms += PageHinkleys(20.0, delta=0.1).update_many(one * calm.size, calm).any()
        detector = PageHinkleys(20.0, delta=0.1)
        detector.update_many(one * 250, np.abs(rng.normal(size=250)))
        caught += detector.update_many(one * 100, np.abs(rng.normal(scale=3.0, size=100))).any()
    assert false_alarms <= 3
    assert caught == 100


def test_reference_round_trip_and_validation() -> None:
    reference = Reference.from_sample(np.arange(100.0), bins=4)
    assert Reference.from_dict(reference.to_dict()) == reference
    assert sum(reference.proportions) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="need 3 proportions"):
        Reference((1.0, 2.0), (0.5, 0.5))
    with pytest.raises(ValueError, match="at least 10 finite values"):
        Reference.from_sample(np.array([1.0, np.nan]))



def test_page_hinkleys_raise_the_alarms_of_one_plain_test_per_key_in_any_batching() -> None:
    rng = np.random.default_rng(5)
    keys = ["a", "b", "c", "d"]
    xs = np.abs(rng.normal(size=1600) * np.repeat(rng.choice([1.0, 4.0], size=16), 100))
    xs[rng.random(xs.size) < 0.05] = rng.choice([np.nan, np.inf])  # skipped, not counted
    owners = rng.choice(keys, size=xs.size, p=[0.55, 0.3, 0.1, 0.05]).tolist()
    forget_at = 900  # "b" leaves and comes back: its test starts afresh
    expected = set()
    for key in keys:
        for part in ([(0, forget_at), (forget_at, xs.size)] if key == "b" else [(0, xs.size)]):
            mine = [i for i in range(*part) if owners[i] == key]
            expected |= {mine[j] for j in plain_page_hinkley(xs[mine].tolist(), 5.0, 0.05, 10)}
    assert len(expected) > 2 * len(keys)  # restarts are exercised
    tests, got, start = PageHinkleys(5.0, 0.05, 10), set(), 0
    while start < xs.size:
        end = min(start + int(rng.integers(0, 40)), forget_at if start < forget_at else xs.size)
        alarms = tests.update_many(owners[start:end], xs[start:end])
        got |= {start + i for i in np.flatnonzero(alarms).tolist()}
        if end == forget_at:
            tests.forget("b")
        start = end
    assert got == expected


def test_one_page_hinkley_fed_value_by_value_raises_the_alarms_of_the_plain_test() -> None:
    xs = np.abs(np.random.default_rng(6).normal(size=400) * np.repeat([1.0, 4.0, 1.0, 4.0], 100))
    xs[::37] = np.nan
    one = PageHinkleys(5.0, 0.05, 10)
    expected = plain_page_hinkley(xs.tolist(), 5.0, 0.05, 10)
    assert len(expected) > 1
    assert [i for i, x in enumerate(xs) if one.update_many(["AAA"], np.array([x]))[0]] == expected
