"""Events the mixer reports from ``Mixer.tick()`` (small frozen dataclasses; the glue dispatches on type)."""

from __future__ import annotations

from dataclasses import dataclass


class MixerError(Exception):
    """Base exception of the mixer package."""


class UnknownParticipant(MixerError):
    """A participant id that is not (or no longer) in the mixer."""


@dataclass(frozen=True)
class MixerEvent:
    """Base of everything ``MixResult.events`` holds."""


@dataclass(frozen=True)
class TalkingStarted(MixerEvent):
    """``pid``'s input energy stayed above the start threshold long enough."""

    pid: int


@dataclass(frozen=True)
class TalkingStopped(MixerEvent):
    """``pid`` went quiet (below the stop threshold long enough), was muted, or left."""

    pid: int


@dataclass(frozen=True)
class PlayFinished(MixerEvent):
    """A non-looping prompt reached its end, or its target left (``completed=False``)."""

    handle: int
    completed: bool = True


@dataclass(frozen=True)
class RecordingFailed(MixerEvent):
    """Writing a conference recording failed; the recording was stopped (the mix goes on)."""

    conference: int
    reason: str
