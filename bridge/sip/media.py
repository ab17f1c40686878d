"""Per-leg media as the SIP service needs it: SDP offer/answer (:mod:`bridge.rtp.sdp`) + one RTP endpoint.

The service never touches RTP itself; it asks a :data:`MediaFactory` for a :class:`Media` when a leg needs one
(before the INVITE goes out, or when an INVITE arrives) and drives it through offer/answer. The default
factory, :func:`open_rtp_media`, binds a :class:`bridge.rtp.endpoint.RtpEndpoint` on a port of
``[sip] rtp_ports`` (``sip.media_path = "socket"``), or, with ``sip.media_path = "batched"``, puts the leg on
a shared socket of the engine's :class:`bridge.rtp.shared.BatchedMedia` (:class:`BatchedRtpMedia`); tests and
benchmarks can inject their own.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol

from bridge.config import Config, parse_port_range
from bridge.rtp.endpoint import RtpEndpoint
from bridge.rtp.errors import SdpError
from bridge.rtp.poller import RtpPoller
from bridge.rtp.ports import PortAllocator
from bridge.rtp.sdp import MediaDescription, answer_offer, make_offer, parse_answer
from bridge.rtp.shared import BatchedMedia
from bridge.rtp.sharedleg import BatchedLeg
from bridge.sip import PeerError

if TYPE_CHECKING:
    from bridge.sip.leg import SipLeg

log = logging.getLogger(__name__)

MediaEndpoint = RtpEndpoint | BatchedLeg
"""The leg's :class:`bridge.rtp.endpoint.RtpEndpoint` (or :class:`bridge.rtp.sharedleg.BatchedLeg`), handed to
the media owner by
:meth:`bridge.sip.service.SipService.media_endpoint` (which calls ``read_frame``/``write_frame``/``send_dtmf``/
``stats`` on it)."""

OnDtmf = Callable[[str, str], None]
"""``on_dtmf(digit, source)`` with source ``"rfc4733"`` or ``"inband"``; called on the loop thread."""
OnTimeout = Callable[[], None]
"""Called on the loop thread when the endpoint saw no RTP for ``sip.rtp_timeout_s``."""


class Media(Protocol):
    """What the service needs from a leg's media."""

    @property
    def endpoint(self) -> MediaEndpoint: ...

    def offer(self) -> str:
        """Our SDP offer (a new version each call)."""

    def answer(self, offer: str) -> str:
        """Answer the peer's initial offer; raises :class:`PeerError` (status 400/488) if unusable."""

    def accept_answer(self, answer: str) -> None:
        """Apply the peer's answer to our offer; raises :class:`PeerError` if unusable."""

    def reoffer(self, offer: str) -> tuple[str, bool]:
        """Answer a re-INVITE offer; returns (answer, the peer holds us)."""

    async def start(self) -> None:
        """Start sending/receiving (after the call connected)."""

    async def close(self) -> None:
        """Release the socket/port; idempotent."""


MediaFactory = Callable[["SipLeg", OnDtmf, OnTimeout], Awaitable[Media]]


class RtpMedia:
    """:class:`Media` over one :class:`bridge.rtp.endpoint.RtpEndpoint`."""

    _session_ids = itertools.count(secrets.randbelow(1 << 30))

    def __init__(self, endpoint: RtpEndpoint, *, address: str) -> None:
        self._endpoint = endpoint
        self.address = address
        self.port = endpoint.local_port
        self.session_id = next(self._session_ids)
        self.version = 0
        self.remote: MediaDescription | None = None
        self._started = False

    @property
    def endpoint(self) -> RtpEndpoint:
        return self._endpoint

    def _next_version(self) -> int:
        self.version += 1
        return self.version

    def offer(self) -> str:
        return make_offer(self.address, self.port, session_id=self.session_id, version=self._next_version())

    def answer(self, offer: str) -> str:
        try:
            text, remote = answer_offer(
                offer, self.address, self.port, session_id=self.session_id, version=self._next_version()
            )
        except SdpError as exc:
            raise PeerError(str(exc), status=exc.status_hint) from exc
        self.remote = remote
        return text

    def accept_answer(self, answer: str) -> None:
        try:
            self.remote = parse_answer(answer)
        except SdpError as exc:
            raise PeerError(str(exc), status=exc.status_hint) from exc

    def reoffer(self, offer: str) -> tuple[str, bool]:
        text = self.answer(offer)
        assert self.remote is not None
        if self._started and not self._endpoint.closed:
            self._endpoint.start(self.remote)  # start() again updates the stream (RtpEndpoint docs)
        return text, not self.remote.remote_receives

    async def start(self) -> None:
        if self.remote is None or self._endpoint.closed:
            return
        self._endpoint.start(self.remote)
        self._started = True

    async def close(self) -> None:
        self._endpoint.close()  # idempotent; gives the port back to the allocator


