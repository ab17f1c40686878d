from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.smpp.errors import DecodeError
from bridge.smpp.receipt import DeliveryReceipt, id_candidates

SAMPLE = "id:4711 sub:001 dlvrd:001 submit date:2611220514 done date:2611220515 stat:DELIVRD err:000 text:Hello"


def test_parse_standard_receipt() -> None:
    r = DeliveryReceipt.parse(SAMPLE)
    assert (r.message_id, r.stat, r.err, r.text) == ("4711", "DELIVRD", "000", "Hello")
    assert r.delivered and r.final


def test_tlvs_win_over_text() -> None:
    r = DeliveryReceipt.parse(SAMPLE, receipted_message_id="12AB", message_state=5)
    assert r.message_id == "12AB" and r.stat == "UNDELIV" and not r.delivered and r.final


def test_intermediate_states_are_not_final() -> None:
    assert not DeliveryReceipt.parse("id:1 stat:ENROUTE").final
    assert not DeliveryReceipt.parse("ID:1 STAT:acceptd").final


@pytest.mark.parametrize("text", ["stat:DELIVRD", "", "id: stat:DELIVRD", "id:5 err:0"])
def test_incomplete_receipts_are_decode_errors(text: str) -> None:
    with pytest.raises(DecodeError):
        DeliveryReceipt.parse(text)


def test_id_candidates_cover_decimal_and_hex() -> None:
    assert id_candidates("255") == ("255", "ff", "FF")
    assert id_candidates("ff") == ("ff", "255")
    assert id_candidates("msg-1") == ("msg-1",)


@given(st.text(max_size=200))
def test_any_text_parses_or_raises_decode_error(text: str) -> None:
    try:
        DeliveryReceipt.parse(text)
    except DecodeError:
        pass


def test_delivered_tlvs_alone_are_enough() -> None:
    r = DeliveryReceipt.parse("garbled", receipted_message_id="77", message_state=2)
    assert (r.message_id, r.delivered) == ("77", True)
