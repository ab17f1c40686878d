"""SIP signalling against real SIPp peers on loopback: refusals (404/403), digest auth on dial-out,
route advance to the alternate trunk group, 100 concurrent dial-outs, malformed datagrams."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from bridge.sip.events import IncomingCall, LegAnswered, LegDtmf, LegEnded, LegFailed, LegRinging
from bridge.sip.leg import LegState
from tests.integration.sip_peers import (
    Recorder,
    free_udp_port,
    make_config,
    rtp_range,
    sipp_common,
    sipp_errors,
    start_sipp,
    started_service,
    stop_process,
    uac_dtmf_scenario,
    uac_refused_scenario,
    uas_scenario,
    wait_process,
)

pytestmark = pytest.mark.integration


def run(coro: object) -> None:
    asyncio.run(coro)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("service", "source_ip", "status"), [("5559999", "127.0.0.1", 404), ("5550100", "127.0.0.2", 403)]
)
def test_inbound_refusals(tmp_path: Path, service: str, source_ip: str, status: int) -> None:
    """Unknown number -> 404; INVITE from an address that is not a trunk gateway -> 403."""

    async def scenario() -> None:
        sip_port = free_udp_port()
        config = make_config(sip_port=sip_port, trunk_groups=[{"name": "pstn", "gateways": ["127.0.0.1:5999"]}])
        recorder = Recorder()
        service_ = await started_service(config, recorder)
        try:
            sipp = start_sipp(
                uac_refused_scenario(status),
                tmp_path,
                f"uac{status}",
                [
                    f"127.0.0.1:{sip_port}",
                    "-s",
                    service,
                    "-m",
                    "1",
                    *sipp_common(free_udp_port(source_ip), free_udp_port(source_ip), ip=source_ip, timeout_s=20),
                ],
            )
            rc = await wait_process(sipp, 30)
            assert rc == 0, sipp_errors(tmp_path)
            assert recorder.of(IncomingCall) == []
        finally:
            await service_.stop()

    run(scenario())


def test_inbound_call_reports_rfc4733_and_info_digits(tmp_path: Path) -> None:
    """SIPp calls a DNIS (PAI = calling number), plays RFC 4733 '159#' then sends INFO '*20' -> exactly those
    LegDtmf digits, in order, with the right source; the caller's BYE ends the leg."""
    from tests.integration.sip_peers import tone, write_tone_dtmf_pcap

    async def scenario() -> None:
        sip_port = free_udp_port()
        config = make_config(sip_port=sip_port, trunk_groups=[{"name": "pstn", "gateways": ["127.0.0.1:5999"]}])
        recorder = Recorder()
        service_ = await started_service(config, recorder)
        recorder.hooks.append(lambda e: service_.answer(e.leg) if isinstance(e, IncomingCall) else None)
        try:
            play_s = write_tone_dtmf_pcap(tmp_path / "dtmf.pcap", tone(440, 0.4), "159#")
            sipp = start_sipp(
                uac_dtmf_scenario(
                    pcap="dtmf.pcap", pause_ms=int(play_s * 1000) + 500, info_digits="*20", calling="+15551234567"
                ),
                tmp_path,
                "uac_dtmf",
                [
                    f"127.0.0.1:{sip_port}",
                    "-s",
                    "5550101",
                    "-m",
                    "1",
                    *sipp_common(free_udp_port(), free_udp_port(even=True), timeout_s=30),
                ],
            )
            rc = await wait_process(sipp, 40)
            assert rc == 0, sipp_errors(tmp_path)
            await recorder.wait_for(lambda: bool(recorder.of(LegEnded)), 5)
            (incoming,) = recorder.of(IncomingCall)
            assert incoming.leg.called == "5550101"
            assert incoming.leg.calling == "+15551234567"
            assert incoming.leg.direction == "in" and incoming.leg.call_id
            digits = [(e.digit, e.source) for e in recorder.of(LegDtmf)]
            assert digits == [
                ("1", "rfc4733"),
                ("5", "rfc4733"),
                ("9", "rfc4733"),
                ("#", "rfc4733"),
                ("*", "info"),
                ("2", "info"),
                ("0", "info"),
            ]
            (ended,) = recorder.of(LegEnded)
            assert ended.by == "remote" and ended.leg.state is LegState.ENDED
        finally:
            await service_.stop()

    run(scenario())


