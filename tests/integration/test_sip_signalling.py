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
    uac_refused_scenario,
    uas_scenario,
    wait_process,
)

pytestmark = pytest.mark.integration


def run(coro: object) -> None:
    asyncio.run(coro)  # type: ignore[arg-type]


@pytest.mark.parametrize(("service", "source_ip", "status"), [("5559999", "127.0.0.1", 404), ("5550100", "127.0.0.2", 403)])
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
                [f"127.0.0.1:{sip_port}", "-s", service, "-m", "1",
                 *sipp_common(free_udp_port(source_ip), free_udp_port(source_ip), ip=source_ip, timeout_s=20)],
            )
            rc = await wait_process(sipp, 30)
            assert rc == 0, sipp_errors(tmp_path)
            assert recorder.of(IncomingCall) == []
        finally:
            await service_.stop()

    run(scenario())
