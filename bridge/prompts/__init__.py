"""The appliance's voice prompts and tones: what the conference plays, by name.

Voice prompts are small 8 kHz WAVs in ``bridge/prompts/wav/``, spoken from :data:`VOICE_PROMPTS` by
``python -m bridge.prompts.make`` (espeak-ng + sox) and committed. Tones (join/leave chimes, the beep,
the hold music) are synthesised here in numpy, so they need no files. The mixer only plays the
:class:`~bridge.mixer.prompts.Prompt` audio it is given; the phrases live here.
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import Final

import numpy as np
import numpy.typing as npt

from bridge.mixer.events import MixerError
from bridge.mixer.g711 import SAMPLE_RATE
from bridge.mixer.prompts import Prompt

#: Phrases of the voice prompts (name -> text); ``python -m bridge.prompts.make`` speaks them.
VOICE_PROMPTS: Final[dict[str, str]] = {
    "first_participant": "You are the first participant.",
    "enter_pin": "Please enter your PIN, followed by the hash key.",
    "wrong_pin": "That PIN is not valid. Please try again.",
    "conference_will_end": "The conference will end shortly.",
    "one_minute_left": "Your credit runs out in one minute. This call will then end.",
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
    # The DTMF key map of bridge.conference.machine.KEY_MAP (README "DTMF key map"), per role.
    "help_participant": "Press star six to mute or unmute yourself. Press star zero to hear this again.",
    "help_moderator": (
        "Press star six to mute or unmute yourself. Star two starts or stops recording. "
        "Star three tells the number of participants. Star four mutes or unmutes everybody. "
        "Star five locks or unlocks the conference. Star star ends the conference for everyone."
    ),
    **{
        digit: word
        for digit, word in zip(
            "0123456789", ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"), strict=True
        )
    },
}
TONES: Final = ("join", "leave", "music", "beep")
PROMPT_NAMES: Final = tuple(sorted({*VOICE_PROMPTS, *TONES}))
WAV_DIR: Final = "wav"  # inside the bridge.prompts package

Int16Array = npt.NDArray[np.int16]


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
    resource = resources.files("bridge.prompts").joinpath(WAV_DIR, f"{name}.wav")
    try:
        data = resource.read_bytes()
    except OSError as exc:
        raise MixerError(f"prompt {name!r} missing: run python -m bridge.prompts.make") from exc
    return Prompt.from_wav(name, data)
