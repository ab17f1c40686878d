"""Conference service logic: the pure conference state machine, launch plan and per-trunk-group dial pacer
(``machine``) and the pure launch decisions (``policy``, where billing plugs in); the glue that carries out
the machine's actions (``service``), through the narrow ``interfaces`` to SIP and to the one owner of media
(``media``: participants <-> endpoints, the tick's read / mix / write), with every database write in
``records``. An Instant Conference and a meet-me room are the same machine with a different
:class:`~bridge.conference.machine.Policy`.
"""

from __future__ import annotations


class ConferenceError(Exception):
    """Base of every error raised by the conference package."""


class NotAllowed(ConferenceError):
    """A request that the conference's current state refuses (control API: 409)."""


class UnknownLeg(ConferenceError):
    """A leg id that is not part of the conference (control API: 404)."""
