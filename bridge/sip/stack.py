"""The sippy adapter: the only code that touches sippy, and only from sippy's own thread.

sippy runs in one reactor thread (:mod:`bridge.sip.runtime`: :class:`SippyRuntime`, started once per process);
each :class:`SipStack` (one per :class:`SipService`) owns a transaction manager on its own UDP socket
(:mod:`bridge.sip.transport`) and is driven only through :meth:`SippyRuntime.call`.

Direction of the traffic:

* asyncio -> sippy: the service calls ``runtime.call(stack.method, ...)`` (``ED2.callFromThread``).
* sippy -> asyncio: the stack calls ``post(event)``, which the service implements with
  ``loop.call_soon_threadsafe``; the events are the small frozen dataclasses below (no sippy objects cross).

What the stack decides on its own, before anything reaches the engine (RFC 3261 §8.2 / §21.4): antiflood
(requests beyond the per-source budget are dropped silently; trunk gateways are exempt unless
``sip.antiflood_gateways``), then :func:`bridge.sip.screening.screen` (malformed requests get 400 or 505,
unsupported schemes, methods and extensions 416/501/405/420 to a trunk gateway and 403 to anyone else; see
that module for the order and the RFC 4475 cases), then sippy's own parse (what it cannot parse gets its 400).
Out-of-dialog requests from addresses that are not trunk gateways get 403, an INVITE for a number the engine
does not serve gets 404 (one without Contact then 400), OPTIONS gets 200, other served methods outside a
dialog get 405. Accepted INVITEs get 100 (sippy) and 180 (us) and are posted as :class:`Incoming`.

The stack sends over UDP only; a dialog whose next hop names TCP or TLS is sent over UDP to the address it came
through, and Record-Route values are kept byte for byte (:mod:`bridge.sip.transport` says why). A hang-up
sippy fails to send is logged as a warning and retried (:mod:`bridge.sip.dialogs`), never dropped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bridge.sip.antiflood import Antiflood
from bridge.sip.dialogs import HANGUP_ATTEMPTS, HANGUP_RETRY_S, body_text, calling_number, hangup_retry_delay
from bridge.sip.runtime import NullSipLogger, SippyRuntime, SipThread, guarded_callback
from bridge.sip.screening import ALLOWED_METHODS, Screening, Verdict, reply, reply_address, screen
from bridge.sip.transport import exact_header, normalize_transport, redirect_to_udp, transaction_manager

__all__ = [
    "HANGUP_ATTEMPTS",
    "HANGUP_RETRY_S",
    "Connected",
    "DialRequest",
    "Disconnected",
    "Failed",
    "Incoming",
    "Info",
    "OptionsReply",
    "Progress",
    "Reoffer",
    "SipStack",
    "SipThread",
    "SippyRuntime",
    "StackEvent",
]

log = logging.getLogger(__name__)

# --- events posted to the asyncio side --------------------------------------------------------------


@dataclass(frozen=True)
class StackEvent:
    token: int
    """The dialog the event is about (the number the service gave when it created it, or one we allocated for
    an inbound call); 0 for events not tied to a dialog."""


@dataclass(frozen=True)
class Incoming(StackEvent):
    call_id: str
    calling: str
    called: str
    display_name: str
    source: str
    sdp: str


@dataclass(frozen=True)
class Progress(StackEvent):
    status: int
    sdp: str


@dataclass(frozen=True)
class Connected(StackEvent):
    sdp: str


@dataclass(frozen=True)
class Failed(StackEvent):
    status: int
    reason: str


@dataclass(frozen=True)
class Disconnected(StackEvent):
    """The dialog ended on the far side's initiative (BYE, CANCEL) or by sippy itself (timeouts)."""

    reason: str


@dataclass(frozen=True)
class Info(StackEvent):
    content_type: str
    body: str


@dataclass(frozen=True)
class Reoffer(StackEvent):
    """A re-INVITE with a new offer; the service must call :meth:`SipStack.answer_update` or ``reject_update``."""

    sdp: str


@dataclass(frozen=True)
class OptionsReply(StackEvent):
    gateway: str
    probe: int
    status: int


@dataclass(frozen=True)
class DialRequest:
    """Everything the stack needs to send one INVITE (one route attempt)."""

    token: int
    call_id: str
    called: str
    calling: str
    display_name: str
    host: str
    port: int
    sdp: str
    username: str
    password: str
    extra_headers: tuple[tuple[str, str], ...]


