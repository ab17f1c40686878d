"""Conference recordings: a standard WAV (16-bit mono, 8 or 16 kHz) of the mix everyone hears.

The mixer hands one 20 ms frame per tick; ``WavRecorder`` buffers them in memory and writes about
once a second, so the tick does a file write (to the page cache) only every 50th frame.
16 kHz recordings are upsampled 2x with a streaming windowed-sinc interpolator (state carried
across frames, so there is no click at frame edges).
"""

from __future__ import annotations

import wave
from typing import Final

import numpy as np
import numpy.typing as npt
from scipy import signal

from bridge.mixer.g711 import SAMPLE_RATE

FLUSH_FRAMES: Final = 50  # ~1 s of audio per write

# 2x interpolation low-pass: cut at the 8 kHz Nyquist (4 kHz) of the 16 kHz output.
_TAPS: Final = signal.firwin(63, 3700.0, fs=2 * SAMPLE_RATE).astype(np.float64) * 2.0


class Upsampler2x:
    """Streaming 8 kHz -> 16 kHz interpolator (zero-stuffing + FIR, filter state kept between calls)."""

    def __init__(self) -> None:
        self._zi = np.zeros(len(_TAPS) - 1)

    def process(self, samples: npt.NDArray[np.int16]) -> npt.NDArray[np.int16]:
        stuffed = np.zeros(2 * len(samples))
        stuffed[::2] = samples
        out, self._zi = signal.lfilter(_TAPS, 1.0, stuffed, zi=self._zi)
        result: npt.NDArray[np.int16] = np.clip(np.rint(out), -32768, 32767).astype(np.int16)
        return result


class WavRecorder:
    """A ``RecordingSink`` writing a WAV file; ``close()`` flushes and finalises the header."""

    def __init__(self, path: str, *, rate: int = SAMPLE_RATE) -> None:
        if rate not in (SAMPLE_RATE, 2 * SAMPLE_RATE):
            raise ValueError(f"recording rate {rate} not supported")
        self.path = path
        self.rate = rate
        self._file = open(path, "wb")  # noqa: SIM115 - closed in close(); opened first so errors leave nothing half-built
        self._wav = wave.open(self._file, "wb")
        self._wav.setnchannels(1)
        self._wav.setsampwidth(2)
        self._wav.setframerate(rate)
        self._upsampler = Upsampler2x() if rate != SAMPLE_RATE else None
        self._buffer: list[bytes] = []
        self.frames = 0

    def write(self, samples: npt.NDArray[np.int16]) -> None:
        if self._upsampler is not None:
            samples = self._upsampler.process(samples)
        self._buffer.append(samples.astype("<i2").tobytes())
        self.frames += 1
        if len(self._buffer) >= FLUSH_FRAMES:
            self.flush()

    def flush(self) -> None:
        if self._buffer:
            data = b"".join(self._buffer)
            self._buffer.clear()
            self._wav.writeframes(data)

    def close(self) -> None:
        try:
            self.flush()
            self._wav.close()
        finally:
            self._file.close()