class BatchedRtpMedia:
    """:class:`Media` over a :class:`~bridge.rtp.sharedleg.BatchedLeg`: the leg's socket is chosen when the
    port is first needed -- our offer (outbound: a shared socket), or our answer, from the offer's address
    (inbound: a private socket when that address cannot be told apart on a shared one)."""

    _session_ids = RtpMedia._session_ids

    def __init__(self, leg: BatchedLeg, *, address: str, loop: asyncio.AbstractEventLoop) -> None:
        self._leg = leg
        self.address = address
        self._loop = loop
        self.session_id = next(self._session_ids)
        self.version = 0
        self.remote: MediaDescription | None = None
        self._started = False

    @property
    def endpoint(self) -> BatchedLeg:
        return self._leg

    @property
    def port(self) -> int:
        return self._leg.local_port

    def offer(self) -> str:
        port = self._leg.place(None)
        self.version += 1
        return make_offer(self.address, port, session_id=self.session_id, version=self.version)

    def answer(self, offer: str) -> str:
        self.version += 1
        try:
            if self._leg.group is None:
                _, remote = answer_offer(offer, self.address, 9, session_id=self.session_id)
                self._leg.place(remote)
            text, self.remote = answer_offer(
                offer, self.address, self._leg.local_port, session_id=self.session_id, version=self.version
            )
        except SdpError as exc:
            raise PeerError(str(exc), status=exc.status_hint) from exc
        return text

    def accept_answer(self, answer: str) -> None:
        try:
            self.remote = parse_answer(answer)
        except SdpError as exc:
            raise PeerError(str(exc), status=exc.status_hint) from exc

    def reoffer(self, offer: str) -> tuple[str, bool]:
        text = self.answer(offer)
        assert self.remote is not None
        if self._started and not self._leg.closed:
            self._leg.start(self.remote, self._loop.time())
        return text, not self.remote.remote_receives

    async def start(self) -> None:
        if self.remote is None or self._leg.closed:
            return
        self._leg.start(self.remote, self._loop.time())
        self._started = True

    async def close(self) -> None:
        self._leg.close()


def batched_media(config: Config) -> BatchedMedia | None:
    """The engine's shared-socket RTP path when ``sip.media_path = "batched"`` (else None: a socket per leg).
    The batched path is IPv4 only (:mod:`bridge.rtp.batch`): an IPv6 ``sip.listen`` keeps a socket per leg."""
    if config.sip.media_path != "batched":
        return None
    if ":" in config.sip.listen.rpartition(":")[0]:
        log.warning("sip.media_path = batched needs an IPv4 sip.listen: one RTP socket per leg instead")
        return None
    low, high = parse_port_range(config.sip.rtp_ports, "sip.rtp_ports")
    host = config.sip.listen.rpartition(":")[0]
    return BatchedMedia(PortAllocator(low, high), host=host, priority=config.sip.media_priority)


def open_rtp_media(
    config: Config, *, poller: RtpPoller | None = None, batched: BatchedMedia | None = None
) -> MediaFactory:
    """The default factory: one RTP endpoint per leg on a port pair from ``[sip] rtp_ports``.

    With ``poller`` the endpoints' RTP sockets are read by the engine's tick (``RtpPoller.poll``) instead of
    one asyncio callback per datagram. With ``batched`` (``sip.media_path = "batched"``; it must use the same
    port range) legs go on its shared sockets instead (:class:`BatchedRtpMedia`).

    DTMF source: the endpoint reports digits without saying how they came; legs of trunk groups with
    ``inband_dtmf`` report ``"inband"``, the others ``"rfc4733"``.
    """
    low, high = parse_port_range(config.sip.rtp_ports, "sip.rtp_ports")
    allocator = batched.allocator if batched is not None else PortAllocator(low, high)
    address = config.sip.public_address
    bind_host = config.sip.listen.rpartition(":")[0]
    inband_groups = frozenset(g.name for g in config.trunk_group if g.inband_dtmf)

    async def factory(leg: SipLeg, on_dtmf: OnDtmf, on_timeout: OnTimeout) -> Media:
        inband = leg.trunk_group in inband_groups
        source = "inband" if inband else "rfc4733"
        if batched is not None:
            loop = asyncio.get_running_loop()
            shared = BatchedLeg.open(
                batched, now=loop.time(), on_dtmf=lambda digit: on_dtmf(digit, source), on_timeout=on_timeout,
                rtp_timeout_s=config.sip.rtp_timeout_s, inband_dtmf=inband,
            )  # fmt: skip
            return BatchedRtpMedia(shared, address=address, loop=loop)
        endpoint = await RtpEndpoint.open(
            asyncio.get_running_loop(),
            allocator,
            host=bind_host,
            on_dtmf=lambda digit: on_dtmf(digit, source),
            inband_dtmf=inband,
            rtp_timeout_s=config.sip.rtp_timeout_s,
            on_timeout=on_timeout,
            poller=poller,
        )
        return RtpMedia(endpoint, address=address)

    return factory
