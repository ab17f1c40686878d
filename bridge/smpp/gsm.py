"""Text codecs for short messages: GSM 03.38 default alphabet (with its extension table), UCS2, and the
decoding of a short message by ``data_coding`` (SMPP 3.4 §5.2.19).

SMPP carries GSM 03.38 *unpacked*: one septet per octet, escape ``0x1B`` before an extension-table
character (so ``€`` costs two septets). UCS2 is sent as UTF-16-BE; characters outside the BMP become a
surrogate pair (two code units), which is what handsets do.
"""

from __future__ import annotations

from bridge.smpp.constants import DC_BINARY, DC_BINARY_4, DC_DEFAULT, DC_IA5, DC_LATIN1, DC_UCS2
from bridge.smpp.errors import DecodeError

GSM_ESCAPE = 0x1B

# 3GPP TS 23.038 §6.2.1 default alphabet; index = septet value. 0x1B is the escape to the extension table.
GSM_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)
assert len(GSM_BASIC) == 128

# 3GPP TS 23.038 §6.2.1.1 default alphabet extension table (septet after 0x1B -> character).
GSM_EXTENSION = {
    0x0A: "\f",
    0x14: "^",
    0x28: "{",
    0x29: "}",
    0x2F: "\\",
    0x3C: "[",
    0x3D: "~",
    0x3E: "]",
    0x40: "|",
    0x65: "€",
}

_ENCODE: dict[str, bytes] = {ch: bytes([i]) for i, ch in enumerate(GSM_BASIC) if i != GSM_ESCAPE}
_ENCODE.update({ch: bytes([GSM_ESCAPE, code]) for code, ch in GSM_EXTENSION.items()})


def gsm_codes(text: str) -> list[bytes] | None:
    """The septet(s) of each character of ``text``, or ``None`` when one is not in GSM 03.38."""
    codes = [_ENCODE.get(ch) for ch in text]
    return None if None in codes else [c for c in codes if c is not None]


def gsm_septets(text: str) -> int | None:
    """Length of ``text`` in septets, or ``None`` when it is not representable in GSM 03.38."""
    total = 0
    for ch in text:
        code = _ENCODE.get(ch)
        if code is None:
            return None
        total += len(code)
    return total


def encode_gsm(text: str) -> bytes:
    """Encode to unpacked GSM 03.38 septets; raises :class:`ValueError` naming the first bad character."""
    try:
        return b"".join(_ENCODE[ch] for ch in text)
    except KeyError as exc:
        raise ValueError(f"character {exc.args[0]!r} is not in the GSM 03.38 alphabet") from None


def decode_gsm(data: bytes) -> str:
    """Decode unpacked GSM 03.38 septets.

    An escape followed by a code the extension table does not define shows the basic character, as
    TS 23.038 asks of receivers; a trailing lone escape is dropped. Octets above 0x7F are not septets.
    """
    out: list[str] = []
    escaped = False
    for i, octet in enumerate(data):
        if octet > 0x7F:
            raise DecodeError(f"GSM 03.38 octet 0x{octet:02X} at offset {i} is not a septet")
        if escaped:
            escaped = False
            out.append(GSM_EXTENSION.get(octet, " " if octet == GSM_ESCAPE else GSM_BASIC[octet]))
        elif octet == GSM_ESCAPE:
            escaped = True
        else:
            out.append(GSM_BASIC[octet])
    return "".join(out)


def encode_ucs2(text: str) -> bytes:
    """UTF-16-BE (UCS2 plus surrogate pairs for characters outside the BMP)."""
    return text.encode("utf-16-be", errors="surrogatepass")


def decode_ucs2(data: bytes) -> str:
    if len(data) % 2:
        raise DecodeError(f"UCS2 short message has an odd length ({len(data)} octets)")
    try:
        return data.decode("utf-16-be")
    except UnicodeDecodeError as exc:
        raise DecodeError(f"UCS2 short message is not valid UTF-16: {exc.reason} at offset {exc.start}") from None


def decode_text(data_coding: int, data: bytes) -> str:
    """Decode a short message's user data (without UDH) according to ``data_coding``.

    0 GSM 03.38, 1 IA5/ASCII (Latin-1 tolerated: some SMSCs label 8-bit text IA5), 3 Latin-1, 8 UCS2,
    and the 0xF0 message-class group (GSM or 8-bit data). Binary data is not text: :class:`DecodeError`.
    """
    if data_coding == DC_DEFAULT:
        return decode_gsm(data)
    if data_coding in (DC_IA5, DC_LATIN1):
        return data.decode("latin-1")
    if data_coding == DC_UCS2:
        return decode_ucs2(data)
    if data_coding in (DC_BINARY, DC_BINARY_4):
        raise DecodeError(f"binary short message (data_coding 0x{data_coding:02X}) is not text")
    if data_coding & 0xF0 == 0xF0:
        if data_coding & 0x04:
            raise DecodeError(f"8-bit data short message (data_coding 0x{data_coding:02X}) is not text")
        return decode_gsm(data)
    if data_coding & 0xE0 == 0x00:  # general data coding group, uncompressed: bits 3..2 are the alphabet
        alphabet = (data_coding >> 2) & 0x03
        if alphabet == 0:
            return decode_gsm(data)
        if alphabet == 2:
            return decode_ucs2(data)
    raise DecodeError(f"unsupported data_coding 0x{data_coding:02X}")
