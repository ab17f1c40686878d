from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bridge.smpp.concat import Assembled, Expired
from bridge.smpp.inbound import DeliverSm, Mo, Part, Receipt, Undecodable, classify, decode_joined


def deliver(**kw: object) -> DeliverSm:
    fields: dict[str, object] = dict(
        source="15551230001", destination="2663", esm_class=0, data_coding=0, short_message=b"UL", source_ton=1
    )
    fields.update(kw)
    return DeliverSm(**fields)  # type: ignore[arg-type]


def test_plain_gsm_mo_with_international_source() -> None:
    assert classify(deliver()) == Mo("+15551230001", "2663", "UL")
    assert classify(deliver(source_ton=0, source="5551230001")) == Mo("5551230001", "2663", "UL")


def test_ucs2_and_message_payload() -> None:
    assert classify(deliver(data_coding=8, short_message="жар".encode("utf-16-be"))).text == "жар"  # type: ignore[attr-defined]
    assert classify(deliver(short_message=b"", message_payload=b"LONG")).text == "LONG"  # type: ignore[attr-defined]


def test_udh_part_and_sar_part() -> None:
    part = classify(deliver(esm_class=0x40, short_message=bytes([5, 0, 3, 9, 2, 1]) + b"UC "))
    assert isinstance(part, Part) and (part.segment.ref, part.segment.total, part.segment.seq) == (9, 2, 1)
    assert part.segment.payload == b"UC " and part.segment.source == "+15551230001"
    sar = classify(deliver(sar_msg_ref_num=0x1234, sar_total_segments=2, sar_segment_seqnum=2))
    assert isinstance(sar, Part) and sar.segment.ref == 0x1234 and sar.segment.seq == 2


def test_udh_without_concatenation_is_a_plain_mo() -> None:
    assert classify(deliver(esm_class=0x40, short_message=bytes([4, 5, 2, 0x0B, 0x84]) + b"UL")).text == "UL"  # type: ignore[attr-defined]


def test_single_part_concatenation_is_a_plain_mo() -> None:
    assert isinstance(classify(deliver(esm_class=0x40, short_message=bytes([5, 0, 3, 1, 1, 1]) + b"UL")), Mo)


def test_receipt_and_bad_receipt() -> None:
    r = classify(deliver(esm_class=0x04, short_message=b"id:7 stat:DELIVRD err:000", receipted_message_id="7"))
    assert isinstance(r, Receipt) and r.receipt.message_id == "7" and r.receipt.delivered
    bad = classify(deliver(esm_class=0x04, short_message=b"nonsense"))
    assert isinstance(bad, Undecodable) and bad.is_receipt


def test_undecodable_keeps_the_raw_bytes() -> None:
    u = classify(deliver(short_message=b"\xff\xfe"))
    assert isinstance(u, Undecodable) and not u.is_receipt and u.raw == b"\x00\xff\xfe" and "0xFF" in u.reason
    broken_udh = classify(deliver(esm_class=0x40, short_message=bytes([9, 0])))
    assert isinstance(broken_udh, Undecodable)


def test_decode_joined() -> None:
    key = ("+1", "2663", 1, 2)
    assert decode_joined(Assembled(key, 0, b"UL")) == Mo("+1", "2663", "UL")
    assert isinstance(decode_joined(Expired(key, 8, b"\x00", (1,))), Undecodable)


@given(
    esm_class=st.integers(0, 255),
    data_coding=st.integers(0, 255),
    short_message=st.binary(max_size=160),
    sar=st.tuples(st.integers(0, 65535), st.integers(0, 255), st.integers(0, 255)) | st.none(),
    ton=st.integers(0, 6),
)
def test_classify_never_raises(
    esm_class: int, data_coding: int, short_message: bytes, sar: tuple[int, int, int] | None, ton: int
) -> None:
    pdu = deliver(esm_class=esm_class, data_coding=data_coding, short_message=short_message, source_ton=ton)
    if sar is not None:
        pdu = deliver(
            esm_class=esm_class,
            data_coding=data_coding,
            short_message=short_message,
            sar_msg_ref_num=sar[0],
            sar_total_segments=sar[1],
            sar_segment_seqnum=sar[2],
        )
    assert isinstance(classify(pdu), Mo | Part | Receipt | Undecodable)
