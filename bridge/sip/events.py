"""Events the SIP service reports to the engine, one frozen dataclass per kind (aioquic ``events.py`` style).

Every event carries the :class:`~bridge.sip.leg.SipLeg` it is about; the engine dispatches on the type. They are
delivered on the asyncio loop thread, in the order they happened for a given leg.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from bridge.sip.leg import SipLeg


@dataclass(frozen=True)
class LegEvent:
    leg: SipLeg


@dataclass(frozen=True)
class IncomingCall(LegEvent):
    """An accepted inbound INVITE (ACL and number passed, 180 sent): call ``answer()`` or ``reject()``."""


@dataclass(frozen=True)
class LegRinging(LegEvent):
    """The far end alerts (180/183) on an outbound leg."""


@dataclass(frozen=True)
class LegAnswered(LegEvent):
    """Media is up: 200 OK received (outbound) or sent and the RTP endpoint started (inbound)."""


@dataclass(frozen=True)
class LegFailed(LegEvent):
    """The leg never connected. ``status`` is the final SIP code (0 when no response was received at all)."""

    cause: str
    status: int


@dataclass(frozen=True)
class LegEnded(LegEvent):
    """A connected leg is gone: BYE received (``by="remote"``), hangup() or RTP timeout (``by="local"``)."""

    cause: str
    by: Literal["local", "remote"]


@dataclass(frozen=True)
class LegDtmf(LegEvent):
    """One DTMF digit (``0-9 * # A-D``), from RTP events, SIP INFO or the in-band detector."""

    digit: str
    source: Literal["rfc4733", "info", "inband"]


@dataclass(frozen=True)
class LegHold(LegEvent):
    """The peer put us on hold (``on=True``: re-INVITE with sendonly/inactive/0.0.0.0) or resumed."""

    on: bool
