"""The pure helpers of the MO side: smpplib's deliver_sm to :class:`DeliverSm`, and the reply's short code
(the batch persistence itself is tested against the SMSC simulator in tests/integration/test_smpp_link.py)."""

from __future__ import annotations

import datetime as dt

import smpplib.smpp

from bridge.smpp.inbound import Mo, Receipt, classify
from bridge.smpp.intake import deliver_sm, reply_from
from bridge.smpp.sender import wall_clock
from bridge.smpp.session import NO_SEQUENCE


def parsed(**fields: object) -> object:
    pdu = smpplib.smpp.make_pdu("deliver_sm", client=NO_SEQUENCE, **fields)
    return smpplib.smpp.parse_pdu(pdu.generate(), client=NO_SEQUENCE, allow_unknown_opt_params=True)


def test_an_mo_from_smpplib() -> None:
    pdu = parsed(source_addr_ton=1, source_addr="15551230001", destination_addr="2663", short_message=b"HELP")
    fields = deliver_sm(pdu)
    assert (fields.source, fields.source_ton, fields.destination) == ("15551230001", 1, "2663")
    assert fields.receipted_message_id is None and fields.sar_msg_ref_num is None
    assert classify(fields) == Mo("+15551230001", "2663", "HELP")


def test_a_receipt_with_its_tlvs_from_smpplib() -> None:
    pdu = parsed(
        source_addr="15551230001",
        destination_addr="2663",
        esm_class=0x04,
        short_message=b"id:ab12 stat:UNDELIV err:001",
        receipted_message_id="ab12",
        message_state=5,
    )
    fields = deliver_sm(pdu)
    assert fields.receipted_message_id == "ab12" and fields.message_state == 5
    item = classify(fields)
    assert isinstance(item, Receipt) and item.receipt.message_id == "ab12" and item.receipt.stat == "UNDELIV"


def test_replies_come_from_the_short_code_the_mobile_texted() -> None:
    assert reply_from("1000", ["2663", "1000"]) == "1000"
    assert reply_from("5555", ["2663", "1000"]) == "2663"


def test_outbox_times_become_database_timestamps() -> None:
    wall = dt.datetime(2024, 1, 1, 12, 0, 0)
    at = wall_clock(100.0, wall)
    assert at(102.5) == wall + dt.timedelta(seconds=2.5)
    assert at(90.0) == wall  # never in the past
