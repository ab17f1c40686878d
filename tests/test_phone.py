from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.phone import PhoneError, looks_like_phone, to_e164


@pytest.mark.parametrize(
    ("text", "country", "expected"),
    [
        ("+15551230001", "US", "+15551230001"),
        ("15551230001", "US", "+15551230001"),  # SMSC style: international without '+'
        ("5551230001", "US", "+15551230001"),  # national
        ("(555) 123-0001", "US", "+15551230001"),
        ("555.123.0001", "US", "+15551230001"),
        ("447700900123", "US", "+447700900123"),
        ("+44 7700 900123", "US", "+447700900123"),
        ("011 44 7700 900123", "US", "+447700900123"),  # US international prefix
        ("00 44 7700 900123", "DE", "+447700900123"),
        ("0151 12345678", "DE", "+4915112345678"),
        ("  +15551230001\n", "US", "+15551230001"),
    ],
)
def test_to_e164_reads_common_forms(text: str, country: str, expected: str) -> None:
    assert to_e164(text, country) == expected


@pytest.mark.parametrize(
    "text",
    ["", "+", "bob", "1-800-FLOWERS", "2663", "123", "5550100", "+1555", "12345678901234567890", "+1 555 abc 0001"],
)
def test_to_e164_refuses_non_numbers(text: str) -> None:
    with pytest.raises(PhoneError):
        to_e164(text, "US")


def test_error_message_quotes_the_input_briefly() -> None:
    with pytest.raises(PhoneError, match="'bob' is not a phone number"):
        to_e164("bob", "US")
    with pytest.raises(PhoneError) as info:
        to_e164("9" * 40, "US")
    assert len(str(info.value)) < 60


def test_looks_like_phone() -> None:
    assert looks_like_phone("+15551230001")
    assert looks_like_phone("(555) 123")
    assert not looks_like_phone("ann")
    assert not looks_like_phone("-Sales")


@given(st.text(max_size=40))
def test_any_text_is_a_number_or_a_phone_error(text: str) -> None:
    try:
        result = to_e164(text, "US")
    except PhoneError:
        return
    assert result.startswith("+") and result[1:].isdigit()
    assert to_e164(result, "GB") == result  # E.164 is a fixed point whatever the region
