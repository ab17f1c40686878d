"""SIP INFO DTMF bodies."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.sip.dtmf import DTMF_DIGITS, parse_info_dtmf


@pytest.mark.parametrize(
    ("ctype", "body", "digit"),
    [
        ("application/dtmf-relay", "Signal=5\r\nDuration=160\r\n", "5"),
        ("application/dtmf-relay", "Signal= *\r\nDuration=100", "*"),
        ("Application/DTMF-Relay; charset=x", "signal=#\nduration=250", "#"),
        ("application/dtmf-relay", "Signal=11\r\nDuration=160", "#"),
        ("application/dtmf-relay", "Signal=10", "*"),
        ("application/dtmf-relay", "Signal=d", "D"),
        ("application/dtmf", "7", "7"),
        ("application/dtmf", " 0\r\n", "0"),
        ("application/dtmf-relay", "Duration=160", None),
        ("application/dtmf-relay", "Signal=16", None),
        ("application/dtmf-relay", "Signal=55", None),
        ("application/dtmf", "12", None),
        ("application/sdp", "Signal=5", None),
        ("", "5", None),
    ],
)
def test_parse(ctype: str, body: str, digit: str | None) -> None:
    assert parse_info_dtmf(ctype, body) == digit


@given(st.text(max_size=30), st.text(max_size=200))
def test_any_input_gives_a_digit_or_none(ctype: str, body: str) -> None:
    result = parse_info_dtmf(ctype, body)
    assert result is None or (len(result) == 1 and result in DTMF_DIGITS)
