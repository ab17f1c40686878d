"""SipService glue driven with a fake stack (no sockets, no sippy): route advance by status, E1 port
bookkeeping, hangup/reject/answer plumbing, inbound events. The real stack is covered by tests/integration."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from bridge.config import Config, from_dict
from bridge.sip import PeerError
from bridge.sip.events import (
    IncomingCall,
    LegAnswered,
    LegDtmf,
    LegEnded,
    LegEvent,
    LegFailed,
    LegHold,
    LegRinging,
)
from bridge.sip.leg import LegState, SipLeg
from bridge.sip.service import SipService
from bridge.sip.stack import Connected, DialRequest, Disconnected, Failed, Incoming, Info, Progress, Reoffer

OFFER = "v=0\r\nc=IN IP4 10.0.0.9\r\nm=audio 4000 RTP/AVP 0\r\n"


class FakeThread:
    def ensure(self) -> None:
        pass

    def call(self, fn: Callable[..., Any], *args: Any) -> None:
        fn(*args)


class FakeStack:
    def __init__(self, **kwargs: Any) -> None:
        self.post: Callable[[Any], None] = kwargs["post"]
        self.accept_number = kwargs["accept_number"]
        self.calls: list[tuple[Any, ...]] = []
        self.dials: list[DialRequest] = []

    def open(self, done: Callable[[BaseException | None], None]) -> None:
        done(None)

    def close(self, done: Callable[[], None]) -> None:
        done()

    def live_dialogs(self) -> int:
        return 0

    def dial(self, request: DialRequest) -> None:
        self.dials.append(request)

    def __getattr__(self, name: str) -> Callable[..., None]:  # answer, reject, hangup, options, ...
        return lambda *args: self.calls.append((name, *args))


class FakeMedia:
    endpoint: object = None

    def __init__(self, *, bad_offer: bool = False) -> None:
        self.bad_offer = bad_offer
        self.started = self.closed = False

    def offer(self) -> str:
        return "offer-sdp"

    def answer(self, offer: str) -> str:
        if self.bad_offer:
            raise PeerError("no codec in common", status=488)
        return "answer-sdp"

    def accept_answer(self, answer: str) -> None:
        pass

    def reoffer(self, offer: str) -> tuple[str, bool]:
        return "re-answer", "sendonly" in offer

    async def start(self) -> None:
        self.started = True

    async def close(self) -> None:
        self.closed = True


def config(**sip: Any) -> Config:
    return from_dict(
        {
            "sip": {"listen": "127.0.0.1:5060", "invite_timeout_s": 5.0, **sip},
            "dnis": {"common": "5550100"},
            "trunk_group": [
                {"name": "a", "gateways": ["10.0.0.1:5060", "10.0.0.2:5060"], "username": "u", "password": "p"},
                {"name": "e1", "kind": "e1", "role": "alternate", "gateways": ["10.0.1.1:5060"],
                 "spans": 1, "channels_per_span": 2},
            ],
            "conference": {"ring_timeout_s": 5.0},
        }
    )  # fmt: skip


class Harness:
    def __init__(self, cfg: Config, media: FakeMedia | None = None, open_media: Any = None) -> None:
        open_media_override = open_media
        self.events: list[LegEvent] = []
        self.medias: list[FakeMedia] = []
        self.stack: FakeStack | None = None

        async def open_media(leg: SipLeg, on_dtmf: Any, on_timeout: Any) -> FakeMedia:
            m = media or FakeMedia()
            self.medias.append(m)
            return m

        def make_stack(**kwargs: Any) -> FakeStack:
            self.stack = FakeStack(**kwargs)
            return self.stack

        self.service = SipService(
            cfg,
            on_event=self.events.append,
            media=open_media_override or open_media,
            stack_factory=make_stack,  # type: ignore[arg-type]
            sip_thread=FakeThread(),
        )

    def kinds(self) -> list[type]:
        return [type(e) for e in self.events]


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


def run(test: Callable[[Harness], Coroutine[Any, Any, None]], cfg: Config | None = None, **kw: Any) -> None:
    async def main() -> None:
        harness = Harness(cfg or config(), **kw)
        await harness.service.start()
        try:
            await test(harness)
        finally:
            await harness.service.stop()

    asyncio.run(main())


def test_503_advances_to_next_gateway_then_connects() -> None:
    async def test(h: Harness) -> None:
        leg = h.service.dial(called="15557654321", calling="+15551230001", display_name="Conf")
        await settle()
        assert h.stack is not None
        first = h.stack.dials[0]
        assert (first.host, first.port, first.calling, first.called) == (
            "10.0.0.1",
            5060,
            "+15551230001",
            "15557654321",
        )
        assert (first.username, first.password) == ("u", "p")
        assert ("P-Asserted-Identity", '"Conf" <sip:+15551230001@127.0.0.1>') in first.extra_headers
        h.stack.post(Progress(first.token, 180, ""))
        await settle()
        assert leg.state is LegState.RINGING
        h.stack.post(Failed(first.token, 503, "Service Unavailable"))
        await settle()
        second = h.stack.dials[1]
        assert second.host == "10.0.0.2" and second.call_id != first.call_id and leg.call_id == second.call_id
        assert leg.state is LegState.DIALING
        h.stack.post(Connected(second.token, "answer"))
        await settle()
        assert leg.state is LegState.CONNECTED and h.medias[0].started
        assert h.kinds() == [LegRinging, LegAnswered]
        assert h.service.counters["route_advances"] == 1

    run(test)


def test_busy_does_not_advance() -> None:
    async def test(h: Harness) -> None:
        leg = h.service.dial(called="1", calling="2")
        await settle()
        assert h.stack is not None
        h.stack.post(Failed(h.stack.dials[0].token, 486, "Busy Here"))
        await settle()
        assert len(h.stack.dials) == 1 and leg.state is LegState.FAILED
        (failed,) = [e for e in h.events if isinstance(e, LegFailed)]
        assert (failed.status, failed.cause) == (486, "486 Busy Here")
        assert h.medias[0].closed

    run(test)


def test_every_route_fails_then_alternate_e1_group_with_span_header() -> None:
    async def test(h: Harness) -> None:
        leg = h.service.dial(called="1", calling="2")
        await settle()
        assert h.stack is not None
        for i in range(2):
            h.stack.post(Failed(h.stack.dials[i].token, 500 + i, "err"))
            await settle()
        e1 = h.stack.dials[2]
        assert e1.host == "10.0.1.1" and ("X-Span-Channel", "1/1") in e1.extra_headers
        assert leg.port_id == "1:1" and leg.trunk_group == "e1"
        h.stack.post(Failed(e1.token, 503, "down"))
        await settle()
        (failed,) = [e for e in h.events if isinstance(e, LegFailed)]
        assert failed.status == 503 and leg.port_id == "1:1"  # the last port used stays on the leg (CDR)
        ports = [g for g in h.service.status()["trunk_groups"] if g["name"] == "e1"][0]["ports"]
        assert [p["state"] for p in ports] == ["idle", "idle"]

    run(test)


def test_hangup_while_ringing_cancels() -> None:
    async def test(h: Harness) -> None:
        leg = h.service.dial(called="1", calling="2")
        await settle()
        assert h.stack is not None
        token = h.stack.dials[0].token
        h.stack.post(Progress(token, 180, ""))
        await settle()
        h.service.hangup(leg, "moderator kicked")
        await settle()
        assert ("hangup", token) in h.stack.calls
        assert h.kinds() == [LegRinging, LegFailed]
        failed = h.events[-1]
        assert isinstance(failed, LegFailed) and (failed.cause, failed.status) == ("moderator kicked", 487)
        h.stack.post(Failed(token, 487, "Request Terminated"))  # the late 487 changes nothing
        await settle()
        assert len(h.events) == 2 and len(h.stack.dials) == 1

    run(test)


def test_unknown_trunk_group_fails_cleanly() -> None:
    async def test(h: Harness) -> None:
        leg = h.service.dial(called="1", calling="2", trunk_group="nope")
        await settle()
        assert leg.state is LegState.FAILED and "unknown trunk group" in leg.cause

    run(test)


def test_inbound_answer_info_dtmf_hold_and_remote_bye() -> None:
    async def test(h: Harness) -> None:
        assert h.stack is not None
        h.stack.post(Incoming(-1, "cid@x", "+15551234567", "5550100", "Bob", "10.0.0.1", OFFER))
        await settle()
        (incoming,) = h.events
        assert isinstance(incoming, IncomingCall)
        leg = incoming.leg
        assert (leg.direction, leg.calling, leg.called, leg.call_id, leg.trunk_group) == (
            "in", "+15551234567", "5550100", "cid@x", "a",
        )  # fmt: skip
        h.service.answer(leg)
        await settle()
        assert ("answer", -1, "answer-sdp") in h.stack.calls and leg.state is LegState.CONNECTED
        h.stack.post(Info(-1, "application/dtmf-relay", "Signal=7\r\nDuration=160"))
        h.stack.post(Info(-1, "text/plain", "hello"))
        h.stack.post(Reoffer(-1, "a=sendonly"))
        await settle()
        assert ("answer_update", -1, "re-answer") in h.stack.calls
        h.stack.post(Disconnected(-1, "normal"))
        await settle()
        assert h.kinds() == [IncomingCall, LegAnswered, LegDtmf, LegHold, LegEnded]
        dtmf, hold, ended = h.events[2:]
        assert isinstance(dtmf, LegDtmf) and (dtmf.digit, dtmf.source) == ("7", "info")
        assert isinstance(hold, LegHold) and hold.on
        assert isinstance(ended, LegEnded) and ended.by == "remote"

    run(test)


def test_reject_sends_final_status() -> None:
    async def test(h: Harness) -> None:
        assert h.stack is not None
        h.stack.post(Incoming(-1, "cid@x", "+1555", "5550100", "", "10.0.0.1", OFFER))
        await settle()
        leg = h.events[0].leg
        h.service.reject(leg, 486, "Busy Here")
        assert ("reject", -1, 486, "Busy Here") in h.stack.calls
        assert isinstance(h.events[-1], LegFailed) and h.events[-1].status == 486
        with pytest.raises(Exception, match="unknown or finished leg"):
            h.service.answer(leg)

    run(test)


def test_unusable_offer_is_refused_before_the_engine_hears_of_it() -> None:
    async def test(h: Harness) -> None:
        assert h.stack is not None
        h.stack.post(Incoming(-1, "cid@x", "+1555", "5550100", "", "10.0.0.1", OFFER))
        await settle()
        assert h.events == []
        assert ("reject", -1, 488, "Not Acceptable Here") in h.stack.calls

    run(test, media=FakeMedia(bad_offer=True))


def test_rtp_timeout_hangs_up_with_bye() -> None:
    timeouts: list[Callable[[], None]] = []

    async def test(h: Harness) -> None:
        assert h.stack is not None
        h.stack.post(Incoming(-1, "cid@x", "+1555", "5550100", "", "10.0.0.1", OFFER))
        await settle()
        leg = h.events[0].leg
        h.service.answer(leg)
        await settle()
        timeouts[0]()  # the endpoint saw no RTP for sip.rtp_timeout_s
        await settle()
        assert ("hangup", -1) in h.stack.calls
        ended = h.events[-1]
        assert isinstance(ended, LegEnded) and (ended.cause, ended.by) == ("rtp timeout", "local")

    async def open_media(leg: SipLeg, on_dtmf: Any, on_timeout: Callable[[], None]) -> FakeMedia:
        timeouts.append(on_timeout)
        return FakeMedia()

    run(test, open_media=open_media)


def test_the_leg_carries_no_media_the_service_hands_its_endpoint_over() -> None:
    media = FakeMedia()
    media.endpoint = endpoint = object()

    async def test(h: Harness) -> None:
        leg = h.service.dial(called="1", calling="2")
        assert h.service.media_endpoint(leg) is None  # nothing open before the first INVITE
        await settle()
        assert h.service.media_endpoint(leg) is endpoint and not hasattr(leg, "rtp")
        h.service.hangup(leg)
        assert h.service.media_endpoint(leg) is None  # gone with the leg

    run(test, media=media)


def test_first_group_is_the_route_plans_first_and_follows_gateway_health() -> None:
    async def test(h: Harness) -> None:
        assert h.service.first_group("15557654321") == "a"
        for gateway in ("10.0.0.1:5060", "10.0.0.2:5060"):  # group a stops answering OPTIONS
            for probe in range(3):
                h.service.health.probe_sent(gateway, float(probe))
        assert h.service.first_group("15557654321") == "e1"  # the alternate group: its pacer bucket
        for probe in range(3):
            h.service.health.probe_sent("10.0.1.1:5060", float(probe))
        assert h.service.first_group("15557654321") is None

    run(test)
