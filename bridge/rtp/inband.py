"""In-band DTMF detection (ITU-T Q.23/Q.24 tones) on 20 ms int16 frames. Pure: frames in, digits out.

For E1 gateways that pass key presses as tones in the audio instead of RFC 4733 events (enabled per trunk
group, ``TrunkGroupConfig.inband_dtmf``). Each frame is measured at the eight DTMF frequencies with the
Goertzel algorithm, done for all eight at once as one (160 x 16) matrix product (a Goertzel filter at
frequency f *is* the DFT term at f). A frame holds a digit when:

* the strongest row tone and the strongest column tone each beat the other tones of their group by 8 dB,
* together they carry a large share of the frame's energy (speech spreads energy over many frequencies),
* they are loud enough (about -40 dBm0 each), and the twist between them is within Q.24 limits
  (high group at most 8 dB weaker or 4 dB stronger than the low group).

A digit is reported once when two consecutive frames (40 ms, the Q.24 minimum) agree, and the detector re-arms
only after a frame without that digit, so a long press is one digit.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["InbandDtmfDetector", "dtmf_tone"]

SAMPLE_RATE = 8000
FRAME_SAMPLES = 160
ROWS = (697.0, 770.0, 852.0, 941.0)
COLUMNS = (1209.0, 1336.0, 1477.0, 1633.0)
KEYS = ("123A", "456B", "789C", "*0#D")
PEAK_RATIO = 10 ** (8 / 10)  # 8 dB over the other tones of the group
MIN_TONE_SHARE = 0.4  # the two tones hold at least 40 % of the frame energy (1.5 % off-frequency tones lose half)
MIN_TONE_POWER = 100.0**2 / 2  # mean power of a sine of amplitude ~100 (about -40 dBm0)
NORMAL_TWIST = 10 ** (8 / 10)
REVERSE_TWIST = 10 ** (4 / 10)
CONFIRM_FRAMES = 2


TONE_AMPLITUDE = 6000  # per tone: about -8 dBm0, inside Q.23's sending levels


def dtmf_tone(digit: str, duration_ms: int) -> npt.NDArray[np.int16]:
    """The two-tone signal of ``digit`` (``0-9 * # A-D``) for ``duration_ms``, for peers without RFC 4733."""
    row = next((i for i, keys in enumerate(KEYS) if digit.upper() in keys), None) if len(digit) == 1 else None
    if row is None:
        raise ValueError(f"not a DTMF digit: {digit!r}")
    column = KEYS[row].index(digit.upper())
    t = np.arange(SAMPLE_RATE * duration_ms // 1000) / SAMPLE_RATE
    signal = np.sin(2 * np.pi * ROWS[row] * t) + np.sin(2 * np.pi * COLUMNS[column] * t)
    return np.round(TONE_AMPLITUDE * signal).astype(np.int16)


def _basis() -> npt.NDArray[np.float64]:
    n = np.arange(FRAME_SAMPLES)
    freqs = np.array(ROWS + COLUMNS)
    phase = 2 * np.pi * np.outer(n, freqs) / SAMPLE_RATE
    return np.hstack([np.cos(phase), np.sin(phase)])


_BASIS = _basis()


class InbandDtmfDetector:
    """Feed it every received 20 ms frame (int16); it returns a digit once per key press."""

    def __init__(self) -> None:
        self._candidate = ""
        self._count = 0
        self._reported = ""
        self.detected = 0

    def classify(self, frame: npt.NDArray[np.int16]) -> str:
        """The digit present in this one frame, or ""."""
        if frame.shape != (FRAME_SAMPLES,):
            raise ValueError(f"in-band DTMF detection takes {FRAME_SAMPLES}-sample frames, got {frame.shape}")
        x = frame.astype(np.float64)
        total = float(np.dot(x, x)) / FRAME_SAMPLES  # mean power
        if total < 2 * MIN_TONE_POWER:
            return ""
        proj = x @ _BASIS
        # |X(f)|^2 scaled so that a sine of amplitude A reads as its mean power A^2 / 2.
        power = (proj[:8] ** 2 + proj[8:] ** 2) * (2.0 / FRAME_SAMPLES**2)
        rows, cols = power[:4], power[4:]
        r, c = int(np.argmax(rows)), int(np.argmax(cols))
        row_power, col_power = float(rows[r]), float(cols[c])
        if row_power < MIN_TONE_POWER or col_power < MIN_TONE_POWER:
            return ""
        if np.any(np.delete(rows, r) * PEAK_RATIO > row_power) or np.any(np.delete(cols, c) * PEAK_RATIO > col_power):
            return ""
        if col_power * NORMAL_TWIST < row_power or col_power > row_power * REVERSE_TWIST:
            return ""
        if row_power + col_power < MIN_TONE_SHARE * total:
            return ""
        return KEYS[r][c]

    def feed(self, frame: npt.NDArray[np.int16]) -> str:
        """One received frame; returns the digit when a key press is confirmed, else ""."""
        digit = self.classify(frame)
        if digit != self._candidate:
            self._candidate, self._count = digit, 0
        self._count += 1
        if not digit:
            self._reported = ""
            return ""
        if self._count >= CONFIRM_FRAMES and digit != self._reported:
            self._reported = digit
            self.detected += 1
            return digit
        return ""

    def silence(self) -> None:
        """A tick without audio: ends any key press in progress."""
        self._candidate, self._count, self._reported = "", 0, ""
