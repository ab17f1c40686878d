"""Independent, obvious code paths the mixer is checked against (test helpers, not product code).

- ``itu_*``: scalar ports of ITU-T G.191 STL ``g711.c`` (``alaw_compress``, ``alaw_expand``,
  ``ulaw_compress``, ``ulaw_expand``), written line by line from the C, one sample at a time.
- ``naive_mix``: a per-sample N-1 mixer in plain Python over dicts: decode, input gain, sum of the
  other unmuted members, output gain, then the limiter table. It shares nothing with the batched
  mixer but the limiter table (itself checked against ``itu_*`` in test_g711.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bridge.mixer import limiter


def itu_alaw_compress(sample: int) -> int:
    ix = (~sample) >> 4 if sample < 0 else sample >> 4
    if ix > 15:
        iexp = 1
        while ix > 16 + 15:
            ix >>= 1
            iexp += 1
        ix -= 16
        ix += iexp << 4
    if sample >= 0:
        ix |= 0x0080
    return ix ^ 0x0055


def itu_alaw_expand(code: int) -> int:
    ix = code ^ 0x0055
    ix &= 0x007F
    iexp = ix >> 4
    mant = ix & 0x000F
    if iexp > 0:
        mant = mant + 16
    mant = (mant << 4) + 0x0008
    if iexp > 1:
        mant = mant << (iexp - 1)
    return mant if code > 127 else -mant


def itu_ulaw_compress(sample: int) -> int:
    absno = ((~sample) >> 2) + 33 if sample < 0 else (sample >> 2) + 33
    if absno > 0x1FFF:
        absno = 0x1FFF
    i = absno >> 6
    segno = 1
    while i != 0:
        segno += 1
        i >>= 1
    high_nibble = 0x0008 - segno
    low_nibble = (absno >> segno) & 0x000F
    low_nibble = 0x000F - low_nibble
    code = (high_nibble << 4) | low_nibble
    if sample >= 0:
        code |= 0x0080
    return code


def itu_ulaw_expand(code: int) -> int:
    sign = -1 if code < 0x0080 else 1
    mantissa = ~code
    exponent = (mantissa >> 4) & 0x0007
    segment = exponent + 1
    mantissa = mantissa & 0x000F
    step = 4 << segment
    return sign * ((0x0080 << exponent) + step * mantissa + step // 2 - 4 * 33)


ITU_DECODE = {"PCMU": itu_ulaw_expand, "PCMA": itu_alaw_expand}
ITU_ENCODE = {"PCMU": itu_ulaw_compress, "PCMA": itu_alaw_compress}
SILENCE = {"PCMU": 0xFF, "PCMA": 0xD5}


@dataclass
class NaiveParticipant:
    pid: int
    conference: int
    codec: str = "PCMU"
    muted: bool = False
    deaf: bool = False
    gain_in: float = 1.0  # linear, as float32 (the mixer's own conversion of the dB value)
    gain_out: float = 1.0


def _scale(value: float, gain: float) -> float:
    """float32 multiply then round half to even, one sample at a time."""
    return float(np.rint(np.float32(value) * np.float32(gain)))


def naive_mix(participants: list[NaiveParticipant], inputs: dict[int, bytes | None]) -> dict[int, bytes]:
    """Per-sample N-1 mix of one tick. ``inputs[pid]`` is that participant's encoded frame (or None)."""
    contribution: dict[int, list[float]] = {}
    for p in participants:
        payload = inputs.get(p.pid) or bytes([SILENCE[p.codec]]) * 160
        samples = []
        for code in payload:
            value = float(ITU_DECODE[p.codec](code))
            samples.append(_scale(value, p.gain_in) if p.gain_in != 1.0 else value)
        contribution[p.pid] = samples
    out: dict[int, bytes] = {}
    for listener in participants:
        if listener.deaf:
            out[listener.pid] = bytes([SILENCE[listener.codec]]) * 160
            continue
        frame = bytearray()
        for k in range(160):
            total = 0.0
            for talker in participants:
                if talker.conference == listener.conference and not talker.muted and talker.pid != listener.pid:
                    total += contribution[talker.pid][k]
            if listener.gain_out != 1.0:
                total = _scale(total, listener.gain_out)
            index = min(max((int(total) >> 2) + 32768, 0), 65535)
            frame.append(int(limiter.LIMIT_ENCODE[listener.codec][index]))
        out[listener.pid] = bytes(frame)
    return out
