"""The demo deletes its last run's consumer group before it recreates the topics (no broker needed)."""

from __future__ import annotations

import pytest

from forecaster.demo import DemoError, _delete_group


class _Admin:
    """kafka-python's admin as the demo uses it: ``delete_groups`` answers each group's error name."""

    def __init__(self, *outcomes: str) -> None:
        self.outcomes = list(outcomes)
        self.calls = 0

    def delete_groups(self, groups: list[str]) -> dict[str, str]:
        self.calls += 1
        return {groups[0]: self.outcomes.pop(0) if len(self.outcomes) > 1 else self.outcomes[0]}


def test_a_member_that_died_without_leaving_is_waited_for() -> None:
    # A worker that crashed (or lost its broker) stays a member until its session times out.
    admin = _Admin("CoordinatorLoadInProgressError", "NonEmptyGroupError", "NonEmptyGroupError", "OK")
    _delete_group(admin, "forecaster-demo", timeout_s=30)
    assert admin.calls == 4


def test_the_first_run_finds_no_group() -> None:
    admin = _Admin("GroupIdNotFoundError")
    _delete_group(admin, "forecaster-demo", timeout_s=30)
    assert admin.calls == 1


def test_a_group_still_in_use_is_a_clear_error_after_the_wait() -> None:
    says = r"\(NonEmptyGroupError\) within 0 s; is a worker of it still running"
    with pytest.raises(DemoError, match=says):
        _delete_group(_Admin("NonEmptyGroupError"), "forecaster-demo", timeout_s=0.3)
