"""Conference service logic: the pure conference state machine (``machine``), the launch plan and
dial pacing (``plan``), and the asyncio glue that wires it to SIP, RTP, the mixer, SMS and the
database (``service``). An Instant Conference and a meet-me room are the same machine with a
different :class:`~bridge.conference.machine.Policy`.
"""

from __future__ import annotations


class ConferenceError(Exception):
    """Base of every error raised by the conference package."""


class NotAllowed(ConferenceError):
    """A request that the conference's current state refuses (control API: 409)."""


class UnknownLeg(ConferenceError):
    """A leg id that is not part of the conference (control API: 404)."""
