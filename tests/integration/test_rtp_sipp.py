"""RtpEndpoint against SIPp on loopback.

1. A SIPp UAC calls a SIPp UAS whose SDP points at our endpoint, and replays a pcap (440 Hz tone, then
   RFC 4733 digits ``1234#`` with three end packets each) to it: the 440 Hz is measured by FFT in what
   ``read_frame`` returns and the digits are reported exactly once each (asyncio and poller modes).
2. Our endpoint sends a 1 kHz tone and RFC 4733 digits to SIPp in RTP echo mode: SIPp sends every packet
   back, so what we read again (FFT) and the digits we decode are what SIPp received.
3. SIPp replays in-band DTMF tones (no RFC 4733) to an endpoint with ``inband_dtmf``: the digits are
   reported once each; when SIPp stops sending, ``on_timeout`` fires once.
4. A plain socket receives what the endpoint sends: sequence/timestamp continuity, the tone (decoded by an
   independent µ-law decoder) and the digits (decoded independently) are checked.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bridge.rtp import PortAllocator, RtpEndpoint, RtpPoller, answer_offer
from tests.integration.rtp_peers import (
    HOST,
    RtpSink,
    dominant_freq,
    dtmf_tones,
    echo_scenario,
    free_rtp_range,
    free_udp_port,
    lin2ulaw,
    open_endpoint,
    pump_frames,
    sipp_log,
    sipp_offer_sdp,
    start_sipp,
    stop,
    tone,
    uac_play_scenario,
    uas_answer_scenario,
    ulaw2lin,
    write_tone_dtmf_pcap,
)

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("mode", ["asyncio", "poller", "batched"])
def test_sipp_pcap_tone_and_rfc4733_digits_reach_the_endpoint(tmp_path: Path, mode: str) -> None:
    asyncio.run(asyncio.wait_for(_sipp_pcap_to_endpoint(tmp_path, mode), 60))


async def _sipp_pcap_to_endpoint(tmp_path: Path, mode: str) -> None:
    loop = asyncio.get_running_loop()
    digits: list[str] = []
    poller = RtpPoller() if mode == "poller" else None
    endpoint = await open_endpoint(
        mode, loop, PortAllocator(*free_rtp_range()), host=HOST, on_dtmf=digits.append, poller=poller
    )

    def read(now: float) -> bytes | None:  # the engine's tick: poll the sockets, then read the frame
        if poller is not None:
            poller.poll(now)
        return endpoint.read_frame(now)

    play_s = write_tone_dtmf_pcap(tmp_path / "play.pcap", tone(440, 1.5), "1234#")
    uas_port, uac_port, uac_media = free_udp_port(), free_udp_port(), free_udp_port(even=True)
    # What the UAC offers, answered by our SDP code: the remote media the endpoint starts with.
    _, remote = answer_offer(sipp_offer_sdp(uac_media), HOST, endpoint.local_port, session_id=1)
    endpoint.start(remote)
    uas = start_sipp(tmp_path, "uas", uas_answer_scenario(endpoint.local_port),
                     ["-p", str(uas_port), "-mp", str(free_udp_port(even=True)), "-m", "1"])  # fmt: skip
    await asyncio.sleep(0.3)
    uac_args = [f"{HOST}:{uas_port}", "-s", "1000", "-p", str(uac_port), "-mp", str(uac_media), "-m", "1"]
    uac = start_sipp(tmp_path, "uac", uac_play_scenario("play.pcap", int(play_s * 1000) + 500), uac_args)
    try:
        frames = await pump_frames(read, lambda: uac.poll() is not None, timeout=40)
        assert uac.wait(10) == 0, sipp_log(tmp_path)
        assert uas.wait(10) == 0, sipp_log(tmp_path)
    finally:
        stop(uac)
        stop(uas)
        endpoint.close()
    if poller is not None:
        assert poller.received == endpoint.stats()["packets_in"]
    stats = endpoint.stats()
    assert stats["remote"] == f"{HOST}:{uac_media}"  # latched to SIPp's media port
    assert stats["lost"] == 0 and stats["packets_in"] >= 75 + 5 * 23
    assert digits == list("1234#")
    # The tone: the first 1.5 s of what the endpoint played out (the digits follow in silence).
    pcm = ulaw2lin(b"".join(frames))
    freq, share = dominant_freq(pcm[: int(1.4 * 8000)])
    assert abs(freq - 440) < 5 and share > 0.9, (freq, share)


@pytest.mark.parametrize("mode", ["socket", "batched"])
def test_sipp_inband_tones_and_rtp_timeout(tmp_path: Path, mode: str) -> None:
    asyncio.run(asyncio.wait_for(_sipp_inband_and_timeout(tmp_path, mode), 60))


async def _sipp_inband_and_timeout(tmp_path: Path, mode: str) -> None:
    loop = asyncio.get_running_loop()
    digits: list[str] = []
    timeouts: list[float] = []
    endpoint = await open_endpoint(
        mode,
        loop,
        PortAllocator(*free_rtp_range()),
        host=HOST,
        on_dtmf=digits.append,
        inband_dtmf=True,
        rtp_timeout_s=1.0,
        on_timeout=lambda: timeouts.append(loop.time()),
    )
    play_s = write_tone_dtmf_pcap(tmp_path / "keys.pcap", dtmf_tones("1234#"), "")
    uas_port, uac_port, uac_media = free_udp_port(), free_udp_port(), free_udp_port(even=True)
    _, remote = answer_offer(sipp_offer_sdp(uac_media), HOST, endpoint.local_port, session_id=1)
    endpoint.start(remote)
    uas = start_sipp(tmp_path, "uas", uas_answer_scenario(endpoint.local_port),
                     ["-p", str(uas_port), "-mp", str(free_udp_port(even=True)), "-m", "1"])  # fmt: skip
    await asyncio.sleep(0.3)
    uac_args = [f"{HOST}:{uas_port}", "-s", "1000", "-p", str(uac_port), "-mp", str(uac_media), "-m", "1"]
    uac = start_sipp(tmp_path, "uac", uac_play_scenario("keys.pcap", int(play_s * 1000) + 200), uac_args)
    try:
        await pump_frames(endpoint.read_frame, lambda: bool(timeouts), timeout=40)
        assert uac.wait(10) == 0, sipp_log(tmp_path)
        assert uas.wait(10) == 0, sipp_log(tmp_path)
        await asyncio.sleep(1.5)
    finally:
        stop(uac)
        stop(uas)
        endpoint.close()
    assert digits == list("1234#")
    assert len(timeouts) == 1
    assert endpoint.stats()["packets_in"] == round(play_s / 0.02)


@pytest.mark.parametrize("mode", ["socket", "batched"])
def test_endpoint_rtp_echoed_by_sipp_carries_our_tone_and_digits(tmp_path: Path, mode: str) -> None:
    asyncio.run(asyncio.wait_for(_endpoint_to_sipp_echo(tmp_path, mode), 60))


async def _endpoint_to_sipp_echo(tmp_path: Path, mode: str) -> None:
    loop = asyncio.get_running_loop()
    digits: list[str] = []
    endpoint = await open_endpoint(mode, loop, PortAllocator(*free_rtp_range()), host=HOST, on_dtmf=digits.append)
    echo_port = free_udp_port(even=True)
    sipp = start_sipp(tmp_path, "echo", echo_scenario(30000),
                      ["-p", str(free_udp_port()), "-mp", str(echo_port), "-rtp_echo", "-m", "1"])  # fmt: skip
    try:
        await asyncio.sleep(0.5)
        _, remote = answer_offer(sipp_offer_sdp(echo_port), HOST, endpoint.local_port, session_id=1)
        endpoint.start(remote)
        encoded = lin2ulaw(tone(1000, 1.0))
        frames: list[bytes] = []
        next_tick = loop.time()
        for i in range(50 + 40):  # 1 s of tone, then the digits ride on the following ticks
            payload = encoded[i * 160 : (i + 1) * 160] if i < 50 else b"\xff" * 160
            endpoint.write_frame(payload)
            if i == 50:
                for digit in "1234#":
                    endpoint.send_dtmf(digit, 100)
            frame = endpoint.read_frame(loop.time())
            if frame is not None:
                frames.append(frame)
            next_tick += 0.02
            await asyncio.sleep(max(0.0, next_tick - loop.time()))
        frames += await pump_frames(endpoint.read_frame, lambda: len(digits) >= 5, timeout=10)
        assert sipp.poll() is None, sipp_log(tmp_path)  # still running: the echo came from SIPp
    finally:
        stop(sipp)
        endpoint.close()
    assert digits == list("1234#")
    stats = endpoint.stats()
    assert stats["remote"] == f"{HOST}:{echo_port}"
    assert stats["packets_in"] == stats["packets_out"]
    freq, share = dominant_freq(ulaw2lin(b"".join(frames))[: 8000 * 9 // 10])
    assert abs(freq - 1000) < 5 and share > 0.9, (freq, share)


def test_what_the_endpoint_sends_decoded_independently() -> None:
    asyncio.run(asyncio.wait_for(_endpoint_to_sink(), 30))


async def _endpoint_to_sink() -> None:
    loop = asyncio.get_running_loop()
    sink = RtpSink()
    endpoint = await RtpEndpoint.open(loop, PortAllocator(*free_rtp_range()), host=HOST)
    try:
        _, remote = answer_offer(sipp_offer_sdp(sink.port), HOST, endpoint.local_port, session_id=1)
        endpoint.start(remote)
        encoded = lin2ulaw(tone(600, 1.0))
        for i in range(50):
            endpoint.write_frame(encoded[i * 160 : (i + 1) * 160])
        for digit in "1234#":
            endpoint.send_dtmf(digit, 100)
        for _ in range(5 * (5 + 2)):
            endpoint.write_frame(b"\xff" * 160)
        await asyncio.sleep(0.3)
        sink.drain()
    finally:
        endpoint.close()
        sink.close()
    packets = sink.packets
    assert {p["src"] for p in packets} == {(HOST, endpoint.local_port)}
    assert len({p["ssrc"] for p in packets}) == 1
    seqs = [p["seq"] for p in packets]
    assert all((b - a) % 65536 == 1 for a, b in zip(seqs, seqs[1:], strict=False))
    audio = [p for p in packets if p["pt"] == 0]
    assert audio[0]["m"] == 1
    assert all((b["ts"] - a["ts"]) % 2**32 in (160, 160 * 6) for a, b in zip(audio, audio[1:], strict=False))
    freq, share = dominant_freq(sink.audio(0)[:8000])
    assert abs(freq - 600) < 5 and share > 0.9
    assert sink.dtmf(101) == "1234#"
