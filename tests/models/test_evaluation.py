"""Diebold-Mariano against naive and the chronological split."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from models.evaluation import diebold_mariano, evaluate, split_by_date

errors = arrays(np.float64, 40, elements=st.floats(-5, 5, allow_nan=False))


@settings(deadline=None, max_examples=50)  # no timing in tests: the first call imports scipy
@given(errors, errors)
def test_dm_is_antisymmetric(a, b) -> None:
    forward, backward = diebold_mariano(a, b), diebold_mariano(b, a)
    assert forward.statistic == pytest.approx(-backward.statistic)
    assert forward.p_value == pytest.approx(backward.p_value)
    assert 0.0 <= forward.p_value <= 1.0


def test_dm_matches_the_textbook_statistic_for_one_step() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=120), 1.1 * rng.normal(size=120)
    d = a**2 - b**2
    dm = d.mean() / np.sqrt(d.var() / len(d))  # horizon 1: no autocovariance terms
    hln = np.sqrt((len(d) - 1) / len(d))
    assert diebold_mariano(a, b).statistic == pytest.approx(dm * hln)


def test_dm_rejects_mismatched_errors() -> None:
    with pytest.raises(ValueError, match="equal in length"):
        diebold_mariano(np.zeros(5), np.zeros(6))


def test_naive_scores_itself_as_naive() -> None:
    closes = np.array([10.0, 10.5, 10.2, 10.8])
    e = evaluate(np.zeros(4), closes, closes * 1.01)
    assert e.metrics == e.naive_metrics and not e.beats_naive() and e.dm.p_value == 1.0


def test_split_periods_are_ordered_and_cover_the_paper_window() -> None:
    days = [dt.date(2021, 1, 1) + dt.timedelta(days=i) for i in range(400)]
    split = split_by_date(days, test_start=dt.date(2021, 12, 1), test_days=30)
    assert split.train_end < split.validation_start < split.test_start == dt.date(2021, 12, 1)
    assert split.test_end == dt.date(2021, 12, 30)
    with pytest.raises(ValueError, match="no target dates on or after"):
        split_by_date(days, test_start=dt.date(2030, 1, 1))
