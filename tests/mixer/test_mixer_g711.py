"""G.711 tables against the scalar ITU-T G.191 reference, for every input; the limiter+encode tables."""

from __future__ import annotations

import numpy as np
import pytest
from mixer_reference import ITU_ENCODE, itu_alaw_compress, itu_alaw_expand, itu_ulaw_compress, itu_ulaw_expand

from bridge.mixer import g711, limiter

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


@pytest.mark.parametrize("codec", g711.CODECS)
def test_limiter_table_is_exact_itu_encoding_below_the_knee(codec: str) -> None:
    # Every sum v with |v| <= KNEE encodes exactly as G.711 would encode v itself.
    sums = np.arange(-limiter.KNEE, limiter.KNEE + 1)
    got = limiter.encode_sum(sums, codec)
    expected = np.array([ITU_ENCODE[codec](int(v)) for v in sums], dtype=np.uint8)
    np.testing.assert_array_equal(got, expected)


def test_limiter_curve_is_monotonic_bounded_and_odd() -> None:
    linear = limiter.LIMIT_LINEAR.astype(np.int64)
    assert np.all(np.diff(linear) >= 0)
    assert linear.max() <= 32767 and linear.min() >= -32767
    representative = (np.arange(limiter.TABLE_SIZE) - limiter.INDEX_OFFSET) * 4
    np.testing.assert_array_equal(limiter.limit(representative), -limiter.limit(-representative))
    # Soft, not a clip: just above the knee it is still (nearly) transparent, then it bends.
    assert limiter.limit(np.array([limiter.KNEE + 100]))[0] > limiter.KNEE + 95
    assert limiter.limit(np.array([32767]))[0] < 32000


@pytest.mark.parametrize("codec", g711.CODECS)
def test_limiter_never_wraps_for_any_sum(codec: str) -> None:
    # Sums far beyond the table (a thousand full-scale talkers) still decode to the right sign, loud.
    sums = np.concatenate([np.arange(-4_000_000, 4_000_001, 997), [limiter.MAX_SUM * 3, -limiter.MAX_SUM * 3]])
    decoded = g711.decode(limiter.encode_sum(sums, codec), codec).astype(np.int64)
    loud = np.abs(sums) > 2 * 32767
    assert np.all(np.sign(decoded[loud]) == np.sign(sums[loud]))
    assert np.all(np.abs(decoded[loud]) > 30000)
    assert np.all(np.diff(decoded[np.argsort(sums, kind="stable")]) >= 0)  # monotonic in the sum
