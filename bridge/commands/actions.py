"""What a command asks the rest of the appliance to do, beyond its SMS reply.

The command language is pure: it changes the database through the session it is given and returns
these actions; the engine carries them out (the conference service dials, the SMPP service texts).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Action:
    """Base of every action a command returns."""


@dataclass(frozen=True)
class LaunchConference(Action):
    """Dial ``numbers`` (E.164, de-duplicated, the subscriber's mobile first) into one conference."""

    subscriber_id: int
    numbers: tuple[str, ...]
    ic_id: int | None = None
    """The Instant Conference launched (``ICx``); ``None`` for an ad hoc ``IC ...``."""


@dataclass(frozen=True)
class SmsBlast(Action):
    """Text ``text`` to every number in ``numbers`` from the short code."""

    subscriber_id: int
    numbers: tuple[str, ...]
    text: str
