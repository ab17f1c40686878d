"""Prompts and tones: int16 mono audio at 8 kHz that the mixer can play.

Voice prompts are small WAVs in ``bridge/mixer/prompts/`` produced by the repo's own script
(``python -m bridge.mixer.make_prompts``: espeak-ng + sox). Tones (join/leave beeps, the hold
music) are synthesised here in numpy, so they need no files.
"""

from __future__ import annotations

import functools
import io
import wave
from dataclasses import dataclass, field
from importlib import resources
from typing import Final

import numpy as np
import numpy.typing as npt

from bridge.mixer.events import MixerError
from bridge.mixer.g711 import SAMPLE_RATE, SAMPLES_PER_FRAME

#: Phrases of the voice prompts (name -> text); ``make_prompts`` speaks them.
VOICE_PROMPTS: Final[dict[str, str]] = {
    "first_participant": "You are the first participant.",
    "enter_pin": "Please enter your PIN, followed by the hash key.",
    "wrong_pin": "That PIN is not valid. Please try again.",
    "conference_will_end": "The conference will end shortly.",
    "recording_started": "Recording started.",
    "recording_stopped": "Recording stopped.",
    "goodbye": "Goodbye.",
    "not_started": "This conference has not started yet.",
    "conference_full": "This conference is full.",
    "conference_locked": "This conference is locked.",
    "muted": "You are muted.",
    "unmuted": "You are unmuted.",
    "help": "Press star six to mute or unmute. Press star star to end the conference.",
    "participant_count": "Participants in this conference:",
    **{
        digit: word
        for digit, word in zip(
            "0123456789", ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"), strict=True
        )
    },
}
TONES: Final = ("join", "leave", "music", "beep")
PROMPT_NAMES: Final = tuple(sorted({*VOICE_PROMPTS, *TONES}))
PROMPT_DIR: Final = "prompts"  # inside the bridge.mixer package

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


def tone(
    frequencies: tuple[float, ...], seconds: float, *, level_dbov: float = -16.0, fade_s: float = 0.01
) -> Int16Array:
    """A sum of sines with raised-cosine fades (no clicks), peak at ``level_dbov``."""
    n = round(seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    wave_ = sum((np.sin(2 * np.pi * f * t) for f in frequencies), start=np.zeros(n))
    peak = float(np.max(np.abs(wave_))) or 1.0
    wave_ *= 10 ** (level_dbov / 20) * 32767 / peak
    fade = min(round(fade_s * SAMPLE_RATE), n // 2)
    if fade:
        ramp = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, fade))
        wave_[:fade] *= ramp
        wave_[n - fade :] *= ramp[::-1]
    return np.rint(wave_).astype(np.int16)


def silence(seconds: float) -> Int16Array:
    return np.zeros(round(seconds * SAMPLE_RATE), dtype=np.int16)


def _music() -> Int16Array:
    """A gentle 8-second loop: arpeggiated major chords (C F G C), soft, seamless at the loop point."""
    chords = ((261.63, 329.63, 392.00), (349.23, 440.00, 523.25), (392.00, 493.88, 587.33), (261.63, 329.63, 392.0))
    notes = []
    for chord in chords:
        for f in (*chord, chord[1]):
            notes.append(tone((f, f * 2), 0.5, level_dbov=-24.0, fade_s=0.05))
    return np.concatenate(notes)


def _synthesised(name: str) -> Int16Array:
    if name == "join":  # rising two-note chime
        return np.concatenate([tone((660.0,), 0.12), tone((880.0,), 0.18)])
    if name == "leave":  # falling two-note chime
        return np.concatenate([tone((880.0,), 0.12), tone((660.0,), 0.18)])
    if name == "beep":
        return tone((1000.0,), 0.2)
    if name == "music":
        return _music()
    raise KeyError(name)


@functools.cache
def load_prompt(name: str) -> Prompt:
    """The prompt or tone called ``name`` (see ``PROMPT_NAMES``); raises ``MixerError`` if unknown/missing."""
    if name in TONES:
        return Prompt(name, _synthesised(name))
    if name not in VOICE_PROMPTS:
        raise MixerError(f"unknown prompt {name!r}")
    resource = resources.files("bridge.mixer").joinpath(PROMPT_DIR, f"{name}.wav")
    try:
        data = resource.read_bytes()
    except OSError as exc:
        raise MixerError(f"prompt {name!r} missing: run python -m bridge.mixer.make_prompts") from exc
    return Prompt.from_wav(name, data)
