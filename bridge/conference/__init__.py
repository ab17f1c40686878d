"""Conference service logic: the pure conference state machine, launch plan and dial pacer
(``machine``); the glue that wires it to SIP, the mixer, SMS and the database (``service``, through
the narrow ``ports``; ``media`` adapts the mixer); ``bridge run`` (``cli``). An Instant Conference and
a meet-me room are the same machine with a different :class:`~bridge.conference.machine.Policy`.
"""

from __future__ import annotations


class ConferenceError(Exception):
    """Base of every error raised by the conference package."""


class NotAllowed(ConferenceError):
    """A request that the conference's current state refuses (control API: 409)."""


class UnknownLeg(ConferenceError):
    """A leg id that is not part of the conference (control API: 404)."""
