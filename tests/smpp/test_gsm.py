from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.smpp.errors import DecodeError
from bridge.smpp.gsm import (
    GSM_BASIC,
    GSM_EXTENSION,
    decode_gsm,
    decode_text,
    decode_ucs2,
    encode_gsm,
    encode_ucs2,
    gsm_septets,
)

GSM_CHARS = [c for c in GSM_BASIC if c != "\x1b"] + list(GSM_EXTENSION.values())


def test_tables_match_ts_23_038() -> None:
    assert GSM_BASIC[0x00] == "@" and GSM_BASIC[0x02] == "$" and GSM_BASIC[0x11] == "_"
    assert GSM_BASIC[0x24] == "¤" and GSM_BASIC[0x40] == "¡" and GSM_BASIC[0x5F] == "§"
    assert GSM_BASIC[0x60] == "¿" and GSM_BASIC[0x7F] == "à"
    assert encode_gsm("€") == b"\x1b\x65" and encode_gsm("{}") == b"\x1b\x28\x1b\x29"
    assert encode_gsm("Hello @ 5$") == b"Hello \x00 5\x02"


def test_septet_count_includes_escapes() -> None:
    assert gsm_septets("abc") == 3
    assert gsm_septets("€[") == 4
    assert gsm_septets("Привет") is None


def test_encode_names_the_bad_character() -> None:
    with pytest.raises(ValueError, match="'ж'"):
        encode_gsm("abж")


def test_decode_tolerates_unknown_escapes_and_trailing_escape() -> None:
    assert decode_gsm(b"\x1b\x41") == "A"  # undefined extension: the basic character, as TS 23.038 says
    assert decode_gsm(b"ab\x1b") == "ab"
    assert decode_gsm(b"\x1b\x1b") == " "


def test_decode_rejects_octets_above_0x7f() -> None:
    with pytest.raises(DecodeError, match="0x80 at offset 1"):
        decode_gsm(b"a\x80")


def test_ucs2() -> None:
    assert decode_ucs2(encode_ucs2("Привет 😀")) == "Привет 😀"
    assert len(encode_ucs2("😀")) == 4  # surrogate pair
    with pytest.raises(DecodeError, match="odd length"):
        decode_ucs2(b"\x00a\x00")
    with pytest.raises(DecodeError, match="UTF-16"):
        decode_ucs2(b"\xd8\x3d")


@pytest.mark.parametrize(
    ("data_coding", "data", "text"),
    [
        (0x00, b"Hi\x00", "Hi@"),
        (0x01, b"Hi", "Hi"),
        (0x03, "café".encode("latin-1"), "café"),
        (0x08, "жар".encode("utf-16-be"), "жар"),
        (0xF0, b"Hi", "Hi"),
        (0x10, b"Hi", "Hi"),
        (0x18, "ж".encode("utf-16-be"), "ж"),
    ],
)
def test_decode_text_by_data_coding(data_coding: int, data: bytes, text: str) -> None:
    assert decode_text(data_coding, data) == text


@pytest.mark.parametrize("data_coding", [0x02, 0x04, 0xF4, 0x05, 0x40])
def test_binary_and_unknown_codings_are_decode_errors(data_coding: int) -> None:
    with pytest.raises(DecodeError):
        decode_text(data_coding, b"\x01\x02")


@given(st.text(alphabet=st.sampled_from(GSM_CHARS)))
def test_gsm_round_trip(text: str) -> None:
    encoded = encode_gsm(text)
    assert decode_gsm(encoded) == text
    assert len(encoded) == gsm_septets(text)


@given(st.text())
def test_ucs2_round_trip(text: str) -> None:
    try:
        encoded = encode_ucs2(text)
    except UnicodeEncodeError:  # lone surrogates in the generated str are not text
        return
    assert decode_ucs2(encoded) == text or any(0xD800 <= ord(c) < 0xE000 for c in text)


@given(st.integers(0, 255), st.binary(max_size=300))
def test_decode_text_never_raises_anything_else(data_coding: int, data: bytes) -> None:
    try:
        assert isinstance(decode_text(data_coding, data), str)
    except DecodeError:
        pass
