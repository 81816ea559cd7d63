"""Property-based tests (hypothesis, derandomized) of what the API reads and echoes: a JSON body is
refused with an InputError or read with every element accounted for, within the row and dead-letter
limits; whatever is echoed is printable and cut."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from api.guard import printable
from api.inputs import InputError, read_json_body

FUZZ = settings(max_examples=300, deadline=None, derandomize=True, database=None)
SCALARS = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
           | st.text(max_size=20))
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
FIELDS = st.sampled_from(["ticker", "date", "open", "high", "low", "close", "volume", "adj_close", "x"])
BARS = st.dictionaries(FIELDS, SCALARS | st.sampled_from(["ACME", "2024-01-05", "2024-13-01", 1, -1]))


def _read(body: bytes) -> Any:
    try:
        return read_json_body(body, max_rows=8, keep=3)
    except InputError as error:
        assert error.status in (413, 422)
        assert error.detail["message"].isprintable()
        return error


@FUZZ
@given(st.binary(max_size=200))
def test_any_bytes_are_refused_or_read(body: bytes) -> None:
    _read(body)


@FUZZ
@given(st.lists(JSON | BARS, max_size=12))
def test_every_element_is_a_bar_a_dead_letter_or_filtered_up_to_the_row_limit(elements: list[Any]) -> None:
    outcome = _read(json.dumps({"bars": elements}).encode())
    nested = any(isinstance(element, list) or (isinstance(element, dict) and any(
        isinstance(value, list | dict) for value in element.values())) for element in elements[:9])
    # The ninth element is matched (and refused if nested) before it is counted past the limit.
    if not elements or nested or len(elements) > 8:
        assert isinstance(outcome, InputError)
        assert outcome.status == (413 if elements and not nested else 422)
        return
    assert outcome.rows_read == len(elements)
    assert outcome.rows_read == len(outcome.bars) + outcome.dead_letters_total + outcome.filtered
    assert len(outcome.dead_letters) == min(3, outcome.dead_letters_total)


@FUZZ
@given(st.text(), st.integers(min_value=1, max_value=50))
def test_echoes_are_printable_and_cut(text: str, limit: int) -> None:
    shown = printable(text, limit)
    assert shown.isprintable()
    assert shown.startswith(printable(text[:limit], limit))
    assert (shown == printable(text[:limit], limit)) == (len(text) <= limit)
