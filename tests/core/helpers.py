"""Small drivers shared by the core's tests."""

from __future__ import annotations

from collections.abc import Iterable

from models.core.bar import Bar
from models.core.config import CoreConfig
from models.core.model_slot import PointModel
from models.core.step import StepResult, step


def run(bars: Iterable[Bar], config: CoreConfig, model: PointModel | None = None) -> list[StepResult]:
    """``step`` over one ticker's bars, oldest first."""
    state = None
    results = []
    for bar in bars:
        result = step(state, bar, config, model)
        results.append(result)
        state = result.state
    return results