@pytest.mark.parametrize("challenge", [401, 407])
def test_dial_out_answers_digest_challenge(tmp_path: Path, challenge: int) -> None:
    """The SIPp UAS challenges the INVITE; we retry with credentials, it answers; our hangup sends BYE."""

    async def scenario() -> None:
        sip_port, uas_port = free_udp_port(), free_udp_port()
        config = make_config(
            sip_port=sip_port,
            trunk_groups=[
                {"name": "pstn", "gateways": [f"127.0.0.1:{uas_port}"], "username": "bridge", "password": "trunkpass"}
            ],
        )
        uas = start_sipp(
            uas_scenario(challenge=challenge),
            tmp_path,
            "uas",
            ["-m", "1", *sipp_common(uas_port, free_udp_port(even=True), timeout_s=30)],
        )
        recorder = Recorder()
        service_ = await started_service(config, recorder)
        try:
            await asyncio.sleep(0.3)  # let SIPp bind
            leg = service_.dial(called="15557654321", calling="+15551230001", display_name="Conf Bridge")
            await recorder.wait_for(lambda: leg.is_final or leg.state is LegState.CONNECTED, 15)
            assert leg.state is LegState.CONNECTED, [str(e) for e in recorder.events]
            assert [type(e) for e in recorder.events] == [LegRinging, LegAnswered]
            assert leg.trunk_group == "pstn" and service_.media_endpoint(leg) is not None  # handed over, not on the leg
            service_.hangup(leg)
            rc = await wait_process(uas, 15)
            assert rc == 0, sipp_errors(tmp_path)
            (ended,) = recorder.of(LegEnded)
            assert ended.by == "local"
        finally:
            stop_process(uas)
            await service_.stop()

    run(scenario())


def test_silent_gateway_advances_to_alternate_e1_group(tmp_path: Path) -> None:
    """The main group's gateway never answers -> after sip.invite_timeout_s the call goes to the alternate
    group, an E1 group: span/channel 1/1 is taken, sent as X-Span-Channel, shown busy, released on hangup."""

    async def scenario() -> None:
        silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        silent.bind(("127.0.0.1", 0))
        sip_port, uas_port = free_udp_port(), free_udp_port()
        config = make_config(
            sip_port=sip_port,
            sip={"invite_timeout_s": 1.0},
            trunk_groups=[
                {"name": "main", "gateways": [f"127.0.0.1:{silent.getsockname()[1]}"]},
                {
                    "name": "e1",
                    "kind": "e1",
                    "role": "alternate",
                    "gateways": [f"127.0.0.1:{uas_port}"],
                    "spans": 1,
                    "channels_per_span": 2,
                },
            ],
        )
        uas = start_sipp(
            uas_scenario(expect_header="X-Span-Channel"),
            tmp_path,
            "uas",
            ["-m", "1", *sipp_common(uas_port, free_udp_port(even=True), timeout_s=30)],
        )
        recorder = Recorder()
        service_ = await started_service(config, recorder)
        try:
            await asyncio.sleep(0.3)
            leg = service_.dial(called="15557654321", calling="+15551230001")
            await recorder.wait_for(lambda: leg.is_final or leg.state is LegState.CONNECTED, 15)
            assert leg.state is LegState.CONNECTED, leg.cause
            assert leg.trunk_group == "e1" and leg.port_id == "1:1"
            assert silent.recv(4096).startswith(b"INVITE ")  # the main gateway was really tried first
            (e1,) = [g for g in service_.status()["trunk_groups"] if g["name"] == "e1"]
            assert [p["state"] for p in e1["ports"]] == ["busy", "idle"]
            assert e1["ports"][0]["leg_id"] == leg.leg_id
            service_.hangup(leg)
            assert await wait_process(uas, 15) == 0, sipp_errors(tmp_path)
            (e1,) = [g for g in service_.status()["trunk_groups"] if g["name"] == "e1"]
            assert [p["state"] for p in e1["ports"]] == ["idle", "idle"]
            assert service_.counters["route_advances"] == 1
        finally:
            stop_process(uas)
            silent.close()
            await service_.stop()

    run(scenario())


def test_full_e1_group_fails_with_clear_cause(tmp_path: Path) -> None:
    """One E1 channel, two calls: the second fails at once with a cause naming the full group."""

    async def scenario() -> None:
        silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        silent.bind(("127.0.0.1", 0))
        config = make_config(
            sip_port=free_udp_port(),
            sip={"invite_timeout_s": 30.0},
            trunk_groups=[
                {
                    "name": "e1",
                    "kind": "e1",
                    "gateways": [f"127.0.0.1:{silent.getsockname()[1]}"],
                    "spans": 1,
                    "channels_per_span": 1,
                }
            ],
        )
        recorder = Recorder()
        service_ = await started_service(config, recorder)
        try:
            first = service_.dial(called="1001", calling="+15551230001")
            await recorder.wait_for(lambda: first.port_id == "1:1", 5)
            second = service_.dial(called="1002", calling="+15551230001")
            await recorder.wait_for(lambda: second.is_final, 5)
            (failed,) = recorder.of(LegFailed)
            assert failed.leg is second and failed.status == 503
            assert "e1 full" in failed.cause and "1 E1 channels busy" in failed.cause
            service_.hangup(first, "test over")
            assert first.state is LegState.FAILED
        finally:
            silent.close()
            await service_.stop()

    run(scenario())


