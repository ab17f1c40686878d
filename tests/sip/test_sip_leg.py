"""The leg state table and the 400 builder for requests sippy cannot parse."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.sip import LegStateError, SipError
from bridge.sip.leg import TRANSITIONS, LegState, SipLeg
from bridge.sip.stack import bad_request_reply


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


def test_bad_request_reply_copies_dialog_headers() -> None:
    text = (
        "INVITE sip:1@h SIP/2.0\r\nVia: SIP/2.0/UDP 1.2.3.4:5060;branch=z9hG4bKx\r\nFrom: <sip:a@h>;tag=1\r\n"
        "To: <sip:b@h>\r\nCall-ID: c1\r\nCSeq: x INVITE\r\nX-Other: y\r\n\r\n"
    )
    reply = bad_request_reply(text)
    assert reply is not None
    lines = reply.decode().split("\r\n")
    assert lines[0] == "SIP/2.0 400 Bad Request"
    assert "Call-ID: c1" in lines and "CSeq: x INVITE" in lines and not any("X-Other" in ln for ln in lines)
    assert reply.endswith(b"Content-Length: 0\r\n\r\n")


def test_no_reply_without_request_line_via_or_for_ack() -> None:
    assert bad_request_reply("garbage\r\nVia: SIP/2.0/UDP h\r\n") is None
    assert bad_request_reply("INVITE sip:1@h SIP/2.0\r\nFrom: x\r\n") is None
    assert bad_request_reply("ACK sip:1@h SIP/2.0\r\nVia: SIP/2.0/UDP h\r\n") is None


def test_version_not_supported() -> None:
    reply = bad_request_reply("INVITE sip:1@h SIP/3.0\r\nVia: SIP/3.0/UDP h\r\n", "Version Not Supported", 505)
    assert reply is not None and reply.startswith(b"SIP/2.0 505 Version Not Supported\r\n")


@given(st.text(max_size=400))
def test_bad_request_reply_never_raises(text: str) -> None:
    reply = bad_request_reply(text)
    assert reply is None or reply.startswith(b"SIP/2.0 400 ")
