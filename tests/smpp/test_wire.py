"""The hand-rolled encoders must be byte-identical to smpplib's (and parse what smpplib generates)."""

from __future__ import annotations

from typing import Any

import smpplib.smpp
from hypothesis import given
from hypothesis import strategies as st

from bridge.smpp import wire


class Client:
    sequence = 0

    def __init__(self, sequence: int) -> None:
        self.sequence = sequence

    def next_sequence(self) -> int:
        return self.sequence


ADDRESS = st.text(alphabet="0123456789+ABC", max_size=30)


@given(
    sequence=st.integers(1, 0x7FFFFFFF),
    source_ton=st.integers(0, 6),
    source_npi=st.integers(0, 18),
    source=ADDRESS,
    dest_ton=st.integers(0, 6),
    dest_npi=st.integers(0, 18),
    destination=ADDRESS,
    esm_class=st.sampled_from([0, 0x40]),
    registered_delivery=st.integers(0, 1),
    data_coding=st.sampled_from([0, 3, 8]),
    short_message=st.binary(min_size=1, max_size=160),
)
def test_submit_sm_is_byte_identical_to_smpplib(sequence: int, **fields: Any) -> None:
    ours = wire.submit_sm(sequence, **fields)
    theirs = smpplib.smpp.make_pdu(
        "submit_sm",
        client=Client(sequence),
        source_addr_ton=fields["source_ton"],
        source_addr_npi=fields["source_npi"],
        source_addr=fields["source"],
        dest_addr_ton=fields["dest_ton"],
        dest_addr_npi=fields["dest_npi"],
        destination_addr=fields["destination"],
        esm_class=fields["esm_class"],
        registered_delivery=fields["registered_delivery"],
        data_coding=fields["data_coding"],
        short_message=fields["short_message"],
    ).generate()
    assert ours == theirs
    parsed = smpplib.smpp.parse_pdu(ours, client=Client(0), allow_unknown_opt_params=True)
    assert parsed.short_message == fields["short_message"] and parsed.sequence == sequence


@given(st.integers(1, 0x7FFFFFFF), st.integers(0, 0xFF))
def test_responses_are_byte_identical_to_smpplib(sequence: int, status: int) -> None:
    for command, command_id in [
        ("deliver_sm_resp", wire.DELIVER_SM_RESP),
        ("enquire_link_resp", wire.ENQUIRE_LINK_RESP),
        ("generic_nack", wire.GENERIC_NACK),
        ("unbind_resp", wire.UNBIND_RESP),
    ]:
        pdu = smpplib.smpp.make_pdu(command, client=Client(0), status=status)
        pdu.sequence = sequence
        assert wire.response(command_id, sequence, status) == pdu.generate()


@given(st.integers(1, 0x7FFFFFFF), st.text(alphabet="0123456789abcdef", max_size=64), st.integers(0, 0x100))
def test_submit_sm_resp_parses_like_smpplib(sequence: int, message_id: str, status: int) -> None:
    pdu = smpplib.smpp.make_pdu("submit_sm_resp", client=Client(0), status=status, message_id=message_id or "x")
    pdu.sequence = sequence
    raw = pdu.generate()
    ours = wire.parse_submit_sm_resp(raw)
    assert (ours.sequence, ours.status, ours.message_id) == (sequence, status, message_id or "x")
    assert wire.parse_submit_sm_resp(raw[:16]).message_id == ""  # error responses may have no body
