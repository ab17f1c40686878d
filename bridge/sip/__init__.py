"""SIP signalling for trunks and E1 media gateways: a narrow adapter around sippy.

Public surface (what the engine uses): :class:`bridge.sip.service.SipService`, :class:`bridge.sip.leg.SipLeg`
and the events in :mod:`bridge.sip.events`. Everything else in this package is either a pure core (no I/O, no
clock: ``now`` is passed in) or the sippy adapter (:mod:`bridge.sip.stack`), which is the only module that
imports sippy, and only inside sippy's own thread.
"""

from __future__ import annotations


class SipError(Exception):
    """Base exception of the SIP package.

    ``status`` carries the SIP response code that best describes the problem when it has to be reported to a
    peer (e.g. 488 for an unusable SDP offer, 503 when no route is left).
    """

    def __init__(self, message: str, *, status: int = 500) -> None:
        super().__init__(message)
        self.status = status


class LegStateError(SipError):
    """We asked a leg to do something its state does not allow (our mistake, not the peer's)."""


class PeerError(SipError):
    """The remote side sent something we cannot use (bad SDP, unknown codec...)."""
