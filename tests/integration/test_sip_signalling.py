"""SIP signalling against real SIPp peers on loopback: refusals (404/403), digest auth on dial-out,
route advance to the alternate trunk group, 100 concurrent dial-outs, malformed datagrams."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from bridge.sip.events import IncomingCall, LegAnswered, LegEnded, LegFailed, LegRinging
from bridge.sip.leg import LegState
from sip_peers import (
    Recorder,
    free_udp_port,
    make_config,
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
    from bridge.sip.events import LegDtmf
    from sip_peers import tone, write_tone_dtmf_pcap

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
            assert leg.trunk_group == "pstn" and leg.rtp is not None
            service_.hangup(leg)
            rc = await wait_process(uas, 15)
            assert rc == 0, sipp_errors(tmp_path)
            (ended,) = recorder.of(LegEnded)
            assert ended.by == "local"
        finally:
            stop_process(uas)
            await service_.stop()

    run(scenario())
