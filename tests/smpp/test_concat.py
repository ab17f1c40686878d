from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.smpp.concat import (
    ConcatRef,
    Reassembler,
    Segment,
    concat_ref,
    encode_message,
    parse_udh,
    split_udh,
)
from bridge.smpp.errors import DecodeError, EncodingError
from bridge.smpp.gsm import GSM_BASIC, GSM_EXTENSION, decode_text


def parts_of(text: str, ref: int = 7) -> list[tuple[ConcatRef | None, bytes]]:
    encoded = encode_message(text, ref=ref)
    out: list[tuple[ConcatRef | None, bytes]] = []
    for part in encoded.parts:
        if encoded.esm_class & 0x40:
            udh, body = split_udh(part)
            out.append((concat_ref(udh), body))
        else:
            out.append((None, part))
    return out


def test_short_gsm_and_ucs2_are_single_parts() -> None:
    assert encode_message("a" * 160, ref=1).parts == (b"a" * 160,)
    assert encode_message("a" * 160, ref=1).data_coding == 0
    ucs2 = encode_message("ж" * 70, ref=1)
    assert ucs2.data_coding == 8 and ucs2.esm_class == 0 and len(ucs2.parts) == 1


def test_long_gsm_is_split_in_153_septet_parts_with_udh() -> None:
    encoded = encode_message("a" * 161, ref=0x1FF)
    assert encoded.esm_class == 0x40 and len(encoded.parts) == 2
    assert encoded.parts[0][:6] == bytes([5, 0, 3, 0xFF, 2, 1]) and len(encoded.parts[0]) == 6 + 153
    assert encoded.parts[1] == bytes([5, 0, 3, 0xFF, 2, 2]) + b"a" * 8


def test_escape_pair_is_never_cut() -> None:
    text = "a" * 152 + "€" + "b" * 10
    (_, first), (_, second) = parts_of(text)
    assert first == b"a" * 152 and second == b"\x1b\x65" + b"b" * 10


def test_surrogate_pair_is_never_cut() -> None:
    text = "ж" * 66 + "😀" + "end"
    (_, first), (_, second) = parts_of(text)
    assert len(first) == 132 and second.startswith("😀".encode("utf-16-be"))


def test_more_than_255_parts_is_our_error() -> None:
    with pytest.raises(EncodingError, match="256 parts"):
        encode_message("x" * 153 * 256, ref=1)


def test_udh_parsing() -> None:
    assert concat_ref(bytes([5, 0, 3, 9, 3, 2])) == ConcatRef(9, 3, 2)
    assert concat_ref(bytes([6, 8, 4, 0x12, 0x34, 2, 1])) == ConcatRef(0x1234, 2, 1)
    assert concat_ref(bytes([4, 5, 2, 0x0B, 0x84])) is None  # port addressing only
    assert parse_udh(bytes([7, 5, 2, 1, 2, 0, 1, 9])) == [(5, b"\x01\x02"), (0, b"\x09")]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (bytes([9, 0, 3]), "exceeds"),
    ],
)
def test_split_udh_errors(data: bytes, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        split_udh(data)


@pytest.mark.parametrize(
    ("udh", "message"),
    [
        (bytes([5, 0, 3, 9, 2, 3]), "out of range"),
        (bytes([5, 0, 3, 9, 0, 0]), "out of range"),
        (bytes([4, 0, 2, 9, 2]), "length 2"),
        (bytes([3, 0, 3, 9]), "truncated"),
        (bytes([1, 0]), "truncated information element"),
        (bytes([3, 0]), "does not match"),
    ],
)
def test_udh_errors(udh: bytes, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        concat_ref(udh)


def seg(seq: int, payload: bytes, total: int = 3, ref: int = 5, source: str = "+1") -> Segment:
    return Segment(source, "2663", ref, total, seq, 0, payload)


def test_reassembler_in_any_order_and_duplicates_count_once() -> None:
    r = Reassembler(timeout_s=60)
    assert r.add(seg(3, b"c"), now=0) is None
    assert r.add(seg(1, b"a"), now=1) is None
    assert r.add(seg(1, b"X"), now=2) is None  # redelivered part 1: the first copy stays
    done = r.add(seg(2, b"b"), now=3)
    assert done is not None and done.payload == b"abc" and len(r) == 0


def test_reassembler_keeps_sources_apart() -> None:
    r = Reassembler(timeout_s=60)
    r.add(seg(1, b"a", total=2, source="+1"), now=0)
    assert r.add(seg(2, b"b", total=2, source="+2"), now=0) is None
    assert len(r) == 2


def test_reassembler_expires_after_timeout_from_the_first_part() -> None:
    r = Reassembler(timeout_s=10)
    r.add(seg(1, b"a"), now=100)
    r.add(seg(3, b"c"), now=105)
    assert r.next_deadline() == 110
    assert r.expire(now=109.9) == []
    (expired,) = r.expire(now=110)
    assert expired.received == (1, 3) and expired.payload == b"ac" and r.next_deadline() is None


def test_reassembler_rejects_out_of_range_parts() -> None:
    with pytest.raises(DecodeError):
        Reassembler(timeout_s=1).add(seg(4, b"d"), now=0)


ALPHABET = st.sampled_from([c for c in GSM_BASIC if c != "\x1b"] + list(GSM_EXTENSION.values()) + ["ж", "😀", "中"])


@given(st.text(alphabet=ALPHABET, max_size=700), st.integers(0, 255), st.randoms())
def test_split_then_reassemble_round_trip(text: str, ref: int, rnd: random.Random) -> None:
    encoded = encode_message(text, ref=ref)
    limit = 140 if encoded.data_coding == 8 else 160
    assert all(len(p) <= limit for p in encoded.parts)
    if len(encoded.parts) == 1 and not encoded.esm_class:
        assert decode_text(encoded.data_coding, encoded.parts[0]) == text
        return
    segments = []
    for part in encoded.parts:
        udh, body = split_udh(part)
        cref = concat_ref(udh)
        assert cref is not None and cref.ref == ref
        segments.append(Segment("+1", "2663", cref.ref, cref.total, cref.seq, encoded.data_coding, body))
    rnd.shuffle(segments)
    r = Reassembler(timeout_s=60)
    results = [r.add(s, now=0) for s in segments]
    done = results[-1]
    assert done is not None and all(x is None for x in results[:-1])
    assert decode_text(done.data_coding, done.payload) == text


@given(st.binary(max_size=200))
def test_udh_parsing_raises_only_decode_error(data: bytes) -> None:
    try:
        udh, _ = split_udh(data)
        concat_ref(udh)
    except DecodeError:
        pass


@given(st.binary(max_size=200))
def test_udh_parsing_fed_byte_by_byte_prefixes(data: bytes) -> None:
    for end in range(len(data) + 1):
        try:
            udh, _ = split_udh(data[:end])
            parse_udh(udh)
        except DecodeError:
            pass
