"""``Prompt``: int16 mono audio at 8 kHz that the mixer can play.

The mixer owns no phrases: it plays the audio it is given. The appliance's voice prompts and tones,
by name, are in :mod:`bridge.prompts`.
"""

from __future__ import annotations

import io
import wave
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from bridge.mixer.events import MixerError
from bridge.mixer.g711 import SAMPLE_RATE, SAMPLES_PER_FRAME

Int16Array = npt.NDArray[np.int16]


@dataclass(frozen=True, eq=False)
class Prompt:
    """Audio to play: ``samples`` int16 mono at 8 kHz. ``frames`` is the same, padded to whole 20 ms frames."""

    name: str
    samples: Int16Array
    frames: npt.NDArray[np.float32] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        samples = np.asarray(self.samples)
        if samples.dtype != np.int16 or samples.ndim != 1:
            raise MixerError(f"prompt {self.name!r}: samples must be a 1-D int16 array")
        count = max(1, -(-len(samples) // SAMPLES_PER_FRAME))
        flat = np.zeros(count * SAMPLES_PER_FRAME, dtype=np.float32)
        flat[: len(samples)] = samples
        frames = flat.reshape(count, SAMPLES_PER_FRAME)
        frames.setflags(write=False)
        object.__setattr__(self, "frames", frames)

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return len(self.samples) / SAMPLE_RATE

    @classmethod
    def from_wav(cls, name: str, data: bytes | str) -> Prompt:
        """Read an 8 kHz 16-bit mono WAV (bytes or a file path)."""
        try:
            with wave.open(io.BytesIO(data) if isinstance(data, bytes) else data, "rb") as wav:
                if (wav.getframerate(), wav.getsampwidth(), wav.getnchannels()) != (SAMPLE_RATE, 2, 1):
                    raise MixerError(f"prompt {name!r}: need 8 kHz 16-bit mono WAV")
                raw = wav.readframes(wav.getnframes())
        except (wave.Error, EOFError, OSError) as exc:
            raise MixerError(f"prompt {name!r}: unreadable WAV: {exc}") from exc
        return cls(name, np.frombuffer(raw, dtype="<i2").astype(np.int16))
