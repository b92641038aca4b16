"""Task status from the time since the last heartbeat (SPEC, Supervision: RUNNING < 25 % of the
timeout, SILENT < 50 %, STALLED >= 50 %; without feedback or without a timeout, RUNNING)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from taskwatcher.status import TaskStatus, heartbeat_status, next_status_change

R, SI, ST = TaskStatus.RUNNING, TaskStatus.SILENT, TaskStatus.STALLED


def test_status_values_are_the_column_strings() -> None:
    assert [s.value for s in TaskStatus] == ["QUEUED", "RESERVED", "RUNNING", "SILENT", "STALLED"]
    assert str(TaskStatus.SILENT) == "SILENT"
    assert f"{TaskStatus.STALLED}" == "STALLED"
    assert TaskStatus("RUNNING") is TaskStatus.RUNNING
    assert TaskStatus.RUNNING == "RUNNING"  # stored and compared as plain text


@pytest.mark.parametrize(
    ("silence", "expected"),
    [
        (0.0, R),
        (1.0, R),
        (24.999, R),
        (25.0, SI),  # 25 % exactly is no longer RUNNING
        (25.001, SI),
        (40.0, SI),
        (49.999, SI),
        (50.0, ST),  # >= 50 % is STALLED
        (50.001, ST),
        (75.0, ST),
        (99.999, ST),
        (100.0, ST),  # at the timeout the task is stopped; until then it stays STALLED
        (1000.0, ST),
    ],
)
def test_thresholds_with_a_timeout_of_100(silence: float, expected: TaskStatus) -> None:
    assert heartbeat_status(silence, 100.0, True) is expected


@pytest.mark.parametrize(
    ("silence", "timeout", "expected"),
    [
        (7.4, 30, R),
        (7.5, 30, SI),
        (14.9, 30, SI),
        (15.0, 30, ST),
        (0.0249, 0.1, R),
        (0.025, 0.1, SI),
        (0.05, 0.1, ST),
        (0.3, 1.2, SI),
        (0.6, 1.2, ST),
        (899, 3600, R),
        (900, 3600, SI),
        (1800, 3600, ST),
    ],
)
def test_thresholds_scale_with_the_timeout(silence: float, timeout: float, expected: TaskStatus) -> None:
    assert heartbeat_status(silence, timeout, True) is expected


@pytest.mark.parametrize("silence", [0.0, 10.0, 30.0, 60.0, 1e9])
def test_without_feedback_the_status_stays_running(silence: float) -> None:
    # Without a feedback file the timeout is a maximum run time, not a heartbeat.
    assert heartbeat_status(silence, 10.0, False) is R


@pytest.mark.parametrize("timeout", [None, 0, 0.0])
@pytest.mark.parametrize("silence", [0.0, 10.0, 1e9])
def test_without_a_timeout_the_status_stays_running(timeout: float | None, silence: float) -> None:
    assert heartbeat_status(silence, timeout, True) is R
    assert heartbeat_status(silence, timeout, False) is R


def test_a_task_never_reports_reserved_from_its_heartbeat() -> None:
    seen = {heartbeat_status(s / 10, 10.0, True) for s in range(0, 200)}
    assert seen == {R, SI, ST}


def _reference_status(silence: float, timeout: float | None, has_feedback: bool) -> TaskStatus:
    if not has_feedback or not timeout:
        return R
    ratio = silence / timeout
    if ratio < 0.25:
        return R
    if ratio < 0.5:
        return SI
    return ST


_timeouts = st.floats(min_value=0.01, max_value=1e6, allow_nan=False, allow_infinity=False)


@settings(max_examples=150, deadline=None)
@given(fraction=st.floats(min_value=0, max_value=3), timeout=_timeouts)
def test_status_is_monotonic_in_silence(fraction: float, timeout: float) -> None:
    order = {R: 0, SI: 1, ST: 2}
    a = heartbeat_status(fraction * timeout, timeout, True)
    b = heartbeat_status(fraction * timeout * 1.01 + 1e-9, timeout, True)
    assert order[a] <= order[b]


@settings(max_examples=150, deadline=None)
@given(
    fraction=st.one_of(
        st.floats(min_value=0, max_value=0.24),
        st.floats(min_value=0.26, max_value=0.49),
        st.floats(min_value=0.51, max_value=5),
    ),
    timeout=_timeouts,
    has_feedback=st.booleans(),
)
def test_status_matches_the_table_away_from_the_edges(
    fraction: float, timeout: float, has_feedback: bool
) -> None:
    silence = fraction * timeout
    assert heartbeat_status(silence, timeout, has_feedback) is _reference_status(
        silence, timeout, has_feedback
    )


# --- next_status_change: how long until the status next changes, or the timeout fires ---


@pytest.mark.parametrize(
    ("silence", "expected"),
    [
        (0.0, 25.0),  # RUNNING -> SILENT at 25
        (10.0, 15.0),
        (24.0, 1.0),
        (25.0, 25.0),  # just became SILENT: STALLED at 50
        (30.0, 20.0),
        (49.0, 1.0),
        (50.0, 50.0),  # just became STALLED: the timeout fires at 100
        (80.0, 20.0),
        (99.5, 0.5),
        (100.0, 0.0),  # due now
        (150.0, 0.0),  # overdue: never negative
    ],
)
def test_next_status_change_with_a_timeout_of_100(silence: float, expected: float) -> None:
    assert next_status_change(silence, 100.0) == pytest.approx(expected)


def test_next_status_change_scales_with_the_timeout() -> None:
    assert next_status_change(0.0, 2.0) == pytest.approx(0.5)
    assert next_status_change(0.5, 2.0) == pytest.approx(0.5)
    assert next_status_change(1.0, 2.0) == pytest.approx(1.0)
    assert next_status_change(1.9, 2.0) == pytest.approx(0.1)


@settings(max_examples=150, deadline=None)
@given(
    fraction=st.floats(min_value=0, max_value=0.999),
    timeout=st.floats(min_value=0.1, max_value=1e5, allow_nan=False, allow_infinity=False),
)
def test_next_status_change_lands_on_the_next_change(fraction: float, timeout: float) -> None:
    """Waiting the delay returned moves the task to its next state (or to the timeout); any
    shorter wait leaves the status as it is."""
    silence = fraction * timeout
    delay = next_status_change(silence, timeout)
    assert delay > 0
    assert silence + delay <= timeout * (1 + 1e-9)
    now = heartbeat_status(silence, timeout, True)
    after = silence + delay
    if math.isclose(after, timeout, rel_tol=1e-9):
        assert now is ST  # the next event is the timeout, from STALLED only
    else:
        assert heartbeat_status(after * (1 + 1e-9), timeout, True) is not now
    # Just before the deadline nothing has changed yet.
    assert heartbeat_status(silence + delay * 0.999, timeout, True) is now


@settings(max_examples=100, deadline=None)
@given(
    fraction=st.floats(min_value=1, max_value=100),
    timeout=st.floats(min_value=0.1, max_value=1e5, allow_nan=False, allow_infinity=False),
)
def test_next_status_change_past_the_timeout_is_zero(fraction: float, timeout: float) -> None:
    assert next_status_change(fraction * timeout, timeout) == 0.0


def test_the_lifecycle_table_and_its_guard() -> None:
    from taskwatcher.status import ENDED, BadTransition, check_transition, sources

    check_transition(None, "RESERVED")
    check_transition("RESERVED", "RUNNING")
    check_transition("STALLED", "RUNNING")  # a heartbeat again
    check_transition("SILENT", ENDED)
    for old, new in (("RUNNING", "RESERVED"), (ENDED, "RUNNING"), ("RESERVED", "SILENT"), (None, "STALLED")):
        with pytest.raises(BadTransition):
            check_transition(old, new)
    assert set(sources("SILENT")) == {"RUNNING", "SILENT", "STALLED"}  # never a reservation
    assert set(sources("RUNNING")) == {"RESERVED", "RUNNING", "SILENT", "STALLED"}  # queued: taken first
    check_transition("QUEUED", "RESERVED")  # its turn taken
    check_transition("RESERVED", "QUEUED")  # a queued reservation expired: back to the line
    check_transition("RUNNING", "QUEUED")  # an attempt ended, to be retried
    with pytest.raises(BadTransition):
        check_transition("QUEUED", "RUNNING")  # never without its turn taken
