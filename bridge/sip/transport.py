"""How the stack's SIP messages meet the wire: sippy's transaction manager on one UDP socket, with our
screening in front of it, the UDP fallback for next hops that name another transport, and the header
classes that keep text as it came (Record-Route) or as we spelled it (header names). Every function here runs
in the sippy thread (:mod:`bridge.sip.runtime`).

Transports. The stack sends over UDP only (sippy's transactions are UDP); TCP and TLS are a front proxy's job
(README "SIP over TCP and TLS: Kamailio in front"). A dialog may still name another transport for its next
hop: a proxy that took the call over TCP and record-routes once with ``;transport=tcp``, or a Contact with
``;transport=tcp`` and no Record-Route. RFC 3261 §12.2.1.1 keeps the route set and the remote target as they
are; only the choice of socket is ours, and a UDP-only UA behind a proxy sends to the proxy: every in-dialog
request (BYE, re-INVITE, INFO) and the ACK of a 2xx whose next hop is not UDP go over UDP to the address the
dialog came through (the source of the INVITE we answered, the gateway we sent ours to), Route headers and
Request-URI unchanged. The proxy recognises its own Record-Route and forwards on the transport it names.

Record-Route values are copied into responses (and into the Route headers of our requests) as they came,
byte for byte (RFC 3261 §12.1.1); sippy would re-serialise them (``;lr=on`` -> ``;lr``), which some proxies
do not recognise as their own.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from bridge.sip import SipError

# The adapter's one logger: bridge.ops.logs filters and traces by this name (SIP_STACK_LOGGER).
log = logging.getLogger("bridge.sip.stack")


def transaction_manager(
    gc: dict[str, Any],
    on_request: Callable[[Any, Any], Any],
    *,
    screen: Callable[[Any, Any, Any], Any],
    udp_target: Callable[[Any], bool],
) -> Any:
    """sippy's transaction manager on the UDP socket ``gc`` names: each datagram goes through ``screen``
    first (what it returns is what sippy processes; ``None`` drops it), and ``udp_target`` may re-point every
    request we send (see "Transports" above). Installs the verbatim Record-Route header class."""
    import socket

    from sippy.SipTransactionManager import SipTransactionManager
    from sippy.Udp_server import Udp_server, Udp_server_opts

    class _UdpOpts(Udp_server_opts):  # type: ignore[misc]
        # One receiver and one sender thread: datagrams leave in the order sippy produced them
        # (with sippy's default of 3 senders, the ACK of a 401 can overtake the authenticated INVITE),
        # and no SO_REUSEPORT, so a port already in use is an error instead of a silent share.
        nworkers = 1
        flags = socket.SO_REUSEADDR

    install_verbatim_record_route()

    class _Tm(SipTransactionManager):  # type: ignore[misc]
        model_udp_server = (Udp_server, _UdpOpts)

        def newTransaction(self, msg: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N802 - sippy's API
            udp_target(msg)
            return super().newTransaction(msg, *args, **kwargs)

        def transmitReq(self, t: Any, msg: Any, *args: Any, **kwargs: Any) -> None:  # noqa: N802
            # The ACK of a 2xx is built and sent here, outside newTransaction (sippy sends it over the
            # INVITE's UDP socket to the next hop's host:port, whatever transport that hop names).
            if args and msg.getMethod() == "ACK" and udp_target(msg):
                args = (msg.getTarget()[0], *args[1:])
            super().transmitReq(t, msg, *args, **kwargs)

        def handleIncoming(self, data_in: Any, ra: Any, server: Any, rtime: Any) -> None:
            try:
                screened = screen(data_in, ra, server)
                if screened is not None:
                    super().handleIncoming(screened, ra, server, rtime)
            except Exception:  # malformed input must never take the stack down
                log.exception("SIP stack: error while handling a datagram from %s", ra)

    return _Tm(gc, on_request)


def redirect_to_udp(msg: Any, hops: dict[str, tuple[str, int]]) -> bool:
    """Point a request whose next hop names a transport other than UDP at the dialog's UDP hop (``hops``:
    Call-ID -> address; the module docstring says why); True when it did. Raises :class:`SipError` if the
    dialog has none."""
    address, transport = msg.getTarget()
    if str(transport).lower() == "udp":
        return False
    call_id = str(msg.getHFBody("call-id"))
    hop = hops.get(call_id)
    if hop is None:
        raise SipError(f"{msg.getMethod()} to {address} over {transport}: no UDP hop known for Call-ID {call_id}")
    msg.setTarget((hop, "udp"))
    log.debug(
        "SIP stack: %s for %s: next hop is %s over %s; sent over UDP to %s",
        msg.getMethod(),
        call_id,
        address,
        transport,
        hop,
    )
    return True


def normalize_transport(ua: Any) -> None:
    """Lower-case the transport of the remote target: a Contact with ``;transport=UDP`` (SIPp, some gateways)
    makes sippy refuse in-dialog requests ("unsupported transport: UDP"); RFC 3261 §19.1.4 says it is
    case-insensitive."""
    for attr in ("rAddr", "rAddr0"):
        value = getattr(ua, attr, None)
        if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], str) and value[1] != value[1].lower():
            setattr(ua, attr, (value[0], value[1].lower()))
    target = getattr(ua, "rTarget", None)
    if target is not None and isinstance(getattr(target, "transport", None), str):
        target.transport = target.transport.lower()


def install_verbatim_record_route() -> None:
    """Make sippy keep each Record-Route value as the text it came in (RFC 3261 §12.1.1: responses copy them
    unchanged, and the route set of our requests is built from them). sippy's parser table is process-wide;
    only this adapter uses sippy, and it parses exactly as before: only the serialisation of an unmodified
    value changes. Runs in the sippy thread; idempotent."""
    from sippy.SipHeader import hf_types
    from sippy.SipRecordRoute import SipRecordRoute

    if getattr(hf_types.get("record-route"), "verbatim_record_route", False):
        return

    class VerbatimRecordRoute(SipRecordRoute):  # type: ignore[misc]
        verbatim_record_route = True
        text: str | None = None
        """The value as received (``None`` for one we built); sent as is while the parsed address is unchanged."""
        parsed_as: str | None = None

        def __init__(self, body: str | None = None, address: Any = None) -> None:
            super().__init__(body=body, address=address)
            if body is not None:
                self.text = body.strip()

        def parse(self) -> None:
            super().parse()
            self.parsed_as = str(self.address.localStr())

        def localStr(self, local_addr: Any = None) -> str:  # noqa: N802 - sippy's API
            if self.text is not None and (not self.parsed or str(self.address.localStr()) == self.parsed_as):
                return self.text
            return str(super().localStr(local_addr))

        def getCopy(self) -> Any:  # noqa: N802 - sippy's API
            copy = super().getCopy()
            copy.text, copy.parsed_as = self.text, self.parsed_as
            return copy

    for name in VerbatimRecordRoute.hf_names:
        hf_types[name] = VerbatimRecordRoute


def exact_header(name: str, value: str) -> Any:
    """A header for sippy that keeps the spelling of ``name`` on the wire (sippy would send "X-span-channel";
    names are case-insensitive (RFC 3261 §7.3.1) but gateway configs and SIPp's ereg are not always)."""
    from sippy.SipGenericHF import SipGenericHF
    from sippy.SipHeader import SipHeader, hf_types

    if name.lower() in hf_types:
        return SipHeader(name=name, bodys=value)

    class _ExactName(SipGenericHF):  # type: ignore[misc]
        hf_names = (name.lower(),)

        def getCanName(self, _name: str, compact: bool = False) -> str:  # noqa: N802 - sippy's API
            return name

        def getCopy(self) -> Any:
            return _ExactName(self.body)

    return SipHeader(name=name, body=_ExactName(value))
