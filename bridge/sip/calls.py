"""What the SIP service keeps per call, and the INVITE it sends for one route attempt (pure).

Outbound call (one :class:`Attempt` per route): INVITE with From user and P-Asserted-Identity = ``calling``;
sippy answers 401/407 challenges with the trunk group's credentials; no response at all within
``sip.invite_timeout_s``, a 408 or a 5xx advances to the next route; ``conference.ring_timeout_s`` without an
answer cancels the call (``LegFailed("no answer", 487)``). E1 groups send the allocated port as the
``X-Span-Channel: <span>/<channel>`` header (the operator guide's "Trunks and E1 gateways").
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from bridge.config import TrunkGroupConfig, parse_host_port
from bridge.sip.leg import SipLeg
from bridge.sip.media import Media
from bridge.sip.routing import RouteAttempt
from bridge.sip.stack import DialRequest

SPAN_CHANNEL_HEADER = "X-Span-Channel"
"""Header carrying the E1 port of an outbound call to the media gateway: ``X-Span-Channel: 1/5``."""


@dataclass
class Attempt:
    token: int
    leg: SipLeg
    route: RouteAttempt
    outcome: asyncio.Future[tuple[int, str]]
    """(status, reason): 200 when connected, NO_RESPONSE when nothing came back, -1 when we gave up."""
    responded: bool = False


@dataclass
class LegRuntime:
    leg: SipLeg
    token: int = 0
    media: Media | None = None
    answer_sdp: str = ""
    group: TrunkGroupConfig | None = None


def invite_request(
    leg: SipLeg, group: TrunkGroupConfig, route: RouteAttempt, *, token: int, sdp: str, public_address: str,
    extra: Sequence[tuple[str, str]] = (),
) -> DialRequest:  # fmt: skip
    """The INVITE of one attempt: our number as From user and P-Asserted-Identity, the group's credentials."""
    host, port = parse_host_port(route.gateway, "gateway")
    pai = f"<sip:{leg.calling}@{public_address}>"
    if leg.display_name:
        pai = f'"{leg.display_name}" {pai}'
    return DialRequest(
        token=token,
        call_id=leg.call_id,
        called=leg.called,
        calling=leg.calling,
        display_name=leg.display_name,
        host=host,
        port=port,
        sdp=sdp,
        username=group.username,
        password=group.password,
        extra_headers=(("P-Asserted-Identity", pai), *extra),
    )