def test_hundred_concurrent_dial_outs(tmp_path: Path) -> None:
    """100 concurrent calls to a SIPp UAS (dialled at 50/s): all connect, all hang up with BYE/200, SIPp counts
    100 successful calls. (All 100 INVITEs in the same millisecond on this 2-core box delay the responses past
    Timer A; SIPp then aborts calls on the INVITE retransmission, which RFC 3261 UASs must absorb.)"""

    async def scenario() -> None:
        sip_port, uas_port = free_udp_port(), free_udp_port()
        config = make_config(
            sip_port=sip_port,
            rtp=rtp_range(420),
            trunk_groups=[{"name": "pstn", "gateways": [f"127.0.0.1:{uas_port}"]}],
        )
        uas = start_sipp(
            uas_scenario(),
            tmp_path,
            "uas",
            ["-m", "100", *sipp_common(uas_port, free_udp_port(even=True), timeout_s=60)],
        )
        recorder = Recorder()
        service_ = await started_service(config, recorder)
        try:
            await asyncio.sleep(0.3)
            legs = []
            for i in range(100):  # 50 call attempts per second, all 100 up together
                legs.append(service_.dial(called=f"1555700{i:04d}", calling="+15551230001"))
                await asyncio.sleep(0.02)
            await recorder.wait_for(lambda: all(leg.state is LegState.CONNECTED or leg.is_final for leg in legs), 60)
            assert [leg.state for leg in legs] == [LegState.CONNECTED] * 100, {leg.cause for leg in legs}
            assert len({leg.call_id for leg in legs}) == 100
            # SIPp aborts a call that gets BYE while it still waits for an ACK it lost and re-asked for (a 200
            # retransmission after 500 ms; RFC 3261 allows the BYE). Let those retransmissions settle first.
            await asyncio.sleep(1.0)
            for leg in legs:
                service_.hangup(leg)
            assert await wait_process(uas, 60) == 0, sipp_errors(tmp_path)
            assert len(recorder.of(LegEnded)) == 100
            assert service_.status()["legs"] == 0
        finally:
            stop_process(uas)
            await service_.stop()

    run(scenario())


def test_options_keepalive_marks_silent_gateway_down_and_skips_it(tmp_path: Path) -> None:
    """Keepalive every 0.3 s: a silent gateway goes down (status), the SIPp one stays up; a new call then
    goes straight to the live gateway without an INVITE to the dead one."""

    async def scenario() -> None:
        silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        silent.bind(("127.0.0.1", 0))
        silent.setblocking(False)
        dead = f"127.0.0.1:{silent.getsockname()[1]}"
        uas_port = free_udp_port()
        config = make_config(
            sip_port=free_udp_port(),
            sip={"options_interval_s": 0.3},
            trunk_groups=[{"name": "pstn", "gateways": [dead, f"127.0.0.1:{uas_port}"]}],
        )
        # no -m: every OPTIONS counts as a "call" for SIPp (auto-answered with -aa); stopped at the end
        uas = start_sipp(uas_scenario(), tmp_path, "uas", sipp_common(uas_port, free_udp_port(even=True), timeout_s=30))
        recorder = Recorder()
        service_ = await started_service(config, recorder)

        def gateways() -> dict[str, bool]:
            return {g["address"]: g["up"] for g in service_.status()["trunk_groups"][0]["gateways"]}

        try:
            await recorder.wait_for(lambda: gateways()[dead] is False, 10)
            assert gateways()[f"127.0.0.1:{uas_port}"] is True
            probes = []
            while True:
                try:
                    probes.append(silent.recv(4096))
                except BlockingIOError:
                    break
            assert probes and all(p.startswith(b"OPTIONS ") for p in probes)
            leg = service_.dial(called="15557654321", calling="+15551230001")
            await recorder.wait_for(lambda: leg.is_final or leg.state is LegState.CONNECTED, 10)
            assert leg.state is LegState.CONNECTED and leg.gateway == f"127.0.0.1:{uas_port}"
            await asyncio.sleep(0.2)
            late = []
            while True:
                try:
                    late.append(silent.recv(4096))
                except BlockingIOError:
                    break
            assert not any(p.startswith(b"INVITE ") for p in late)
            service_.hangup(leg)
            await recorder.wait_for(lambda: bool(recorder.of(LegEnded)), 5)
        finally:
            stop_process(uas)
            silent.close()
            await service_.stop()

    run(scenario())


