"""G.711 tables against the scalar ITU-T G.191 reference, for every input."""

from __future__ import annotations

import numpy as np
import pytest

from bridge.mixer import g711
from tests.mixer.mixer_reference import itu_alaw_compress, itu_alaw_expand, itu_ulaw_compress, itu_ulaw_expand

ALL_SAMPLES = np.arange(-32768, 32768, dtype=np.int16)


def test_ulaw_encode_matches_itu_for_all_65536_inputs() -> None:
    expected = np.array([itu_ulaw_compress(int(s)) for s in ALL_SAMPLES], dtype=np.uint8)
    np.testing.assert_array_equal(g711.ulaw_encode(ALL_SAMPLES), expected)


def test_alaw_encode_matches_itu_for_all_65536_inputs() -> None:
    expected = np.array([itu_alaw_compress(int(s)) for s in ALL_SAMPLES], dtype=np.uint8)
    np.testing.assert_array_equal(g711.alaw_encode(ALL_SAMPLES), expected)


def test_decode_matches_itu_for_all_256_codes() -> None:
    codes = bytes(range(256))
    np.testing.assert_array_equal(g711.ulaw_decode(codes), [itu_ulaw_expand(c) for c in codes])
    np.testing.assert_array_equal(g711.alaw_decode(codes), [itu_alaw_expand(c) for c in codes])


def test_known_values() -> None:
    # Spot values from G.711 tables: full scale, zero, A-law's even-bit inversion.
    assert g711.ULAW_DECODE[0x80] == 32124 and g711.ULAW_DECODE[0x00] == -32124
    assert g711.ULAW_DECODE[0xFF] == 0 and g711.ULAW_DECODE[0x7F] == 0
    assert g711.ALAW_DECODE[0xAA] == 32256 and g711.ALAW_DECODE[0x2A] == -32256
    assert g711.ALAW_DECODE[0xD5] == 8 and g711.ALAW_DECODE[0x55] == -8
    assert g711.ulaw_encode(np.array([0], dtype=np.int16))[0] == g711.ULAW_SILENCE
    assert g711.alaw_encode(np.array([0], dtype=np.int16))[0] == g711.ALAW_SILENCE


@pytest.mark.parametrize("codec", g711.CODECS)
def test_decode_encode_round_trip_is_identity_on_codes(codec: str) -> None:
    codes = np.arange(256, dtype=np.uint8)
    back = g711.encode(g711.decode(codes, codec), codec)
    if codec == g711.PCMU:  # 0x7F (-0) re-encodes as 0xFF (+0): the one code µ-law cannot round-trip
        codes = codes.copy()
        codes[0x7F] = 0xFF
    np.testing.assert_array_equal(back, codes)


def test_encoders_reject_wrong_dtype() -> None:
    with pytest.raises(TypeError):
        g711.ulaw_encode(np.zeros(4, dtype=np.int32))
    with pytest.raises(TypeError):
        g711.ulaw_decode(np.zeros(4, dtype=np.int16))
