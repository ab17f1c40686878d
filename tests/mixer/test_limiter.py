"""The soft limiter folded into the G.711 encode tables: exact below the knee, soft above, never wraps."""

from __future__ import annotations

import numpy as np
import pytest

from bridge.mixer import g711, limiter
from tests.mixer.mixer_reference import ITU_ENCODE


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


@pytest.mark.parametrize("codec", g711.CODECS)
def test_wide_table_agrees_with_the_clipped_table_everywhere(codec: str) -> None:
    # The mixer indexes the wide table without clipping; it must give what take(mode="clip") gives.
    wide_index = np.arange(limiter.WIDE_SIZE)
    clipped = limiter.LIMIT_ENCODE[codec].take(wide_index - 2 * limiter.MARGIN, mode="clip")
    np.testing.assert_array_equal(limiter.LIMIT_ENCODE_WIDE[codec], clipped)


def test_linear_sum_is_the_limited_sample_a_recording_stores() -> None:
    sums = np.array([0, 1000, -1000, limiter.KNEE, 40000, -40000, limiter.MAX_SUM * 2])
    got = limiter.linear_sum(sums)
    assert got.dtype == np.int16
    np.testing.assert_array_equal(got[:4], (sums[:4] >> 2) << 2)  # exact (to the table step) below the knee
    assert 16384 < got[4] < 32767 and got[5] == -got[4]
    assert got[6] == limiter.LIMIT_LINEAR.max()  # beyond the table: held at the curve's maximum