def test_reinvite_hold_and_resume_are_answered(tmp_path: Path) -> None:
    """SIPp holds (sendonly) and resumes (sendrecv) by re-INVITE: each gets 200 with the mirrored direction,
    and the engine sees LegHold(on=True) then LegHold(on=False)."""
    from bridge.sip.events import LegHold
    from tests.integration.sip_peers import uac_hold_scenario

    async def scenario() -> None:
        sip_port = free_udp_port()
        config = make_config(sip_port=sip_port, trunk_groups=[{"name": "pstn", "gateways": ["127.0.0.1:5999"]}])
        recorder = Recorder()
        service_ = await started_service(config, recorder)
        recorder.hooks.append(lambda e: service_.answer(e.leg) if isinstance(e, IncomingCall) else None)
        try:
            sipp = start_sipp(
                uac_hold_scenario(),
                tmp_path,
                "uac_hold",
                [
                    f"127.0.0.1:{sip_port}",
                    "-s",
                    "5550100",
                    "-m",
                    "1",
                    *sipp_common(free_udp_port(), free_udp_port(even=True), timeout_s=30),
                ],
            )
            assert await wait_process(sipp, 40) == 0, sipp_errors(tmp_path)
            await recorder.wait_for(lambda: bool(recorder.of(LegEnded)), 5)
            assert [e.on for e in recorder.of(LegHold)] == [True, False]
        finally:
            await service_.stop()

    run(scenario())


def test_caller_cancel_before_answer(tmp_path: Path) -> None:
    """The engine does not answer; the caller CANCELs: 200 + 487 to SIPp, LegFailed(487) to the engine."""
    from tests.integration.sip_peers import uac_cancel_scenario

    async def scenario() -> None:
        sip_port = free_udp_port()
        config = make_config(sip_port=sip_port, trunk_groups=[{"name": "pstn", "gateways": ["127.0.0.1:5999"]}])
        recorder = Recorder()
        service_ = await started_service(config, recorder)
        try:
            sipp = start_sipp(
                uac_cancel_scenario(), tmp_path, "uac_cancel",
                [f"127.0.0.1:{sip_port}", "-s", "5550100", "-m", "1",
                 *sipp_common(free_udp_port(), free_udp_port(even=True), timeout_s=20)],
            )  # fmt: skip
            assert await wait_process(sipp, 30) == 0, sipp_errors(tmp_path)
            await recorder.wait_for(lambda: bool(recorder.of(LegFailed)), 5)
            (incoming,) = recorder.of(IncomingCall)
            (failed,) = recorder.of(LegFailed)
            assert failed.leg is incoming.leg and failed.status == 487 and failed.cause == "caller cancelled"
            assert service_.status()["legs"] == 0
        finally:
            await service_.stop()

    run(scenario())


def test_ring_timeout_cancels_without_route_advance(tmp_path: Path) -> None:
    """The callee rings past conference.ring_timeout_s: CANCEL is sent, LegFailed('no answer', 487), and the
    alternate group is NOT tried (nobody answered is not a network failure)."""
    from tests.integration.sip_peers import uas_ring_only_scenario

    async def scenario() -> None:
        silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        silent.bind(("127.0.0.1", 0))
        silent.setblocking(False)
        uas_port = free_udp_port()
        config = make_config(
            sip_port=free_udp_port(),
            ring_timeout_s=1.5,
            trunk_groups=[
                {"name": "pstn", "gateways": [f"127.0.0.1:{uas_port}"]},
                {"name": "alt", "role": "alternate", "gateways": [f"127.0.0.1:{silent.getsockname()[1]}"]},
            ],
        )
        uas = start_sipp(
            uas_ring_only_scenario(),
            tmp_path,
            "uas_ring",
            ["-m", "1", *sipp_common(uas_port, free_udp_port(even=True), timeout_s=30)],
        )
        recorder = Recorder()
        service_ = await started_service(config, recorder)
        try:
            await asyncio.sleep(0.3)
            leg = service_.dial(called="15557654321", calling="+15551230001")
            await recorder.wait_for(lambda: leg.is_final, 10)
            assert [type(e) for e in recorder.events] == [LegRinging, LegFailed]
            (failed,) = recorder.of(LegFailed)
            assert failed.cause == "no answer" and failed.status == 487
            assert await wait_process(uas, 15) == 0, sipp_errors(tmp_path)
            with pytest.raises(BlockingIOError):
                silent.recv(4096)
        finally:
            stop_process(uas)
            silent.close()
            await service_.stop()

    run(scenario())


