"""G.711 µ-law and A-law by lookup table, bit-exact with the ITU-T reference.

The reference is ITU-T G.191 STL ``g711.c`` (``ulaw_compress``/``ulaw_expand``, ``alaw_compress``/
``alaw_expand``) on 16-bit left-justified linear samples. The tables below are computed once, with
that exact integer arithmetic vectorised over every input, so encoding and decoding in the hot
path are a single ``take``:

- ``ULAW_DECODE`` / ``ALAW_DECODE``: 256 int16 entries, indexed by the code byte.
- ``ULAW_ENCODE`` / ``ALAW_ENCODE``: 65,536 uint8 entries, indexed by the int16 sample viewed as
  uint16 (so ``table.take(samples.view(np.uint16))`` needs no arithmetic).

Both encoders only look at ``sample >> 2`` (µ-law drops 2 bits, A-law 4 after a one's complement,
which is a function of ``sample >> 2`` too); the mixer's limiter table relies on this (see
``bridge.mixer.limiter``). ``audioop`` is not used: it is gone in Python 3.13.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

SAMPLE_RATE: Final = 8000
SAMPLES_PER_FRAME: Final = 160  # 20 ms at 8 kHz
FRAME_MS: Final = 20

PCMU: Final = "PCMU"
PCMA: Final = "PCMA"
CODECS: Final = (PCMU, PCMA)

ULAW_SILENCE: Final = 0xFF  # encodes linear 0
ALAW_SILENCE: Final = 0xD5  # encodes linear 0 (+8 after decoding: A-law has no exact zero)

Int16Array = npt.NDArray[np.int16]
UInt8Array = npt.NDArray[np.uint8]


def _bit_length(values: npt.NDArray[np.int32]) -> npt.NDArray[np.int32]:
    """Number of significant bits of non-negative values below 2**15 (0 for 0)."""
    out = np.zeros(values.shape, dtype=np.int32)
    rest = values.copy()
    while np.any(rest):
        nz = rest != 0
        out[nz] += 1
        rest >>= 1
    return out


def _ulaw_compress(linear: npt.NDArray[np.int32]) -> npt.NDArray[np.uint8]:
    """G.191 ``ulaw_compress`` over an int32 array holding int16 values."""
    absno = np.where(linear < 0, (~linear) >> 2, linear >> 2) + 33
    absno = np.minimum(absno, 0x1FFF)
    segno = _bit_length(absno >> 6) + 1
    high_nibble = 0x0008 - segno
    low_nibble = 0x000F - ((absno >> segno) & 0x000F)
    code = (high_nibble << 4) | low_nibble
    code = np.where(linear >= 0, code | 0x0080, code)
    result: npt.NDArray[np.uint8] = code.astype(np.uint8)
    return result


def _ulaw_expand(codes: npt.NDArray[np.int32]) -> npt.NDArray[np.int16]:
    """G.191 ``ulaw_expand`` over an int32 array of code bytes."""
    sign = np.where(codes < 0x0080, -1, 1)
    mantissa = ~codes
    exponent = (mantissa >> 4) & 0x0007
    segment = exponent + 1
    mantissa = mantissa & 0x000F
    step = 4 << segment
    result: npt.NDArray[np.int16] = (sign * ((0x0080 << exponent) + step * mantissa + step // 2 - 4 * 33)).astype(
        np.int16
    )
    return result


def _alaw_compress(linear: npt.NDArray[np.int32]) -> npt.NDArray[np.uint8]:
    """G.191 ``alaw_compress`` over an int32 array holding int16 values."""
    ix = np.where(linear < 0, (~linear) >> 4, linear >> 4)  # 0 <= ix < 2048
    iexp = np.maximum(_bit_length(ix) - 4, 0)  # the reference's shift loop, in closed form
    shifted = (ix >> np.maximum(iexp - 1, 0)) - 16 + (iexp << 4)
    ix = np.where(ix > 15, shifted, ix)
    ix = np.where(linear >= 0, ix | 0x0080, ix)
    return (ix ^ 0x0055).astype(np.uint8)


def _alaw_expand(codes: npt.NDArray[np.int32]) -> npt.NDArray[np.int16]:
    """G.191 ``alaw_expand`` over an int32 array of code bytes."""
    ix = (codes ^ 0x0055) & 0x007F
    iexp = ix >> 4
    mant = ix & 0x000F
    mant = np.where(iexp > 0, mant + 16, mant)
    mant = (mant << 4) + 0x0008
    mant = np.where(iexp > 1, mant << np.maximum(iexp - 1, 0), mant)
    return np.where(codes > 127, mant, -mant).astype(np.int16)


def _freeze(array: npt.NDArray[np.generic]) -> None:
    array.setflags(write=False)


_ALL_CODES = np.arange(256, dtype=np.int32)
# Every int16 value in uint16 order: index u holds the sample whose bit pattern is u.
_ALL_SAMPLES = np.arange(65536, dtype=np.uint16).view(np.int16).astype(np.int32)

ULAW_DECODE: Final[Int16Array] = _ulaw_expand(_ALL_CODES)
ALAW_DECODE: Final[Int16Array] = _alaw_expand(_ALL_CODES)
ULAW_ENCODE: Final[UInt8Array] = _ulaw_compress(_ALL_SAMPLES)
ALAW_ENCODE: Final[UInt8Array] = _alaw_compress(_ALL_SAMPLES)
for _table in (ULAW_DECODE, ALAW_DECODE, ULAW_ENCODE, ALAW_ENCODE):
    _freeze(_table)

DECODE_TABLES: Final[dict[str, Int16Array]] = {PCMU: ULAW_DECODE, PCMA: ALAW_DECODE}
ENCODE_TABLES: Final[dict[str, UInt8Array]] = {PCMU: ULAW_ENCODE, PCMA: ALAW_ENCODE}
SILENCE_CODES: Final[dict[str, int]] = {PCMU: ULAW_SILENCE, PCMA: ALAW_SILENCE}


def _as_int16(samples: npt.ArrayLike) -> Int16Array:
    array = np.asarray(samples)
    if array.dtype != np.int16:
        raise TypeError(f"G.711 encoding takes int16 samples, not {array.dtype}")
    return array


def ulaw_encode(samples: npt.ArrayLike) -> UInt8Array:
    """Encode int16 samples to µ-law code bytes (any shape)."""
    return ULAW_ENCODE.take(_as_int16(samples).view(np.uint16))


def alaw_encode(samples: npt.ArrayLike) -> UInt8Array:
    """Encode int16 samples to A-law code bytes (any shape)."""
    return ALAW_ENCODE.take(_as_int16(samples).view(np.uint16))


def ulaw_decode(codes: bytes | npt.ArrayLike) -> Int16Array:
    """Decode µ-law code bytes (``bytes`` or a uint8 array) to int16 samples."""
    return ULAW_DECODE.take(_as_codes(codes))


def alaw_decode(codes: bytes | npt.ArrayLike) -> Int16Array:
    """Decode A-law code bytes (``bytes`` or a uint8 array) to int16 samples."""
    return ALAW_DECODE.take(_as_codes(codes))


def encode(samples: npt.ArrayLike, codec: str) -> UInt8Array:
    """Encode int16 samples with ``codec`` (``"PCMU"`` or ``"PCMA"``)."""
    return ENCODE_TABLES[codec].take(_as_int16(samples).view(np.uint16))


def decode(codes: bytes | npt.ArrayLike, codec: str) -> Int16Array:
    """Decode code bytes of ``codec`` (``"PCMU"`` or ``"PCMA"``) to int16 samples."""
    return DECODE_TABLES[codec].take(_as_codes(codes))


def _as_codes(codes: bytes | npt.ArrayLike) -> UInt8Array:
    if isinstance(codes, bytes | bytearray | memoryview):
        return np.frombuffer(codes, dtype=np.uint8)
    array = np.asarray(codes)
    if array.dtype != np.uint8:
        raise TypeError(f"G.711 decoding takes uint8 codes, not {array.dtype}")
    return array
