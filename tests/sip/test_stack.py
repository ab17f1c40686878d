"""The sippy adapter (:class:`bridge.sip.stack.SipStack`) against a scripted peer on a loopback UDP socket.

The peer plays a UDP-only proxy or gateway in front of the bridge; each test checks what reaches the wire:
that a BYE the bridge sends always leaves, over UDP, to the hop the dialog came through, whatever transport
the route set or the remote target names (RFC 3261 §12.2.1.1 keeps the route set; we only choose the socket),
and that Record-Route values are copied into responses unchanged (RFC 3261 §12.1.1).
"""

from __future__ import annotations

import logging
import queue
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from bridge.sip.antiflood import Antiflood
from bridge.sip.stack import DialRequest, Incoming, SippyRuntime, SipStack, StackEvent

HOST = "127.0.0.1"
SDP = "v=0\r\no=peer 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\n"


def in_sippy_thread(fn: Callable[[], Any]) -> Any:
    SippyRuntime.ensure()
    done = threading.Event()
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(fn())
        finally:
            done.set()

    SippyRuntime.call(run)
    assert done.wait(10)
    return out[0] if out else None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


class Peer:
    """A UDP socket that speaks SIP by hand: sends what the test writes, returns what the bridge sent."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((HOST, 0))
        self.sock.settimeout(5.0)
        self.port = int(self.sock.getsockname()[1])

    def send(self, text: str, port: int) -> None:
        self.sock.sendto(text.encode(), (HOST, port))

    def expect(self, first_line: str) -> str:
        """The next message whose start line begins with ``first_line`` (others, retransmissions, skipped)."""
        while True:
            try:
                data, _ = self.sock.recvfrom(65535)
            except TimeoutError:
                raise AssertionError(f"nothing starting with {first_line!r} reached the peer") from None
            text = data.decode()
            if text.startswith(first_line):
                return text

    def close(self) -> None:
        self.sock.close()


class Bridge:
    def __init__(self, stack: SipStack, events: queue.Queue[StackEvent]) -> None:
        self.stack, self.events = stack, events

    def event(self, kind: type[StackEvent]) -> Any:
        while True:
            ev = self.events.get(timeout=5)
            if isinstance(ev, kind):
                return ev


@pytest.fixture
def bridge() -> Iterator[Bridge]:
    events: queue.Queue[StackEvent] = queue.Queue()
    stack = SipStack(
        host=HOST,
        port=free_port(),
        public_address=HOST,
        user_agent="test-bridge",
        acl=frozenset({HOST}),
        accept_number=lambda number: True,
        antiflood=Antiflood(limit=1000, window_s=1.0),
        post=events.put,
    )
    errors: list[BaseException | None] = []
    in_sippy_thread(lambda: stack.open(errors.append))
    assert errors == [None]
    yield Bridge(stack, events)
    closed = threading.Event()
    SippyRuntime.call(stack.close, closed.set)
    assert closed.wait(5)


@pytest.fixture
def peer() -> Iterator[Peer]:
    p = Peer()
    yield p
    p.close()


def header(msg: str, name: str) -> list[str]:
    out = []
    for line in msg.split("\r\n\r\n", 1)[0].split("\r\n")[1:]:
        key, _, value = line.partition(":")
        if key.strip().lower() == name.lower():
            out.append(value.strip())
    return out


def invite(peer: Peer, bridge_port: int, *, call_id: str, contact: str, record_routes: list[str]) -> str:
    rr = "".join(f"Record-Route: {value}\r\n" for value in record_routes)
    return (
        f"INVITE sip:5550100@{HOST}:{bridge_port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {HOST}:{peer.port};branch=z9hG4bK{uuid.uuid4().hex}\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:alice@{HOST}>;tag=peer1\r\n"
        f"To: <sip:5550100@{HOST}>\r\n"
        f"Call-ID: {call_id}\r\n"
        "CSeq: 1 INVITE\r\n"
        f"Contact: {contact}\r\n"
        f"{rr}"
        "Content-Type: application/sdp\r\n"
        f"Content-Length: {len(SDP)}\r\n\r\n{SDP}"
    )


def ack_for(ok: str, peer: Peer, bridge_port: int, call_id: str) -> str:
    to = header(ok, "to")[0]
    return (
        f"ACK sip:{HOST}:{bridge_port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {HOST}:{peer.port};branch=z9hG4bK{uuid.uuid4().hex}\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:alice@{HOST}>;tag=peer1\r\n"
        f"To: {to}\r\n"
        f"Call-ID: {call_id}\r\n"
        "CSeq: 1 ACK\r\n"
        "Content-Length: 0\r\n\r\n"
    )


def ok_for(request: str, *, contact: str, record_routes: list[str], sdp: str = "") -> str:
    """A 200 for ``request`` (a BYE, or an INVITE when ``sdp`` is given), with a To tag."""
    lines = [f"Via: {v}" for v in header(request, "via")]
    to = header(request, "to")[0]
    if ";tag=" not in to:
        to += ";tag=peer2"
    rr = "".join(f"Record-Route: {value}\r\n" for value in record_routes)
    body = f"Content-Type: application/sdp\r\nContent-Length: {len(sdp)}\r\n\r\n{sdp}" if sdp else ""
    return (
        "SIP/2.0 200 OK\r\n"
        + "".join(line + "\r\n" for line in lines)
        + f"From: {header(request, 'from')[0]}\r\nTo: {to}\r\n"
        + f"Call-ID: {header(request, 'call-id')[0]}\r\nCSeq: {header(request, 'cseq')[0]}\r\n"
        + f"Contact: {contact}\r\n{rr}"
        + (body or "Content-Length: 0\r\n\r\n")
    )


def answered_inbound(bridge: Bridge, peer: Peer, *, contact: str, record_routes: list[str]) -> tuple[str, str, int]:
    """INVITE from the peer, answered by the bridge and ACKed: (call-id, the 200, the dialog's token)."""
    call_id = uuid.uuid4().hex
    port = bridge.stack.port
    peer.send(invite(peer, port, call_id=call_id, contact=contact, record_routes=record_routes), port)
    ringing = peer.expect("SIP/2.0 180 ")
    assert header(ringing, "record-route") == record_routes
    incoming = bridge.event(Incoming)
    SippyRuntime.call(bridge.stack.answer, incoming.token, SDP)
    ok = peer.expect("SIP/2.0 200 ")
    peer.send(ack_for(ok, peer, port, call_id), port)
    return call_id, ok, incoming.token


# --- the bridge hangs up: the BYE leaves over UDP whatever the next hop's transport says -----------------


def test_bye_for_single_tcp_record_route_goes_over_udp_to_the_proxy(bridge: Bridge, peer: Peer) -> None:
    """Issue 21: a proxy that record-routes once with ;transport=tcp (it took the call over TCP and relays it
    to us over UDP). sippy cannot open TCP; the BYE goes to the proxy over UDP, Route set unchanged."""
    rr = f"<sip:{HOST}:{free_port()};transport=tcp;lr=on>"
    _call_id, ok, token = answered_inbound(
        bridge, peer, contact=f"<sip:alice@{HOST}:5099;transport=tcp>", record_routes=[rr]
    )
    assert header(ok, "record-route") == [rr]  # RFC 3261 §12.1.1: copied unchanged (sippy wrote ";lr")
    SippyRuntime.call(bridge.stack.hangup, token)
    bye = peer.expect("BYE ")
    assert bye.startswith(f"BYE sip:alice@{HOST}:5099;transport=tcp SIP/2.0\r\n")
    assert header(bye, "route") == [rr]
    peer.send(ok_for(bye, contact=f"<sip:alice@{HOST}:5099;transport=tcp>", record_routes=[]), bridge.stack.port)


def test_bye_without_record_route_to_a_tcp_contact_goes_over_udp_to_the_source(bridge: Bridge, peer: Peer) -> None:
    """No Record-Route and a Contact with ;transport=tcp: the BYE goes where the INVITE came from, over UDP,
    with the Contact as Request-URI (the non-record-routing proxy in between forwards it over TCP)."""
    contact = f"<sip:alice@{HOST}:5099;transport=TCP>"
    _call_id, _ok, token = answered_inbound(bridge, peer, contact=contact, record_routes=[])
    SippyRuntime.call(bridge.stack.hangup, token)
    bye = peer.expect("BYE ")
    assert bye.startswith(f"BYE sip:alice@{HOST}:5099;transport=tcp SIP/2.0\r\n")
    assert header(bye, "route") == []


def test_bye_for_double_record_route_follows_the_udp_route(bridge: Bridge, peer: Peer) -> None:
    """Kamailio's default when transports differ: two Record-Routes, the one facing us UDP; nothing changes."""
    rrs = [f"<sip:{HOST}:{peer.port};r2=on;lr=on>", f"<sip:{HOST}:{free_port()};transport=tcp;r2=on;lr=on>"]
    _call_id, ok, token = answered_inbound(
        bridge, peer, contact=f"<sip:alice@{HOST}:5099;transport=tcp>", record_routes=rrs
    )
    assert header(ok, "record-route") == rrs
    SippyRuntime.call(bridge.stack.hangup, token)
    bye = peer.expect("BYE ")
    assert header(bye, "route") == rrs


def test_outbound_dialog_through_a_tcp_record_route_is_acked_and_ended_over_udp(bridge: Bridge, peer: Peer) -> None:
    """The bridge dials through the proxy; its 200 record-routes with ;transport=tcp on a port that is not the
    one we sent the INVITE to: the ACK and the BYE still go to the proxy's UDP address."""
    rr = f"<sip:{HOST}:{free_port()};transport=tcp;lr=on>"
    request = DialRequest(
        token=7,
        call_id=uuid.uuid4().hex,
        called="5551234",
        calling="5550100",
        display_name="",
        host=HOST,
        port=peer.port,
        sdp=SDP,
        username="",
        password="",
        extra_headers=(),
    )
    SippyRuntime.call(bridge.stack.dial, request)
    inv = peer.expect("INVITE ")
    contact = f"<sip:5551234@{HOST}:5099;transport=tcp>"
    peer.send(ok_for(inv, contact=contact, record_routes=[rr], sdp=SDP), bridge.stack.port)
    ack = peer.expect("ACK ")
    assert header(ack, "route") == [rr]
    SippyRuntime.call(bridge.stack.hangup, 7)
    bye = peer.expect("BYE ")
    assert bye.startswith(f"BYE sip:5551234@{HOST}:5099;transport=tcp SIP/2.0\r\n")
    assert header(bye, "route") == [rr]


# --- a hang-up that fails in sippy is retried, loudly ----------------------------------------------------


def test_failed_hangup_is_logged_and_retried(
    bridge: Bridge, peer: Peer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The engine has already ended the leg (API, CDR) when it asks for the BYE: if sippy fails to send it,
    the stack warns and tries again instead of leaving the phone in a dialog nobody owns."""
    from sippy.UA import UA

    _call_id, _ok, token = answered_inbound(bridge, peer, contact=f"<sip:alice@{HOST}:{peer.port}>", record_routes=[])
    real = UA.disconnect
    failures = [RuntimeError("injected: the socket is gone")]

    def flaky(self: Any, *args: Any, **kwargs: Any) -> Any:
        if failures:
            raise failures.pop()
        return real(self, *args, **kwargs)

    monkeypatch.setattr(UA, "disconnect", flaky)
    with caplog.at_level(logging.WARNING, logger="bridge.sip.stack"):
        SippyRuntime.call(bridge.stack.hangup, token)
        bye = peer.expect("BYE ")
    assert bye.startswith("BYE ")
    assert any("retry" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
