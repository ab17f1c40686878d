"""RTP media for SIP legs: SDP offer/answer, port allocation, asyncio RTP/RTCP endpoints, jitter buffer, DTMF.

The public API (see each module)::

    from bridge.rtp import PortAllocator, RtpEndpoint, MediaDescription, make_offer, answer_offer, parse_answer

Pure cores (no I/O, no clock): :mod:`.sdp`, :mod:`.ports`, :mod:`.packet`, :mod:`.jitterbuffer`, :mod:`.dtmf`,
:mod:`.inband`, :mod:`.rtcp`, :mod:`.session`. The asyncio glue is :mod:`.endpoint`, and :mod:`.poller` the
tick-driven receive for many legs.
"""

from bridge.rtp.endpoint import RtpEndpoint
from bridge.rtp.errors import EndpointError, PacketError, PortsExhausted, RtpError, SdpError
from bridge.rtp.poller import RtpPoller
from bridge.rtp.ports import PortAllocator
from bridge.rtp.sdp import MediaDescription, answer_offer, make_offer, parse_answer

__all__ = [
    "EndpointError",
    "MediaDescription",
    "PacketError",
    "PortAllocator",
    "PortsExhausted",
    "RtpEndpoint",
    "RtpError",
    "RtpPoller",
    "SdpError",
    "answer_offer",
    "make_offer",
    "parse_answer",
]
