"""The one base exception of :mod:`bridge.rtp` and its kinds.

What the peer did wrong (a malformed packet, an unacceptable SDP offer) is split from what we did wrong
(running out of ports, using an endpoint that is closed). ``status_hint`` carries the SIP status a
signalling layer should answer with when the error comes from an offer.
"""

from __future__ import annotations


class RtpError(Exception):
    """Base class of every error raised by :mod:`bridge.rtp`."""


class PacketError(RtpError):
    """The peer sent an RTP/RTCP packet we cannot parse; the message says what is wrong with it."""


class SdpError(RtpError):
    """The peer's SDP is malformed or unacceptable.

    ``status_hint`` is the SIP response for an offer that fails: 400 for a syntax error, 488 (Not Acceptable
    Here) when it parses but has no usable audio stream or no codec in common with us.
    """

    def __init__(self, message: str, *, status_hint: int = 488) -> None:
        super().__init__(message)
        self.status_hint = status_hint


class PortsExhausted(RtpError):
    """Every RTP port of the configured range is in use (or cannot be bound)."""


class EndpointError(RtpError):
    """An endpoint was used wrongly by our own code (e.g. ``start()`` after ``close()``)."""
