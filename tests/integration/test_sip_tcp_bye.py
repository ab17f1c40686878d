"""Issue 21: the bridge ends a dialog whose next hop says ``transport=tcp``, on the wire.

SIPp plays a proxy that took a call over TCP and relays it to the bridge over UDP, either record-routing
once with ``;transport=tcp;lr=on`` (on a port where nothing listens over UDP, so only a BYE sent to the
proxy's UDP source reaches it) or not record-routing, with the caller's Contact saying ``;transport=tcp``.
The engine answers and then hangs the leg up (what end, kick, full room, wrong PIN and RTP timeout all do):
SIPp must receive the BYE, with the Route header exactly as it record-routed (RFC 3261 §12.1.1), and the
200 it got must carry the Record-Route unchanged (``lr=on``, not ``lr``).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bridge.sip.events import IncomingCall, LegAnswered, LegEnded
from tests.integration.rtp_peers import free_tcp_port, free_udp_port
from tests.integration.rtp_peers import stop as stop_process
from tests.integration.sip_peers import (
    SDP_OFFER,
    Recorder,
    make_config,
    sipp_common,
    sipp_errors,
    start_sipp,
    started_service,
    wait_process,
)

pytestmark = pytest.mark.integration


def proxy_scenario(*, record_route: str, contact: str) -> str:
    """INVITE [service] as a relaying proxy; check the 200's Record-Route; ACK; wait for the bridge's BYE."""
    rr = f"Record-Route: {record_route}\n" if record_route else ""
    route = f"Route: {record_route}\n" if record_route else ""
    check = (
        f"""<action><ereg regexp="^ *{_regex(record_route)}$" search_in="hdr" header="Record-Route:" check_it="true"
          assign_to="rr"/></action>"""
        if record_route
        else ""
    )
    bye_check = (
        f"""<action><ereg regexp="^ *{_regex(record_route)}$" search_in="hdr" header="Route:" check_it="true"
          assign_to="route"/></action>"""
        if record_route
        else ""
    )
    return f"""<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="tcp_proxy">
  <send retrans="500">
    <![CDATA[
INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/UDP [local_ip]:[local_port];branch=[branch]
From: "Caller" <sip:caller@[local_ip]>;tag=[pid]SIPpTag00[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>
Call-ID: [call_id]
CSeq: 1 INVITE
Contact: {contact}
{rr}Max-Forwards: 69
Content-Type: application/sdp
Content-Length: [len]

{SDP_OFFER}
    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="200">{check}</recv>
  <send>
    <![CDATA[
ACK [next_url] SIP/2.0
Via: SIP/2.0/UDP [local_ip]:[local_port];branch=[branch]
From: "Caller" <sip:caller@[local_ip]>;tag=[pid]SIPpTag00[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
Call-ID: [call_id]
CSeq: 1 ACK
{route}Max-Forwards: 69
Content-Length: 0

    ]]>
  </send>
  <recv request="BYE">{bye_check}</recv>
  <send>
    <![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

    ]]>
  </send>
  {'<Reference variables="rr,route"/>' if record_route else ""}
</scenario>
"""


def _regex(text: str) -> str:
    out = text
    for ch in "\\.^$*+?()[]{}|;":
        out = out.replace(ch, "\\" + ch)
    return out.replace("<", "&lt;").replace(">", "&gt;")


@pytest.mark.parametrize("mode", ["single-tcp-record-route", "tcp-contact-no-record-route"])
def test_bridge_hangs_up_a_dialog_whose_next_hop_is_tcp(tmp_path: Path, mode: str) -> None:
    async def scenario() -> None:
        sip_port, sipp_port = free_udp_port(), free_udp_port()
        if mode == "single-tcp-record-route":
            record_route = f"<sip:127.0.0.1:{free_tcp_port()};transport=tcp;lr=on>"
            contact = "<sip:caller@127.0.0.1:5098;transport=tcp>"
        else:
            record_route = ""
            contact = f"<sip:caller@127.0.0.1:{sipp_port};transport=tcp>"
        config = make_config(sip_port=sip_port, trunk_groups=[{"name": "proxy", "gateways": ["127.0.0.1:5999"]}])
        recorder = Recorder()
        service = await started_service(config, recorder)
        recorder.hooks.append(lambda e: service.answer(e.leg) if isinstance(e, IncomingCall) else None)
        sipp = start_sipp(
            proxy_scenario(record_route=record_route, contact=contact),
            tmp_path,
            "tcp_proxy",
            [
                f"127.0.0.1:{sip_port}",
                "-s",
                "5550100",
                "-m",
                "1",
                *sipp_common(sipp_port, free_udp_port(even=True), timeout_s=20),
            ],
        )
        try:
            await recorder.wait_for(lambda: bool(recorder.of(LegAnswered)), 10)
            (answered,) = recorder.of(LegAnswered)
            await asyncio.sleep(0.2)  # let SIPp's ACK land; the BYE is not held back for it either way
            service.hangup(answered.leg, "kicked")
            assert await wait_process(sipp, 25) == 0, sipp_errors(tmp_path)
            (ended,) = recorder.of(LegEnded)
            assert (ended.cause, ended.by) == ("kicked", "local")
            assert service._stack is not None and service._stack.counters["hangup_failed"] == 0
        finally:
            stop_process(sipp)
            await service.stop()

    asyncio.run(scenario())
