"""Dial-in: the DNIS routing (common number, IC pool, rooms) and the PIN IVR.

``ivr`` is a pure state machine (``now`` in, actions out); ``routing`` resolves a dialled number and
a PIN against the database and the set of running conferences; ``lobby`` is the glue that holds answered
calls in the PIN prompt and hands the admitted ones to the conference service.
"""

from __future__ import annotations


class DnisError(Exception):
    """Base of every error raised by the dial-in package."""