class SipStack:
    """One SIP endpoint on one UDP socket. Every method runs in the sippy thread (see module docstring)."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        public_address: str,
        user_agent: str,
        acl: frozenset[str],
        accept_number: Callable[[str], bool],
        antiflood: Antiflood,
        post: Callable[[StackEvent], None],
        flood_gateways: bool = False,
    ) -> None:
        self.host, self.port = host, port
        self.public_address = public_address
        self.user_agent = user_agent
        self.acl = acl
        self.accept_number = accept_number
        self.antiflood = antiflood
        self.flood_gateways = flood_gateways
        self.post = post
        self._uas: dict[int, Any] = {}
        self._next_in = -1  # inbound dialogs get negative tokens, outbound ones come from the service (> 0)
        self._tm: Any = None
        self._hops: dict[str, tuple[str, int]] = {}
        """Call-ID -> the UDP address the dialog came through (see "Transports" in :mod:`bridge.sip.transport`)."""
        self.counters = {
            "requests": 0,
            "flood_dropped": 0,
            "bad_requests": 0,
            "forbidden": 0,
            "not_found": 0,
            "udp_fallback": 0,
            "hangup_retried": 0,
            "hangup_failed": 0,
        }

    # -- life cycle (sippy thread) --

    def open(self, done: Callable[[BaseException | None], None]) -> None:
        """Bind the socket and create the transaction manager; ``done(error)`` is called in this thread."""
        try:
            from sippy.SipConf import SipConf

            SipConf.my_uaname = self.user_agent
            SipConf.my_address = self.public_address  # From/Via defaults; process-wide in sippy
            SipConf.my_port = self.port
            gc = {"_sip_address": self.host, "_sip_port": self.port, "_sip_logger": NullSipLogger()}
            self._tm = transaction_manager(gc, self._on_request, screen=self._screen, udp_target=self._udp_target)
            gc["_sip_tm"] = self._tm
            self._gc = gc
        except BaseException as exc:
            done(exc)
            return
        done(None)

    def close(self, done: Callable[[], None]) -> None:
        """Forget every dialog and release the socket (callers hang up the live legs first)."""
        try:
            self._uas.clear()
            self._hops.clear()
            if self._tm is not None:
                self._tm.cp_timer.cancel()
                self._tm.l4r.shutdown()
                self._tm = None
        finally:
            done()

    # -- incoming datagrams --

    def _screen(self, data: Any, ra: Any, server: Any) -> Any:
        """Antiflood and :func:`bridge.sip.screening.screen`; returns what sippy should process (the screened
        text of a request, a response as it came) or ``None`` when the datagram was answered or dropped here."""
        if not isinstance(data, bytes | bytearray):
            return data
        if data.startswith(b"SIP/2.0 "):
            return data  # responses match our own transactions; sippy drops strays
        if len(data) < 32:
            return None  # keepalive CRLFs and junk (sippy ignores these too)
        self.counters["requests"] += 1
        source = ra.address[0]
        if (self.flood_gateways or source not in self.acl) and not self.antiflood.allow(source, time.monotonic()):
            self.counters["flood_dropped"] += 1
            return None
        screening = screen(bytes(data))
        if screening.verdict is not None:
            verdict = screening.verdict
            if verdict.policy and source not in self.acl:
                self.counters["forbidden"] += 1
                verdict = Verdict(403, "Forbidden")
            elif verdict.status == 400:
                self.counters["bad_requests"] += 1
            self._send(screening, verdict, ra, server)
            return None
        from sippy.SipRequest import SipRequest

        try:
            req = SipRequest(screening.text)
            req.getTIds()
            for name in ("via", "from", "to", "cseq", "call-id"):
                req.getHFBody(name)
            req.getRURI()
            req.getHFBody("via").getAddr()
            in_dialog = req.getHFBody("to").getTag() is not None
            if req.getMethod() == "INVITE" and in_dialog:
                req.getHFBody("contact").getUrl()  # the UA needs it; an initial INVITE is checked in _on_request
        except Exception as exc:
            self._reject_unparsable(screening, ra, server, getattr(exc, "sip_response", None))
            return None
        return screening.text

    def _send(self, screening: Screening, verdict: Verdict, ra: Any, server: Any) -> None:
        data = reply(screening, verdict)
        if data is not None:
            server.send_to(data, reply_address(screening, ra.address))

    def _reject_unparsable(self, screening: Screening, ra: Any, server: Any, ready: Any = None) -> None:
        """A 400 for what sippy cannot parse: sippy's own when it made one (it names the problem), else ours."""
        self.counters["bad_requests"] += 1
        if ready is not None:
            try:
                server.send_to(str(ready.localStr(server.getSIPaddr())).encode(), reply_address(screening, ra.address))
                return
            except Exception:
                log.debug("SIP stack: sippy's own 400 could not be sent; sending ours", exc_info=True)
        self._send(screening, Verdict(400, "Bad Request"), ra, server)

    def _on_request(self, req: Any, t: Any) -> Any:
        """Out-of-dialog requests (sippy routes in-dialog ones to their UA)."""
        method = req.getMethod()
        source = str(req.getSource()[0])
        if req.getHFBody("to").getTag() is not None:
            return (req.genResponse(481, "Call Leg/Transaction Does Not Exist"), None, None)
        if source not in self.acl:
            self.counters["forbidden"] += 1
            return (req.genResponse(403, "Forbidden"), None, None)
        if method == "OPTIONS":
            resp = req.genResponse(200, "OK")
            self._allow(resp)
            return (resp, None, None)
        if method != "INVITE":
            resp = req.genResponse(405, "Method Not Allowed")
            self._allow(resp)
            return (resp, None, None)
        called = str(req.getRURI().username or "")
        try:
            accepted = bool(called) and self.accept_number(called)
        except Exception:
            log.exception("accept_number(%r) failed", called)
            accepted = False
        if not accepted:
            self.counters["not_found"] += 1
            return (req.genResponse(404, "Not Found"), None, None)
        try:
            req.getHFBody("contact").getUrl()
        except Exception:  # an RFC 2543 INVITE may lack it (RFC 4475 3.4.1), but a dialog needs a remote target
            self.counters["bad_requests"] += 1
            return (req.genResponse(400, "Bad Request - missing Contact"), None, None)
        calling = calling_number(req)
        display = ""
        try:
            display = str(req.getHFBody("from").getUri().name or "")
        except Exception:
            display = ""
        token = self._next_in
        self._next_in -= 1
        info = (str(req.getHFBody("call-id")), calling, called, display, source)
        host, port = req.getSource()
        ua = self._new_ua(token, inbound=info, call_id=info[0], hop=(str(host), int(port)))
        return ua.recvRequest(req, t)

    def _allow(self, resp: Any) -> None:
        from sippy.SipHeader import SipHeader

        resp.appendHeader(SipHeader(name="allow", bodys=", ".join(ALLOWED_METHODS)))

    # -- dialogs --

    def _contact(self, user: str = "") -> Any:
        from sippy.SipAddress import SipAddress
        from sippy.SipContact import SipContact
        from sippy.SipURL import SipURL

        url = SipURL(username=user or None, host=self.public_address, port=self.port)
        return SipContact(address=SipAddress(url=url))

    def _new_ua(
        self,
        token: int,
        *,
        inbound: tuple[str, str, str, str, str] | None = None,
        username: str | None = None,
        password: str | None = None,
        next_hop: tuple[str, int] | None = None,
        call_id: str,
        hop: tuple[str, int],
    ) -> Any:
        """A sippy UA for one dialog; ``hop`` is the UDP address it came through (see :mod:`bridge.sip.transport`)."""
        from sippy.UA import UA

        def on_event(event: Any, ua: Any) -> None:
            try:
                self._on_ua_event(token, event, ua, inbound)
            except Exception:
                log.exception("SIP stack: error handling %s for dialog %d", type(event).__name__, token)

        def on_dead(ua: Any, *args: Any) -> None:
            if self._uas.get(token) is ua:
                del self._uas[token]
            self._hops.pop(call_id, None)

        ua = UA(
            self._gc,
            on_event,
            username=username,
            password=password,
            nh_address=next_hop,
            dead_cbs=(on_dead,),
        )
        ua.lContact = self._contact()
        ua.local_ua = None
        self._uas[token] = ua
        self._hops[call_id] = hop
        return ua

    def _on_ua_event(self, token: int, event: Any, ua: Any, inbound: tuple[str, str, str, str, str] | None) -> None:
        from sippy.CCEvents import (
            CCEventConnect,
            CCEventDisconnect,
            CCEventFail,
            CCEventInfo,
            CCEventPreConnect,
            CCEventRedirect,
            CCEventRing,
            CCEventTry,
            CCEventUpdate,
        )

        normalize_transport(ua)
        if isinstance(event, CCEventTry):
            if inbound is None:
                return
            body = event.getData()[3]
            ua.recvEvent(CCEventRing((180, "Ringing", None)))
            call_id, calling, called, display, source = inbound
            self.post(Incoming(token, call_id, calling, called, display, source, body_text(body)))
        elif isinstance(event, CCEventRing):
            code, _reason, body = event.getData()
            self.post(Progress(token, int(code), body_text(body)))
        elif isinstance(event, CCEventConnect | CCEventPreConnect):
            if inbound is not None:
                return  # the ACK of our 200 (or of a re-INVITE answer): nothing to tell
            code, _reason, body = event.getData()
            self.post(Connected(token, body_text(body)))
        elif isinstance(event, CCEventFail | CCEventRedirect):
            data = event.getData() or (0, "")
            self.post(Failed(token, int(data[0]) if data[0] else 0, str(data[1]) if len(data) > 1 else ""))
        elif isinstance(event, CCEventDisconnect):
            reason = ""
            if event.reason_rfc3326 is not None:
                reason = str(event.reason_rfc3326)
            self.post(Disconnected(token, reason or "normal"))
        elif isinstance(event, CCEventInfo):
            body = event.getData()
            ctype = ""
            if body is not None and body.mtype is not None:
                ctype = str(body.mtype.name if hasattr(body.mtype, "name") else body.mtype)
            self.post(Info(token, ctype, body_text(body)))
        elif isinstance(event, CCEventUpdate):
            self.post(Reoffer(token, body_text(event.getData())))

    # -- commands from the service (sippy thread) --

    def dial(self, request: DialRequest) -> None:
        from sippy.CCEvents import CCEventTry
        from sippy.MsgBody import MsgBody
        from sippy.SipCallId import SipCallId

        ua = self._new_ua(
            request.token,
            username=request.username or None,
            password=request.password or None,
            next_hop=(request.host, request.port),
            call_id=request.call_id,
            hop=(request.host, request.port),
        )
        call_id = SipCallId(body=request.call_id)
        event = CCEventTry(
            (call_id, request.calling, request.called, MsgBody(request.sdp), None, request.display_name or None)
        )
        event.extra_headers = tuple(exact_header(name, value) for name, value in request.extra_headers)
        ua.recvEvent(event)

    def answer(self, token: int, sdp: str) -> None:
        from sippy.CCEvents import CCEventConnect
        from sippy.MsgBody import MsgBody

        ua = self._uas.get(token)
        if ua is not None:
            ua.recvEvent(CCEventConnect((200, "OK", MsgBody(sdp))))

    answer_update = answer

    def reject(self, token: int, status: int, reason: str) -> None:
        from sippy.CCEvents import CCEventFail

        ua = self._uas.get(token)
        if ua is not None:
            ua.recvEvent(CCEventFail((status, reason)))

    reject_update = reject

    def hangup(self, token: int, attempt: int = 1) -> None:
        """BYE, CANCEL or a final error, whatever the dialog state needs (sippy decides).

        The service has already ended the leg when it calls this, so a failure here must not pass quietly:
        it is logged as a warning and retried after ``HANGUP_RETRY_S`` (doubling) up to ``HANGUP_ATTEMPTS``
        times, then logged as an error and counted in ``counters["hangup_failed"]``."""
        ua = self._uas.get(token)
        if ua is None or ua.isDead() or self._tm is None:
            return
        try:
            ua.disconnect()
        except Exception as exc:
            call_id = str(getattr(ua, "cId", "") or "?")
            delay = hangup_retry_delay(attempt)
            if delay is None:
                self.counters["hangup_failed"] += 1
                log.error(
                    "SIP stack: dialog %d (Call-ID %s) could not be hung up after %d attempts; the far end may "
                    "still be in the call: %s",
                    token,
                    call_id,
                    attempt,
                    exc,
                    exc_info=True,
                )
                return
            from sippy.Time.Timeout import Timeout

            self.counters["hangup_retried"] += 1
            log.warning(
                "SIP stack: hang-up of dialog %d (Call-ID %s) failed (%s); retry %d of %d in %.1f s",
                token,
                call_id,
                exc,
                attempt,
                HANGUP_ATTEMPTS - 1,
                delay,
            )
            Timeout(guarded_callback(self.hangup), delay, 1, token, attempt + 1)

    def _udp_target(self, msg: Any) -> bool:
        """:func:`bridge.sip.transport.redirect_to_udp` with this stack's hops, counted."""
        if not redirect_to_udp(msg, self._hops):
            return False
        self.counters["udp_fallback"] += 1
        return True

    def options(self, gateway: str, host: str, port: int, probe: int) -> None:
        """Send one out-of-dialog OPTIONS (keepalive); any final response is posted as :class:`OptionsReply`."""
        from sippy.SipAddress import SipAddress
        from sippy.SipCallId import SipCallId
        from sippy.SipFrom import SipFrom
        from sippy.SipRequest import SipRequest
        from sippy.SipURL import SipURL

        if self._tm is None:
            return
        fr0m = SipFrom(address=SipAddress(url=SipURL(username="keepalive", host=self.public_address, port=self.port)))
        fr0m.genTag()
        req = SipRequest(
            method="OPTIONS",
            ruri=SipURL(host=host, port=port),
            fr0m=fr0m,
            callid=SipCallId(),
            contact=self._contact(),
            target=((host, port), "udp"),
        )

        def on_response(resp: Any) -> None:
            code = int(resp.getSCode()[0])
            if code >= 200:
                self.post(OptionsReply(0, gateway, probe, code))

        self._tm.newTransaction(req, resp_cb=on_response)

    def live_dialogs(self) -> int:
        return len(self._uas)
