"""Tone-through with two real baresip UAs: A calls a DNIS (inbound leg), the bridge dials B over a trunk
group (outbound leg), a test loopback copies each leg's frames to the other every 20 ms. B's recording must
be A's 440 Hz tone (FFT) and A's B's 880 Hz; DTMF that B sends (RFC 4733) is reported as LegDtmf."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bridge.rtp.shared import BatchedMedia
from bridge.sip.events import IncomingCall, LegDtmf, LegEnded
from bridge.sip.leg import LegState, SipLeg
from bridge.sip.media import batched_media, open_rtp_media
from bridge.sip.service import SipService
from tests.integration.sip_peers import Baresip, Recorder, dominant_freq, free_udp_port, make_config, started_service

pytestmark = pytest.mark.integration

SILENCE_PCMU = b"\xff" * 160


async def loopback(
    service: SipService, a: SipLeg, b: SipLeg, stop: asyncio.Event, batched: BatchedMedia | None
) -> int:
    """Every 20 ms: a.read_frame -> b.write_frame and back (silence when a side has nothing), on the endpoints
    the SIP service hands over for the two legs (on the batched path, after the tick's receive and play-out)."""
    loop = asyncio.get_running_loop()
    tick, frames = loop.time(), 0
    ra, rb = service.media_endpoint(a), service.media_endpoint(b)  # taken over once, as the media owner does
    assert ra is not None and rb is not None
    while not stop.is_set():
        now = loop.time()
        if batched is not None:
            batched.receive(now)
            batched.pop(now)
        fa, fb = ra.read_frame(now), rb.read_frame(now)
        rb.write_frame(fa or SILENCE_PCMU)
        ra.write_frame(fb or SILENCE_PCMU)
        frames += fa is not None
        tick += 0.02
        await asyncio.sleep(max(0.0, tick - loop.time()))
    return frames


@pytest.mark.parametrize("media_path", ["socket", "batched"])
def test_baresip_tone_and_dtmf_through_two_legs(tmp_path: Path, media_path: str) -> None:
    async def scenario() -> None:
        alice = Baresip(tmp_path, "alice", 440.0)
        bob = Baresip(tmp_path, "bob", 880.0)
        sip_port = free_udp_port()
        config = make_config(
            sip_port=sip_port,
            trunk_groups=[{"name": "pbx", "gateways": [f"127.0.0.1:{bob.sip_port}"]}],
            sip={"media_path": media_path},
        )
        recorder = Recorder()
        batched = batched_media(config)
        service = await started_service(config, recorder, media=open_rtp_media(config, batched=batched))
        legs: dict[str, SipLeg] = {}

        def engine(event: object) -> None:  # the test plays the conference engine
            if isinstance(event, IncomingCall):
                service.answer(event.leg)
                legs["a"] = event.leg
                legs["b"] = service.dial(called="bob", calling="+15551230001", trunk_group="pbx")

        recorder.hooks.append(engine)
        stop = asyncio.Event()
        try:
            await alice.connect()
            await bob.connect()
            alice.send("dial", f"sip:5550100@127.0.0.1:{sip_port}")
            await recorder.wait_for(
                lambda: "b" in legs and legs["a"].state is LegState.CONNECTED and legs["b"].state is LegState.CONNECTED,
                15,
            )
            bridge = asyncio.get_running_loop().create_task(loopback(service, legs["a"], legs["b"], stop, batched))
            await asyncio.sleep(3.0)
            bob.send("sndcode", "159#")
            await recorder.wait_for(lambda: len(recorder.of(LegDtmf)) >= 4, 10)
            await asyncio.sleep(0.5)
            alice.send("hangup")
            await recorder.wait_for(lambda: bool(recorder.of(LegEnded)), 10)
            stop.set()
            frames = await bridge
            service.hangup(legs["b"])
            await asyncio.sleep(1.0)  # let baresip close its recordings

            assert frames > 100
            dtmf = [(e.leg is legs["b"], e.digit, e.source) for e in recorder.of(LegDtmf)]
            assert dtmf == [(True, d, "rfc4733") for d in "159#"]
            (ended,) = [e for e in recorder.of(LegEnded) if e.leg is legs["a"]]
            assert ended.by == "remote"
            heard_by_bob = bob.recording()
            heard_by_alice = alice.recording()
            freq_b, share_b = dominant_freq(heard_by_bob[len(heard_by_bob) // 4 :])
            freq_a, share_a = dominant_freq(heard_by_alice[len(heard_by_alice) // 4 :])
            assert abs(freq_b - 440) < 5 and share_b > 0.8, (freq_b, share_b)
            assert abs(freq_a - 880) < 5 and share_a > 0.8, (freq_a, share_a)
        finally:
            stop.set()
            await service.stop()
            if batched is not None:
                batched.close()
            await alice.close()
            await bob.close()

    asyncio.run(scenario())
