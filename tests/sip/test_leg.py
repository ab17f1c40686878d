"""The leg state table (the 400 builder moved to test_screening.py with the other screening rules)."""

from __future__ import annotations

import pytest

from bridge.sip import LegStateError, SipError
from bridge.sip.leg import TRANSITIONS, LegState, SipLeg


def leg(state: LegState) -> SipLeg:
    return SipLeg(leg_id="L1", direction="out", calling="+1555", called="1001", state=state)


def test_outbound_happy_path_and_route_advance() -> None:
    one = leg(LegState.DIALING)
    for state in (LegState.RINGING, LegState.DIALING, LegState.RINGING, LegState.CONNECTED, LegState.ENDED):
        one.set_state(state)
    assert one.is_final


@pytest.mark.parametrize("final", [LegState.ENDED, LegState.FAILED])
def test_final_states_allow_nothing(final: LegState) -> None:
    one = leg(final)
    for state in LegState:
        with pytest.raises(LegStateError):
            one.set_state(state)


def test_forbidden_transitions_raise_our_error() -> None:
    with pytest.raises(LegStateError) as info:
        leg(LegState.OFFERED).set_state(LegState.RINGING)
    assert isinstance(info.value, SipError) and "offered -> ringing" in str(info.value)
    with pytest.raises(LegStateError):
        leg(LegState.CONNECTED).set_state(LegState.FAILED)


def test_table_covers_every_state() -> None:
    assert set(TRANSITIONS) == set(LegState)
