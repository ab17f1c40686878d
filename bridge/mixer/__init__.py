"""The mix engine: G.711 tables, batched N-1 mixing with a soft limiter, talker detection, prompts, recording.

Public API (see each module): ``Mixer``/``MixResult`` (mixer.py), events (events.py), ``Prompt``
(prompts.py), ``run_ticks``/``TickClock``/``LatenessStats`` (clock.py), G.711 tables (g711.py).
"""

from bridge.mixer.clock import LatenessStats, Tick, TickClock, run_ticks
from bridge.mixer.events import (
    MixerError,
    MixerEvent,
    PlayFinished,
    RecordingFailed,
    TalkingStarted,
    TalkingStopped,
    UnknownParticipant,
)
from bridge.mixer.g711 import PCMA, PCMU, SAMPLE_RATE, SAMPLES_PER_FRAME
from bridge.mixer.mixer import Mixer, MixResult, TalkerSettings
from bridge.mixer.prompts import Prompt

__all__ = [
    "PCMA",
    "PCMU",
    "SAMPLES_PER_FRAME",
    "SAMPLE_RATE",
    "LatenessStats",
    "MixResult",
    "Mixer",
    "MixerError",
    "MixerEvent",
    "PlayFinished",
    "Prompt",
    "RecordingFailed",
    "TalkerSettings",
    "TalkingStarted",
    "TalkingStopped",
    "Tick",
    "TickClock",
    "UnknownParticipant",
    "run_ticks",
]