def test_stop_hangs_up_live_legs(tmp_path: Path) -> None:
    """stop() with a connected outbound leg sends BYE (the SIPp UAS completes its scenario)."""

    async def scenario() -> None:
        uas_port = free_udp_port()
        config = make_config(
            sip_port=free_udp_port(), trunk_groups=[{"name": "pstn", "gateways": [f"127.0.0.1:{uas_port}"]}]
        )
        uas = start_sipp(uas_scenario(), tmp_path, "uas", ["-m", "1", *sipp_common(uas_port, free_udp_port(even=True))])
        recorder = Recorder()
        service_ = await started_service(config, recorder)
        try:
            await asyncio.sleep(0.3)
            leg = service_.dial(called="15557654321", calling="+15551230001")
            await recorder.wait_for(lambda: leg.is_final or leg.state is LegState.CONNECTED, 10)
            assert leg.state is LegState.CONNECTED
            await service_.stop()
            assert await wait_process(uas, 15) == 0, sipp_errors(tmp_path)
            (ended,) = recorder.of(LegEnded)
            assert ended.cause == "shutdown" and ended.by == "local"
        finally:
            stop_process(uas)
            await service_.stop()

    run(scenario())


def test_inband_dtmf_on_an_e1_group(tmp_path: Path) -> None:
    """A call from an E1 gateway whose group has inband_dtmf: SIPp plays DTMF *tones* in the audio (no RFC 4733);
    the engine's 20 ms reads feed the detector and LegDtmf(source='inband') reports exactly those digits."""
    import numpy as np

    from tests.integration.sip_peers import PTIME, write_tone_dtmf_pcap

    rows, cols = (697.0, 770.0, 852.0, 941.0), (1209.0, 1336.0, 1477.0, 1633.0)
    keys = ("123A", "456B", "789C", "*0#D")

    def key_tone(digit: str, ms: int) -> np.ndarray:  # type: ignore[type-arg]
        r = next(i for i, row in enumerate(keys) if digit in row)
        t = np.arange(int(8 * ms)) / 8000
        wave = 6000 * np.sin(2 * np.pi * rows[r] * t) + 6000 * np.sin(2 * np.pi * cols[keys[r].index(digit)] * t)
        return wave.astype(np.int16)

    async def scenario() -> None:
        sip_port = free_udp_port()
        config = make_config(
            sip_port=sip_port,
            trunk_groups=[
                {"name": "e1", "kind": "e1", "gateways": ["127.0.0.1:5999"], "spans": 1, "inband_dtmf": True}
            ],
        )
        recorder = Recorder()
        service_ = await started_service(config, recorder)
        recorder.hooks.append(lambda e: service_.answer(e.leg) if isinstance(e, IncomingCall) else None)
        stop = asyncio.Event()

        async def engine_tick() -> None:  # the mixer's 20 ms reads are what feed the in-band detector
            loop = asyncio.get_running_loop()
            tick = loop.time()
            while not stop.is_set():
                for leg in service_.legs():
                    endpoint = service_.media_endpoint(leg)
                    if endpoint is not None and leg.state is LegState.CONNECTED:
                        endpoint.read_frame(loop.time())
                tick += 0.02
                await asyncio.sleep(max(0.0, tick - loop.time()))

        ticker = asyncio.get_running_loop().create_task(engine_tick())
        try:
            silence = np.zeros(PTIME * 10, np.int16)
            audio = np.concatenate([silence] + [np.concatenate([key_tone(d, 120), silence]) for d in "3#80"])
            play_s = write_tone_dtmf_pcap(tmp_path / "inband.pcap", audio, "")
            sipp = start_sipp(
                uac_dtmf_scenario(pcap="inband.pcap", pause_ms=int(play_s * 1000) + 600, info_digits="",
                                  calling="+15551234567"),
                tmp_path, "uac_inband",
                [f"127.0.0.1:{sip_port}", "-s", "5550100", "-m", "1",
                 *sipp_common(free_udp_port(), free_udp_port(even=True), timeout_s=30)],
            )  # fmt: skip
            assert await wait_process(sipp, 40) == 0, sipp_errors(tmp_path)
            await recorder.wait_for(lambda: bool(recorder.of(LegEnded)), 5)
            assert [(e.digit, e.source) for e in recorder.of(LegDtmf)] == [(d, "inband") for d in "3#80"]
        finally:
            stop.set()
            await ticker
            await service_.stop()

    run(scenario())
