"""SIP service: the asyncio glue between the engine and the sippy thread (:mod:`bridge.sip.stack`).

The engine sees :class:`SipService` (dial/answer/reject/hangup/status, a leg's media endpoint, a dial's first
trunk group) and receives :mod:`bridge.sip.events` through ``on_event`` on the loop thread. Decisions live in
the pure cores: :mod:`bridge.sip.routing` (route plan, E1 ports, gateway health), :mod:`bridge.sip.antiflood`,
:mod:`bridge.sip.dtmf`, the leg table (:mod:`bridge.sip.leg`), each attempt's INVITE (:mod:`bridge.sip.calls`).
This module owns timers, tasks, the thread crossing and each leg's media (:mod:`bridge.sip.media`).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import time
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

from bridge.config import Config, TrunkGroupConfig, parse_host_port
from bridge.dnis.served import ServedNumbers
from bridge.rtp.sender import prioritise
from bridge.sip import PeerError, SipError
from bridge.sip.antiflood import Antiflood
from bridge.sip.calls import SPAN_CHANNEL_HEADER, Attempt, LegRuntime, invite_request
from bridge.sip.dtmf import parse_info_dtmf
from bridge.sip.events import IncomingCall, LegAnswered, LegDtmf, LegEnded, LegEvent, LegFailed, LegHold, LegRinging
from bridge.sip.leg import LegState, SipLeg
from bridge.sip.media import MediaEndpoint, MediaFactory, open_rtp_media
from bridge.sip.routing import NO_RESPONSE, GatewayHealth, PortMap, RouteAttempt, advances, plan_routes
from bridge.sip.runtime import log_task_failure, post_to_loop, resolve
from bridge.sip.stack import (
    Connected,
    Disconnected,
    Failed,
    Incoming,
    Info,
    OptionsReply,
    Progress,
    Reoffer,
    SippyRuntime,
    SipStack,
    SipThread,
    StackEvent,
)

log = logging.getLogger(__name__)


class SipService:
    """SIP trunks for the engine. Construct, ``await start()``, use, ``await stop()``.

    ``accept_number`` decides which Request-URI users inbound INVITEs may reach (default: ``[dnis]`` and
    rooms); it is called from the SIP thread, so it must be quick and thread-safe (a set lookup). ``media``
    opens the per-leg media (default: :func:`bridge.sip.media.open_rtp_media`, RTP from ``[sip] rtp_ports``).
    ``stack_factory`` and ``sip_thread`` replace the sippy adapter and its thread (unit tests inject fakes).
    One process may run several services (tests do), but sippy's User-Agent and default address are global.
    """

    def __init__(
        self,
        config: Config,
        *,
        on_event: Callable[[LegEvent], None],
        accept_number: Callable[[str], bool] | None = None,
        media: MediaFactory | None = None,
        stack_factory: Callable[..., SipStack] = SipStack,
        sip_thread: SipThread = SippyRuntime,
    ) -> None:
        self.config = config
        self._stack_factory = stack_factory
        self._thread = sip_thread
        self.on_event = on_event
        self.accept_number = accept_number or ServedNumbers.from_config(config).__contains__
        self.media_factory: MediaFactory = media or open_rtp_media(config)
        self.host, self.port = parse_host_port(config.sip.listen, "sip.listen")
        self.groups = {g.name: g for g in config.trunk_group}
        self.health = GatewayHealth(
            [gw for g in config.trunk_group for gw in g.gateways], timeout_s=self._options_timeout
        )
        e1_groups = [g for g in config.trunk_group if g.kind == "e1"]
        self.ports = {g.name: PortMap(g.name, spans=g.spans, channels_per_span=g.channels_per_span) for g in e1_groups}
        self._acl = frozenset(parse_host_port(gw, "gateway")[0] for g in config.trunk_group for gw in g.gateways)
        self._legs: dict[str, LegRuntime] = {}
        self._by_token: dict[int, LegRuntime] = {}
        self._attempts: dict[int, Attempt] = {}
        self._tokens = itertools.count(1)
        self._leg_ids = itertools.count(1)
        self._prefix = secrets.token_hex(3)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stack: SipStack | None = None
        self._keepalive: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.counters = {"dialed": 0, "answered_out": 0, "failed_out": 0, "incoming": 0, "route_advances": 0}

    @property
    def _options_timeout(self) -> float:
        return min(5.0, self.config.sip.options_interval_s)

    # --- life cycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind ``[sip] listen`` and start the OPTIONS keepalive. Raises :class:`SipError` if the port is taken."""
        self._loop = loop = asyncio.get_running_loop()
        self._thread.ensure()
        self._thread.call(prioritise, self.config.sip.media_priority, "the SIP thread")  # sip.media_priority
        stack = self._stack_factory(
            host=self.host,
            port=self.port,
            public_address=self.config.sip.public_address,
            user_agent=self.config.sip.user_agent,
            acl=self._acl,
            accept_number=self.accept_number,
            antiflood=Antiflood(limit=self.config.sip.antiflood_requests, window_s=self.config.sip.antiflood_window_s),
            post=lambda ev: post_to_loop(loop, self._on_stack_event, ev),
            flood_gateways=self.config.sip.antiflood_gateways,
        )
        opened: asyncio.Future[BaseException | None] = loop.create_future()
        self._thread.call(stack.open, lambda err: loop.call_soon_threadsafe(resolve, opened, err))
        error = await asyncio.wait_for(opened, 10)
        if error is not None:
            raise SipError(f"cannot listen on {self.config.sip.listen}: {error}") from error
        self._stack = stack
        if self.config.trunk_group:
            self._keepalive = loop.create_task(self._keepalive_loop(), name="sip-keepalive")
        log.info("SIP listening on %s (%d trunk groups)", self.config.sip.listen, len(self.groups))

    async def stop(self) -> None:
        """Hang up every live leg (BYE/CANCEL/480), give the requests a moment to leave, close the socket."""
        if self._stack is None:
            return
        for runtime in list(self._legs.values()):
            if not runtime.leg.is_final:
                self.hangup(runtime.leg, "shutdown")
        if self._keepalive is not None:
            self._keepalive.cancel()
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline and await self._ask(self._stack.live_dialogs) > 0:
            await asyncio.sleep(0.05)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for runtime in list(self._legs.values()):
            await self._close_media(runtime)
        assert self._loop is not None
        closed: asyncio.Future[None] = self._loop.create_future()
        loop = self._loop
        self._thread.call(self._stack.close, lambda: loop.call_soon_threadsafe(resolve, closed, None))
        await asyncio.wait_for(closed, 5)
        self._stack = None

    async def _ask(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` in the SIP thread and return its result."""
        assert self._loop is not None
        loop = self._loop
        fut: asyncio.Future[Any] = loop.create_future()
        self._thread.call(lambda: loop.call_soon_threadsafe(resolve, fut, fn()))
        return await asyncio.wait_for(fut, 5)

    # --- public API ---------------------------------------------------------------------------------

    def dial(self, *, called: str, calling: str, trunk_group: str | None = None, display_name: str = "") -> SipLeg:
        """Place an outbound call; progress arrives as LegRinging / LegAnswered / LegFailed events.

        ``trunk_group`` picks the first group (then the ``alternate`` groups); ``None`` tries every ``main``
        group first. Never raises for routing problems: they end as ``LegFailed`` with a readable cause.
        """
        if self._stack is None or self._loop is None:
            raise SipError("SIP service is not running")
        leg = SipLeg(
            leg_id=self._new_leg_id(),
            direction="out",
            calling=calling,
            called=called,
            state=LegState.DIALING,
            display_name=display_name,
        )
        runtime = LegRuntime(leg)
        self._legs[leg.leg_id] = runtime
        self.counters["dialed"] += 1
        self._spawn(self._run_outbound(runtime, trunk_group))
        return leg

    def answer(self, leg: SipLeg) -> None:
        """Answer an inbound leg (200 OK with our SDP answer) and start its media."""
        runtime = self._runtime(leg)
        if leg.state is not LegState.OFFERED:
            raise SipError(f"leg {leg.leg_id} cannot be answered in state {leg.state.value}")
        assert self._stack is not None
        self._thread.call(self._stack.answer, runtime.token, runtime.answer_sdp)
        leg.set_state(LegState.CONNECTED)
        self._spawn(self._start_media(runtime))

    def reject(self, leg: SipLeg, status: int, reason: str) -> None:
        """Refuse an inbound leg with a final error (404, 486, 503...)."""
        runtime = self._runtime(leg)
        if leg.state is not LegState.OFFERED:
            raise SipError(f"leg {leg.leg_id} cannot be rejected in state {leg.state.value}")
        if not 300 <= status <= 699:
            raise SipError(f"reject status must be 3xx-6xx, got {status}")
        assert self._stack is not None
        self._thread.call(self._stack.reject, runtime.token, status, reason)
        self._fail(runtime, reason, status)

    def hangup(self, leg: SipLeg, cause: str = "normal") -> None:
        """End a leg: BYE when connected, CANCEL while an outbound call rings, 480 for an unanswered inbound."""
        runtime = self._legs.get(leg.leg_id)
        if runtime is None or leg.is_final or self._stack is None:
            return
        if leg.state is LegState.OFFERED:
            self._thread.call(self._stack.reject, runtime.token, 480, "Temporarily Unavailable")
            self._fail(runtime, cause, 480)
        elif leg.state is LegState.CONNECTED:
            self._thread.call(self._stack.hangup, runtime.token)
            self._end(runtime, cause, "local")
        else:
            attempt = self._attempts.get(runtime.token)
            if attempt is not None and not attempt.outcome.done():
                attempt.outcome.set_result((-1, cause))
            self._thread.call(self._stack.hangup, runtime.token)
            self._fail(runtime, cause, 487)

    def status(self) -> dict[str, Any]:
        """Trunk groups with gateway health and (E1) the span/channel map; leg ids are this service's ids."""
        groups = []
        for group in self.config.trunk_group:
            gateways = [{"address": gw, "up": self.health.is_up(gw)} for gw in group.gateways]
            ports: list[dict[str, object]] = []
            if group.name in self.ports:
                down = not any(g["up"] for g in gateways)
                ports = self.ports[group.name].snapshot(down=down)
            groups.append(
                {"name": group.name, "kind": group.kind, "role": group.role, "gateways": gateways, "ports": ports}
            )
        live = sum(1 for r in self._legs.values() if not r.leg.is_final)
        return {"listen": self.config.sip.listen, "trunk_groups": groups, "legs": live, **self.counters}

    def legs(self) -> list[SipLeg]:
        return [r.leg for r in self._legs.values()]

    def media_endpoint(self, leg: SipLeg) -> MediaEndpoint | None:
        """The leg's endpoint for the media owner (a leg carries none); open from before the INVITE/180 to the end."""
        runtime = self._legs.get(leg.leg_id)
        return runtime.media.endpoint if runtime is not None and runtime.media is not None else None

    def first_group(self, number: str) -> str | None:
        """The group a dial placed now leaves on first (the dial pacer's bucket); None: no gateway is up."""
        plan = plan_routes(self.config.trunk_group, first_group=None, is_up=self.health.is_up)
        return plan[0].group if plan else None

    # --- outbound -----------------------------------------------------------------------------------

    async def _run_outbound(self, runtime: LegRuntime, first_group: str | None) -> None:
        leg = runtime.leg
        if first_group is not None and first_group not in self.groups:
            self._fail(runtime, f"unknown trunk group {first_group!r}", 404)
            return
        plan = plan_routes(self.config.trunk_group, first_group=first_group, is_up=self.health.is_up)
        if not plan:
            self._fail(runtime, "no trunk gateway available (all down or none configured)", 503)
            return
        # The media opens once per leg, before the first INVITE: it follows the first group's settings
        # (in-band DTMF detection) even if the call advances to another group.
        leg.trunk_group = plan[0].group
        try:
            runtime.media = await self.media_factory(
                leg,
                lambda digit, source: self._dtmf(runtime, digit, source),
                lambda: self._media_timeout(runtime),
            )
        except Exception as exc:
            log.exception("leg %s: cannot open media", leg.leg_id)
            self._fail(runtime, f"no media port: {exc}", 503)
            return
        if leg.is_final:  # hung up while the media opened
            await self._close_media(runtime)
            return
        loop = asyncio.get_running_loop()
        # One ring budget for the whole call, whatever the number of routes: the engine's "no answer" time.
        deadline = loop.time() + self.config.conference.ring_timeout_s
        status, cause = 503, "no route"
        for number, route in enumerate(plan):
            if leg.is_final:
                return
            if number:
                self.counters["route_advances"] += 1
            group = self.groups[route.group]
            leg.port_id = ""  # set again below for an E1 route; a finished leg keeps its last port (CDR)
            extra: list[tuple[str, str]] = []
            ports = self.ports.get(group.name)
            if ports is not None:
                port = ports.allocate(leg.leg_id)
                if port is None:
                    status, cause = 503, f"trunk group {group.name} full ({ports.capacity} E1 channels busy)"
                    continue
                leg.port_id = f"{port[0]}:{port[1]}"
                extra.append((SPAN_CHANNEL_HEADER, f"{port[0]}/{port[1]}"))
            status, cause = await self._attempt(runtime, group, route, extra, deadline)
            if status == 200 or leg.is_final:
                return
            self._release_port(runtime)
            if status == -2:  # ring timeout: the callee did not answer, do not try elsewhere
                self._fail(runtime, "no answer", 487)
                return
            if not advances(status):
                break
            log.info(
                "leg %s: %s via %s failed (%s %s), advancing", leg.leg_id, route.group, route.gateway, status, cause
            )
        self.counters["failed_out"] += 1
        self._fail(runtime, cause, status)

    async def _attempt(
        self,
        runtime: LegRuntime,
        group: TrunkGroupConfig,
        route: RouteAttempt,
        extra: list[tuple[str, str]],
        deadline: float,
    ) -> tuple[int, str]:
        """One INVITE to one gateway; returns (status, cause): 200 connected, -2 ring timeout."""
        assert self._stack is not None and runtime.media is not None
        leg = runtime.leg
        loop = asyncio.get_running_loop()
        token = next(self._tokens)
        attempt = Attempt(token, leg, route, loop.create_future())
        self._attempts[token] = attempt
        self._by_token[token] = runtime
        runtime.token = token
        runtime.group = group
        leg.trunk_group, leg.gateway = group.name, route.gateway
        leg.call_id = f"{uuid.uuid4().hex}@{self.config.sip.public_address}"
        if leg.state is LegState.RINGING:
            leg.set_state(LegState.DIALING)
        request = invite_request(
            leg, group, route, token=token, sdp=runtime.media.offer(), public_address=self.config.sip.public_address,
            extra=extra,
        )  # fmt: skip
        self._thread.call(self._stack.dial, request)
        invite_timeout = self.config.sip.invite_timeout_s
        try:
            try:
                return await asyncio.wait_for(asyncio.shield(attempt.outcome), invite_timeout)
            except TimeoutError:
                if not attempt.responded:
                    self._thread.call(self._stack.hangup, token)
                    return NO_RESPONSE, f"no response from {route.gateway}"
            remaining = max(0.0, deadline - loop.time())
            try:
                return await asyncio.wait_for(asyncio.shield(attempt.outcome), remaining)
            except TimeoutError:
                self._thread.call(self._stack.hangup, token)
                return -2, "no answer"
        finally:
            self._attempts.pop(token, None)

    # --- events from the SIP thread -----------------------------------------------------------------

    def _on_stack_event(self, event: StackEvent) -> None:
        try:
            self._dispatch(event)
        except Exception:
            log.exception("SIP service: error handling %s", event)

    def _dispatch(self, event: StackEvent) -> None:
        if isinstance(event, OptionsReply):
            if self.health.reply(event.gateway, event.probe, time.monotonic()):
                log.warning("gateway %s is up again", event.gateway)
            return
        if isinstance(event, Incoming):
            self._incoming(event)
            return
        attempt = self._attempts.get(event.token)
        if attempt is not None:
            self._attempt_event(attempt, event)
            return
        runtime = self._by_token.get(event.token)
        if runtime is None or runtime.token != event.token or runtime.leg.is_final:
            return  # a retired attempt, or a leg we already ended
        leg = runtime.leg
        if isinstance(event, Disconnected):
            if leg.state is LegState.OFFERED:
                self._fail(runtime, "caller cancelled", 487)
            elif leg.state is LegState.CONNECTED:
                self._end(runtime, event.reason, "remote")
        elif isinstance(event, Failed):
            if leg.state is LegState.OFFERED:
                self._fail(runtime, event.reason or "failed", event.status)
            elif leg.state is LegState.CONNECTED:
                self._end(runtime, event.reason or "failed", "remote")
        elif isinstance(event, Info):
            digit = parse_info_dtmf(event.content_type, event.body)
            if digit is not None:
                self._dtmf(runtime, digit, "info")
        elif isinstance(event, Reoffer):
            self._reoffer(runtime, event.sdp)

    def _attempt_event(self, attempt: Attempt, event: StackEvent) -> None:
        runtime = self._by_token.get(attempt.token)
        leg = attempt.leg
        if attempt.outcome.done() or runtime is None:
            return  # the engine hung up meanwhile; late events of this dialog mean nothing
        if isinstance(event, Progress):
            attempt.responded = True
            if event.status >= 180 and leg.state is LegState.DIALING:
                leg.set_state(LegState.RINGING)
                self._emit(LegRinging(leg))
        elif isinstance(event, Connected):
            assert runtime.media is not None
            try:
                runtime.media.accept_answer(event.sdp)
            except PeerError as exc:
                assert self._stack is not None
                self._thread.call(self._stack.hangup, attempt.token)
                attempt.outcome.set_result((exc.status, f"unusable SDP answer: {exc}"))
                return
            attempt.outcome.set_result((200, "answered"))
            leg.set_state(LegState.CONNECTED)
            self.counters["answered_out"] += 1
            self._emit(LegAnswered(leg))
            self._spawn(self._start_media(runtime, announce=False))
        elif isinstance(event, Failed):
            attempt.outcome.set_result((event.status, f"{event.status} {event.reason}".strip()))
        elif isinstance(event, Disconnected):
            attempt.outcome.set_result((NO_RESPONSE, event.reason or "disconnected"))

    def _incoming(self, event: Incoming) -> None:
        assert self._stack is not None
        group = next(
            (g for g in self.config.trunk_group for gw in g.gateways if gw.rpartition(":")[0] == event.source),
            None,
        )
        leg = SipLeg(
            leg_id=self._new_leg_id(),
            direction="in",
            calling=event.calling,
            called=event.called,
            state=LegState.OFFERED,
            call_id=event.call_id,
            trunk_group=group.name if group else "",
            gateway=event.source,
            display_name=event.display_name,
        )
        runtime = LegRuntime(leg, token=event.token, group=group)
        self._legs[leg.leg_id] = runtime
        self._by_token[event.token] = runtime
        self.counters["incoming"] += 1
        self._spawn(self._offer_incoming(runtime, event.sdp))

    async def _offer_incoming(self, runtime: LegRuntime, offer: str) -> None:
        assert self._stack is not None
        leg = runtime.leg
        try:
            runtime.media = await self.media_factory(
                leg,
                lambda digit, source: self._dtmf(runtime, digit, source),
                lambda: self._media_timeout(runtime),
            )
            runtime.answer_sdp = runtime.media.answer(offer)
        except PeerError as exc:
            # An INVITE without SDP (late offer) lands here too: we only take offers in the INVITE.
            status = exc.status if offer.strip() else 488
            reason = "Bad Request" if status == 400 else "Not Acceptable Here"
            self._thread.call(self._stack.reject, runtime.token, status, reason)
            leg.set_state(LegState.FAILED)
            leg.cause = f"unusable SDP offer: {exc}"
            await self._close_media(runtime)
            self._forget(runtime)
            return
        except Exception as exc:
            log.exception("leg %s: cannot open media", leg.leg_id)
            self._thread.call(self._stack.reject, runtime.token, 503, "Service Unavailable")
            leg.set_state(LegState.FAILED)
            leg.cause = f"no media port: {exc}"
            await self._close_media(runtime)
            self._forget(runtime)
            return
        if leg.is_final:  # the caller cancelled while we opened the media; nobody was told about the leg
            await self._close_media(runtime)
            self._forget(runtime)
            return
        self._emit(IncomingCall(leg))

    def _reoffer(self, runtime: LegRuntime, sdp: str) -> None:
        assert self._stack is not None and runtime.media is not None
        leg = runtime.leg
        try:
            answer, on_hold = runtime.media.reoffer(sdp)
        except PeerError as exc:
            self._thread.call(self._stack.reject_update, runtime.token, exc.status, "Not Acceptable Here")
            return
        self._thread.call(self._stack.answer_update, runtime.token, answer)
        if on_hold != leg.on_hold:
            leg.on_hold = on_hold
            self._emit(LegHold(leg, on_hold))

    # --- helpers ------------------------------------------------------------------------------------

    def _dtmf(self, runtime: LegRuntime, digit: str, source: str) -> None:
        if runtime.leg.state is LegState.CONNECTED and source in ("rfc4733", "info", "inband"):
            self._emit(LegDtmf(runtime.leg, digit, source))  # type: ignore[arg-type]

    def _media_timeout(self, runtime: LegRuntime) -> None:
        if runtime.leg.state is LegState.CONNECTED:
            self.hangup(runtime.leg, "rtp timeout")

    async def _start_media(self, runtime: LegRuntime, *, announce: bool = True) -> None:
        if runtime.media is not None:
            await runtime.media.start()
        if announce and runtime.leg.state is LegState.CONNECTED:
            self._emit(LegAnswered(runtime.leg))

    def _fail(self, runtime: LegRuntime, cause: str, status: int) -> None:
        leg = runtime.leg
        if leg.is_final:
            return
        leg.set_state(LegState.FAILED)
        leg.cause = cause
        self._emit(LegFailed(leg, cause, status))
        self._finish(runtime)

    def _end(self, runtime: LegRuntime, cause: str, by: str) -> None:
        leg = runtime.leg
        if leg.is_final:
            return
        leg.set_state(LegState.ENDED)
        leg.cause = cause
        self._emit(LegEnded(leg, cause, by))  # type: ignore[arg-type]
        self._finish(runtime)

    def _finish(self, runtime: LegRuntime) -> None:
        self._release_port(runtime)
        if self._loop is not None and not self._loop.is_closed():
            task = self._loop.create_task(self._close_media(runtime))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        self._forget(runtime)

    def _forget(self, runtime: LegRuntime) -> None:
        self._legs.pop(runtime.leg.leg_id, None)
        for token in [t for t, r in self._by_token.items() if r is runtime]:
            del self._by_token[token]

    def _release_port(self, runtime: LegRuntime) -> None:
        for ports in self.ports.values():
            ports.release(runtime.leg.leg_id)

    async def _close_media(self, runtime: LegRuntime) -> None:
        media, runtime.media = runtime.media, None
        if media is not None:
            try:
                await media.close()
            except Exception:
                log.exception("leg %s: error closing media", runtime.leg.leg_id)

    def _emit(self, event: LegEvent) -> None:
        try:
            self.on_event(event)
        except Exception:
            log.exception("on_event handler failed for %s", type(event).__name__)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        assert self._loop is not None
        task: asyncio.Task[None] = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(log_task_failure)

    def _runtime(self, leg: SipLeg) -> LegRuntime:
        runtime = self._legs.get(leg.leg_id)
        if runtime is None:
            raise SipError(f"unknown or finished leg {leg.leg_id}")
        return runtime

    def _new_leg_id(self) -> str:
        return f"{self._prefix}-{next(self._leg_ids)}"

    async def _keepalive_loop(self) -> None:
        interval = self.config.sip.options_interval_s
        next_probe = time.monotonic() + interval  # the first probe after one interval: start-up stays quiet
        while True:
            now = time.monotonic()
            for gateway in self.health.expire(now):
                log.warning("gateway %s marked down (no answer to OPTIONS)", gateway)
            if now >= next_probe and self._stack is not None:
                next_probe = now + interval
                for gateway in {gw for g in self.config.trunk_group for gw in g.gateways}:
                    host, port = parse_host_port(gateway, "gateway")
                    probe = self.health.probe_sent(gateway, now)
                    self._thread.call(self._stack.options, gateway, host, port, probe)
            await asyncio.sleep(min(0.5, interval / 4))

