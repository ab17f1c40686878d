"""The SMPP package's exceptions: one base, split by who was wrong, carrying the SMPP status hint."""

from __future__ import annotations

from bridge.smpp.constants import ESME_RSYSERR


class SmppError(Exception):
    """Base of every error raised by :mod:`bridge.smpp`.

    ``command_status`` is the SMPP status that best describes the error, for a response PDU or a log line.
    """

    def __init__(self, message: str, *, command_status: int = ESME_RSYSERR) -> None:
        super().__init__(message)
        self.command_status = command_status


class PeerError(SmppError):
    """The SMSC (or the handset behind it) sent something we cannot accept: garbage PDU, bad encoding."""


class DecodeError(PeerError):
    """A short message, UDH or delivery receipt could not be decoded."""


class LinkError(PeerError):
    """The link to the SMSC failed: refused connection, refused bind, missing response, garbage."""


class LocalError(SmppError):
    """We did something wrong: an illegal state transition, a message that cannot be encoded."""


class EncodingError(LocalError):
    """Text that cannot be sent as SMS (e.g. more than 255 parts)."""


class StateError(LocalError):
    """An event the bind state machine does not allow in its current state."""
