"""The PIN IVR and the per-number failure throttle, driven with a fake clock."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.dnis.ivr import (
    Admit,
    CheckPin,
    Disconnect,
    FailureThrottle,
    IvrError,
    IvrSettings,
    IvrState,
    PinIvr,
    Play,
    Verdict,
)


def started(**kwargs: object) -> PinIvr:
    ivr = PinIvr(IvrSettings(**kwargs))  # type: ignore[arg-type]
    assert ivr.start(0.0) == [Play("enter_pin")]
    return ivr


def type_digits(ivr: PinIvr, digits: str, now: float = 1.0) -> list[object]:
    actions: list[object] = []
    for d in digits:
        actions += ivr.digit(d, now)
    return actions


def test_hash_submits_and_accept_admits() -> None:
    ivr = started()
    assert type_digits(ivr, "1234") == []
    assert ivr.digit("#", 1.0) == [CheckPin("1234")]
    assert ivr.state is IvrState.CHECKING
    assert ivr.digit("9", 1.1) == []  # ignored while checking
    assert ivr.verdict(Verdict.ACCEPT, 1.2) == [Admit("1234")]
    assert ivr.state is IvrState.ADMITTED


def test_submit_length_submits_without_hash() -> None:
    ivr = started(submit_length=6)
    assert type_digits(ivr, "12345") == []
    assert ivr.digit("6", 1.0) == [CheckPin("123456")]


def test_inter_digit_timeout_submits() -> None:
    ivr = started(digit_timeout_s=4.0)
    type_digits(ivr, "42", now=10.0)
    assert ivr.poll(13.9) == []
    assert ivr.poll(14.0) == [CheckPin("42")]


def test_star_clears_entry() -> None:
    ivr = started()
    type_digits(ivr, "99*12")
    assert ivr.digit("#", 1.0) == [CheckPin("12")]


def test_three_wrong_pins_disconnect_with_goodbye() -> None:
    ivr = started(attempts=3)
    for attempt in range(3):
        type_digits(ivr, "000#", now=float(attempt))
        actions = ivr.verdict(Verdict.WRONG, float(attempt))
        if attempt < 2:
            assert actions == [Play("wrong_pin")]
    assert actions == [Play("goodbye"), Disconnect("wrong pin", wrong_pin=True)]
    assert ivr.state is IvrState.DISCONNECTED
    assert ivr.digit("1", 5.0) == []


def test_silence_counts_as_a_wrong_entry() -> None:
    ivr = started(attempts=2, first_digit_timeout_s=10.0)
    assert ivr.poll(9.0) == []
    assert ivr.poll(10.0) == [Play("wrong_pin")]
    assert ivr.poll(20.0) == [Play("goodbye"), Disconnect("wrong pin", wrong_pin=True)]


@pytest.mark.parametrize(
    ("verdict", "prompt"),
    [(Verdict.NOT_STARTED, "not_started"), (Verdict.FULL, "conference_full"), (Verdict.LOCKED, "conference_locked")],
)
def test_refusals_end_the_call_at_once(verdict: Verdict, prompt: str) -> None:
    ivr = started()
    type_digits(ivr, "1#")
    actions = ivr.verdict(verdict, 2.0)
    assert actions[0] == Play(prompt)
    assert isinstance(actions[1], Disconnect) and not actions[1].wrong_pin


def test_verdict_without_check_is_a_glue_bug() -> None:
    ivr = started()
    with pytest.raises(IvrError):
        ivr.verdict(Verdict.ACCEPT, 1.0)


@settings(deadline=None)  # the machine is shared: wall-clock deadlines would make this flaky
@given(st.lists(st.sampled_from(list("0123456789*#ABCDx")), max_size=40), st.integers(1, 7))
def test_any_key_sequence_yields_at_most_seven_digit_pins(keys: list[str], length: int) -> None:
    ivr = started(submit_length=length)
    now = 0.0
    for key in keys:
        now += 0.5
        for action in ivr.digit(key, now) + ivr.poll(now):
            if isinstance(action, CheckPin):
                assert action.pin.isdigit() and 1 <= len(action.pin) <= length
                ivr.verdict(Verdict.WRONG, now)


def test_throttle_blocks_after_repeated_failures_and_forgets() -> None:
    throttle = FailureThrottle(limit=3, window_s=60.0, block_s=300.0)
    for t in (0.0, 10.0):
        throttle.record_failure("+1555", t)
    assert not throttle.blocked("+1555", 11.0)
    throttle.record_failure("+1555", 20.0)
    assert throttle.blocked("+1555", 21.0)
    assert not throttle.blocked("+1666", 21.0)
    assert throttle.blocked("+1555", 319.0)
    assert not throttle.blocked("+1555", 321.0)


def test_throttle_needs_failures_within_the_window() -> None:
    throttle = FailureThrottle(limit=2, window_s=60.0, block_s=60.0)
    throttle.record_failure("a", 0.0)
    throttle.record_failure("a", 100.0)
    assert not throttle.blocked("a", 101.0)


def test_throttle_table_is_bounded() -> None:
    throttle = FailureThrottle(limit=1, max_numbers=10)
    for i in range(100):
        throttle.record_failure(str(i), float(i))
    assert len(throttle._failures) <= 10
