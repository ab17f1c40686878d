"""Interop matrix (issue 21): real callers straight to the bridge and through Kamailio over UDP, TCP and TLS.

One bridge (a :class:`SipService` on its own loop thread, played by a tiny test engine that answers, sends a
1 kHz tone and reads what the caller sends) and two Kamailios from etc/kamailio/ (double and single
Record-Route) serve the whole module. For each row:

* SIPp over UDP (direct, and through Kamailio on UDP and TCP, both record-route modes): answered; audio both
  ways by FFT (the bridge hears SIPp's 440 Hz pcap, SIPp's media socket hears the bridge's 1 kHz); an
  RFC 4733 digit and a SIP INFO digit reported; hold (sendonly -> recvonly) and resume; then a BYE from the
  caller or from the bridge, each must complete on the wire (SIPp's scenario fails otherwise).
* baresip over TLS through Kamailio (Debian's SIPp is built without TLS, so ``-t l1`` is not available):
  answered, audio both ways by FFT, RFC 4733 digit, BYE from each side; the bridge's BYE reaches the phone
  over TLS (through the single-Record-Route Kamailio this is the issue-21 path: a ``;transport=tls`` route
  entry that the bridge can only honour by sending to the proxy's UDP side).

* ``bridge run`` behind each Kamailio: a TLS-only baresip joins an open room (a UDP phone keeps the room open)
  and is kicked through the control API; it receives the BYE, over TLS as it has no other transport.

* linphone (``linphonec``, tests/integration/linphone.py) as the caller, direct over UDP and through Kamailio
  over UDP (double RR), TCP (single RR) and TLS (both): answered, audio both ways by FFT (its file player and
  recorder), an RFC 4733 and a SIP INFO digit, pause/resume (hold), BYE from either side, and linphone's own
  log shows that BYE on the row's transport.
* The bridge dials out (SipService.dial on a trunk group whose gateway is one Kamailio) to a linphone
  registered at that Kamailio over TLS (both RR modes) or TCP: answered, audio both ways, its BYE over TCP/TLS.
* ``kamcmd dispatcher.list`` / ``dispatcher.reload`` against a running proxy (the ctl module).
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest

from bridge.sip.events import IncomingCall, LegAnswered, LegDtmf, LegEnded, LegEvent, LegHold
from bridge.sip.leg import LegState, SipLeg
from bridge.sip.service import SipService
from tests.integration.kamailio import Kamailio, free_udp_tcp_port
from tests.integration.linphone import Linphone
from tests.integration.rtp_peers import free_udp_port, lin2ulaw, ulaw2lin
from tests.integration.rtp_peers import stop as stop_process
from tests.integration.sip_peers import (
    Baresip,
    Recorder,
    dominant_freq,
    make_config,
    sipp_errors,
    start_sipp,
    tone,
    wait_process,
    write_tone_dtmf_pcap,
)

pytestmark = pytest.mark.integration

HOST = "127.0.0.1"
BRIDGE_TONE, CALLER_TONE = 1000.0, 440.0
ROOM = "5550100"


# --- the shared bridge: a SipService on a loop of its own ----------------------------------------------------


class Bridge:
    """The SIP service on a background event loop; ``run(coro)`` runs a test coroutine there. The test engine
    answers every call, sends BRIDGE_TONE and keeps what each leg sends (PCMU payloads) for the FFT."""

    def __init__(self, port: int, gateways: list[str], groups: dict[str, list[str]] | None = None) -> None:
        self.port = port
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="bridge-loop", daemon=True)
        self.thread.start()
        self.recorder = Recorder()
        self.heard: dict[str, list[bytes]] = {}
        self.media_tasks: set[asyncio.Task[None]] = set()
        trunks = [{"name": "edge", "gateways": gateways}]
        trunks += [{"name": name, "gateways": via} for name, via in (groups or {}).items()]
        config = make_config(sip_port=port, trunk_groups=trunks)

        async def start() -> SipService:
            self.recorder = Recorder()  # its asyncio.Event belongs to this loop
            service = SipService(config, on_event=self._on_event)
            await service.start()
            return service

        self.service = self.run(start())

    def run(self, coro: Coroutine[Any, Any, Any], timeout: float = 60.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def _on_event(self, event: LegEvent) -> None:
        self.recorder(event)
        if isinstance(event, IncomingCall):
            self.start_media(event.leg)
            # Answer a moment after the 180: Kamailio relays the bridge's 180 and 200 from different worker
            # processes, and a 200 sent at once can overtake the 180 on the TCP side (SIPp then aborts).
            self.loop.call_later(0.1, self._answer, event.leg)

    def start_media(self, leg: SipLeg) -> None:
        """Play and hear ``leg`` until it ends (call on the loop)."""
        task = self.loop.create_task(self._media(leg))
        self.media_tasks.add(task)
        task.add_done_callback(self.media_tasks.discard)

    def _answer(self, leg: SipLeg) -> None:
        if leg.state is LegState.OFFERED:
            self.service.answer(leg)

    async def _media(self, leg: SipLeg) -> None:
        """The media owner's part for one leg: every 20 ms read a frame (RFC 4733 digits are found on this
        path) and send one of BRIDGE_TONE."""
        encoded = lin2ulaw(tone(BRIDGE_TONE, 1.0))
        frames = [encoded[i : i + 160] for i in range(0, len(encoded) - 159, 160)]
        heard = self.heard.setdefault(leg.leg_id, [])
        tick, n = self.loop.time(), 0
        while not leg.is_final:
            endpoint = self.service.media_endpoint(leg)
            if endpoint is not None and leg.state is LegState.CONNECTED:
                frame = endpoint.read_frame(self.loop.time())
                if frame is not None:
                    heard.append(frame)
                endpoint.write_frame(frames[n % len(frames)])
                n += 1
            tick += 0.02
            await asyncio.sleep(max(0.0, tick - self.loop.time()))

    def events_since(self, start: int) -> Callable[[], list[Any]]:
        """The events of the first call offered after event number ``start`` (late events of an earlier
        test's call are left out)."""

        def mine() -> list[Any]:
            events = self.recorder.events[start:]
            first = next((e for e in events if isinstance(e, IncomingCall)), None)
            return [] if first is None else [e for e in events if e.leg is first.leg]

        return mine

    def close(self) -> None:
        self.run(self.service.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One bridge and two Kamailios (double and single Record-Route, both with the registrar on) for the whole
    module. Besides "edge" (both proxies), the bridge has a trunk group per proxy ("via-double", "via-single")
    for its dial-outs."""
    workdir = tmp_path_factory.mktemp("edge")
    bridge_port = free_udp_port()
    proxies = {
        mode: Kamailio(
            workdir / f"kamailio-{mode}",
            bridge_port=bridge_port,
            double_rr=mode == "double",
            children=2,
            registrar=True,
        )
        for mode in ("double", "single")
    }
    for proxy in proxies.values():
        proxy.dir.mkdir()
    groups = {f"via-{mode}": [proxy.internal] for mode, proxy in proxies.items()}
    bridge = Bridge(bridge_port, [p.internal for p in proxies.values()], groups)
    try:
        for proxy in proxies.values():
            proxy.start()
        yield {"bridge": bridge, **proxies}
    finally:
        for proxy in proxies.values():
            proxy.stop()
        bridge.close()


# --- SIPp rows -------------------------------------------------------------------------------------------------


def _sdp(port: int | str, direction: str = "sendrecv", version: int = 1) -> str:
    return (
        f"v=0\no=sipp 1 {version} IN IP4 {HOST}\ns=sipp\nc=IN IP4 {HOST}\nt=0 0\n"
        f"m=audio {port} RTP/AVP 0 101\na=rtpmap:0 PCMU/8000\na=rtpmap:101 telephone-event/8000\n"
        f"a=fmtp:101 0-15\na=ptime:20\na={direction}\n"
    )


_DIALOG = """From: "Caller" <sip:caller@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
Call-ID: [call_id]"""


def _in_dialog(method: str, cseq: int, *, body: str = "", ctype: str = "") -> str:
    head = f"""{method} [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
{_DIALOG}
CSeq: {cseq} {method}
Contact: <sip:caller@[local_ip]:[local_port];transport=[transport]>
[routes]
Max-Forwards: 70
"""
    if body:
        return head + f"Content-Type: {ctype}\nContent-Length: [len]\n\n{body}"
    return head + "Content-Length: 0\n\n"


def _ack(cseq: int) -> str:
    return f"""  <send>
    <![CDATA[
ACK [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
{_DIALOG}
CSeq: {cseq} ACK
[routes]
Max-Forwards: 70
Content-Length: 0

    ]]>
  </send>
"""


def _reinvite(cseq: int, sink: int | str, direction: str, expect: str) -> str:
    return f"""  <send retrans="500">
    <![CDATA[
{_in_dialog("INVITE", cseq, body=_sdp(sink, direction, cseq), ctype="application/sdp")}
    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="200">
    <action><ereg regexp="a={expect}" search_in="body" check_it="true" assign_to="dir{cseq}"/></action>
  </recv>
{_ack(cseq)}  <nop><action><log message="[$dir{cseq}]"/></action></nop>
  <pause milliseconds="200"/>
"""


def caller_scenario(*, sink: int | str, pcap: str, play_ms: int, bye_by: str) -> str:
    """INVITE (media to ``sink``), play ``pcap`` (tone + RFC 4733 '1'), INFO '5', hold, resume, then BYE
    from the caller or wait for the bridge's. In-dialog requests follow the route set ([routes])."""
    if bye_by == "caller":
        bye = f"""  <send retrans="500">
    <![CDATA[
{_in_dialog("BYE", 6)}
    ]]>
  </send>
  <recv response="200" crlf="true"/>
"""
    else:
        bye = """  <recv request="BYE" timeout="20000"/>
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
"""
    info = _in_dialog("INFO", 2, body="Signal=5\nDuration=160\n", ctype="application/dtmf-relay")
    holds = _reinvite(3, sink, "sendonly", "recvonly") + _reinvite(4, sink, "sendrecv", "sendrecv")
    return f"""<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="interop_caller">
  <send retrans="500">
    <![CDATA[
INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: "Caller" <sip:caller@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>
Call-ID: [call_id]
CSeq: 1 INVITE
Contact: <sip:caller@[local_ip]:[local_port];transport=[transport]>
Max-Forwards: 70
Content-Type: application/sdp
Content-Length: [len]

{_sdp(sink)}
    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="200" rrs="true"/>
{_ack(1)}  <nop><action><exec play_pcap_audio="{pcap}"/></action></nop>
  <pause milliseconds="{play_ms}"/>
  <send retrans="500">
    <![CDATA[
{info}
    ]]>
  </send>
  <recv response="200"/>
{holds}{bye}</scenario>
"""


class Sink:
    """The caller's media socket: keeps the PCMU the bridge sends. SIPp's play_pcap_audio sends from its
    ``-mp`` port + 4 (a raw socket), and the bridge answers to where RTP comes from (symmetric RTP), so the
    sink binds ``media_port + 4`` and the SDP offers that port (as tests/integration/test_room_dial_in.py)."""

    def __init__(self) -> None:
        self.media_port, self.sock = _media_ports()
        self.sock.settimeout(0.1)
        self.port = self.media_port + 4
        self.payloads: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(2048)
            except TimeoutError:
                continue
            except OSError:
                return
            if len(data) >= 12 and data[0] >> 6 == 2 and data[1] & 0x7F == 0:
                self.payloads.append(data[12 + 4 * (data[0] & 0x0F) :])

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


def _media_ports() -> tuple[int, socket.socket]:
    """An even SIPp ``-mp`` whose +0..+5 are free; the +4 socket is returned bound."""
    for _ in range(200):
        base = free_udp_port(even=True)
        probes: list[socket.socket] = []
        try:
            for offset in (0, 1, 2, 3, 5):
                probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                probes.append(probe)
                probe.bind((HOST, base + offset))
            sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                sink.bind((HOST, base + 4))
            except OSError:
                sink.close()
                raise
            return base, sink
        except OSError:
            continue
        finally:
            for probe in probes:
                probe.close()
    raise RuntimeError("no free media ports")


def _freq(payloads: list[bytes]) -> float:
    pcm = ulaw2lin(b"".join(payloads))
    assert len(pcm) >= 8000 * 0.4, f"only {len(pcm)} samples"
    return dominant_freq(pcm)[0]


ROWS = [
    ("direct", "udp"),
    ("double", "udp"),
    ("double", "tcp"),
    ("single", "udp"),
    ("single", "tcp"),
]


@pytest.mark.parametrize("bye_by", ["caller", "bridge"])
@pytest.mark.parametrize(("path", "transport"), ROWS, ids=[f"{p}-{t}" for p, t in ROWS])
def test_sipp_caller(edge: dict[str, Any], tmp_path: Path, path: str, transport: str, bye_by: str) -> None:
    bridge: Bridge = edge["bridge"]
    if path == "direct":
        target = f"{HOST}:{bridge.port}"
    else:
        proxy: Kamailio = edge[path]
        target = f"{HOST}:{proxy.sip_port}"
    pcap = tmp_path / "caller.pcap"
    play_s = write_tone_dtmf_pcap(pcap, tone(CALLER_TONE, 0.8), "1")
    sink = Sink()
    started = len(bridge.recorder.events)
    sipp = start_sipp(
        caller_scenario(sink="[media_port+4]", pcap=str(pcap), play_ms=int(play_s * 1000) + 200, bye_by=bye_by),
        tmp_path,
        "caller",
        [target, "-s", ROOM, "-m", "1", "-t", "t1" if transport == "tcp" else "u1", "-i", HOST, "-mi", HOST,
         "-p", str(free_udp_port()), "-mp", str(sink.media_port), "-nostdin", "-timeout", "30",
         "-timeout_error", "-trace_err", "-trace_logs", "-trace_msg"],
    )  # fmt: skip
    try:
        mine = bridge.events_since(started)

        async def engine_side() -> None:
            rec = bridge.recorder
            await rec.wait_for(lambda: any(isinstance(e, IncomingCall) for e in mine()), 15)
            (incoming,) = [e for e in mine() if isinstance(e, IncomingCall)]
            await rec.wait_for(lambda: [e.on for e in mine() if isinstance(e, LegHold)] == [True, False], 20)
            if bye_by == "bridge":
                await asyncio.sleep(0.5)  # SIPp aborts on a BYE that overtakes the 200/ACK of its re-INVITE
                bridge.service.hangup(incoming.leg, "kicked")
            await rec.wait_for(lambda: any(isinstance(e, LegEnded) for e in mine()), 20)
            bridge.last = incoming.leg  # type: ignore[attr-defined]

        bridge.run(engine_side())
        code = bridge.run(wait_process(sipp, 25))
        assert code == 0, sipp_errors(tmp_path) + "\n" + (edge[path].log() if path != "direct" else "")
        leg = bridge.last  # type: ignore[attr-defined]
        (ended,) = [e for e in mine() if isinstance(e, LegEnded)]
        assert ended.by == ("local" if bye_by == "bridge" else "remote")
        digits = [(e.digit, e.source) for e in mine() if isinstance(e, LegDtmf)]
        assert ("1", "rfc4733") in digits and ("5", "info") in digits, digits
        assert abs(_freq(bridge.heard[leg.leg_id]) - CALLER_TONE) < 15  # the bridge heard the caller
        assert abs(_freq(sink.payloads) - BRIDGE_TONE) < 15  # the caller heard the bridge
    finally:
        stop_process(sipp)
        sink.close()


# --- baresip over TLS ------------------------------------------------------------------------------------------


def tls_baresip(tmp_path: Path, name: str, proxy: Kamailio) -> Baresip:
    """A headless baresip whose account sends everything over TLS to the proxy, trusting the test CA."""
    phone = Baresip(tmp_path, name, CALLER_TONE, secs=20)
    phone.proc.terminate()
    phone.proc.wait(5)
    assert proxy.ca is not None
    cert = phone.dir / "cert.pem"
    cert.write_bytes((proxy.ca.parent / "server.pem").read_bytes() + (proxy.ca.parent / "server.key").read_bytes())
    # its TLS listener takes the SIP port over TCP: pick one free for TCP as well (the UDP-only pick can collide)
    port = free_udp_tcp_port()
    config = (phone.dir / "config").read_text().replace(f"127.0.0.1:{phone.sip_port}", f"127.0.0.1:{port}")
    phone.sip_port = port
    # TLS only: the bridge's BYE can reach this phone in no other way than over its TLS connection
    config += f"sip_certificate   {cert}\nsip_cafile        {proxy.ca}\nsip_verify_server no\nsip_transports    tls\n"
    (phone.dir / "config").write_text(config)
    (phone.dir / "accounts").write_text(
        f"<sip:{name}@127.0.0.1;transport=tls>;regint=0;answermode=auto;audio_codecs=PCMU;"
        f'outbound="sip:127.0.0.1:{proxy.tls_port};transport=tls"\n'
    )
    import subprocess

    from tests.integration.sip_peers import BARESIP

    phone.proc = subprocess.Popen(
        [BARESIP, "-f", str(phone.dir), "-t", "50"],
        stdin=subprocess.DEVNULL,
        stdout=open(phone.dir / "log", "wb"),  # noqa: SIM115 - closed with the process
        stderr=subprocess.STDOUT,
    )
    return phone


@pytest.mark.parametrize("bye_by", ["phone", "bridge"])
@pytest.mark.parametrize("mode", ["double", "single"])
def test_baresip_over_tls_through_kamailio(edge: dict[str, Any], tmp_path: Path, mode: str, bye_by: str) -> None:
    bridge: Bridge = edge["bridge"]
    proxy: Kamailio = edge[mode]
    phone = tls_baresip(tmp_path, "tlsphone", proxy)
    started = len(bridge.recorder.events)
    mine = bridge.events_since(started)

    def stack_counter(name: str) -> int:
        """The sippy adapter's own count (the service's status() does not carry it)."""
        assert bridge.service._stack is not None
        return int(bridge.service._stack.counters[name])

    fallback_before = stack_counter("udp_fallback")

    async def scenario() -> None:
        await phone.connect()
        phone.send("dial", f"sip:{ROOM}@127.0.0.1:{proxy.tls_port}")
        rec = bridge.recorder
        await rec.wait_for(lambda: any(isinstance(e, IncomingCall) for e in mine()), 15)
        (incoming,) = [e for e in mine() if isinstance(e, IncomingCall)]
        await asyncio.sleep(1.2)
        phone.send("sndcode", "7")  # baresip sends RFC 4733
        await rec.wait_for(lambda: any(isinstance(e, LegDtmf) for e in mine()), 10)
        await asyncio.sleep(0.3)
        if bye_by == "bridge":
            bridge.service.hangup(incoming.leg, "kicked")
        else:
            phone.send("hangup")
        await rec.wait_for(lambda: any(isinstance(e, LegEnded) for e in mine()), 15)
        # the phone saw the call end: baresip reports CALL_CLOSED (for the bridge's BYE: it came over TLS)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while not any(e.get("type") == "CALL_CLOSED" for e in phone.events):
            assert loop.time() < deadline, f"baresip never saw the call close: {phone.events}"
            await asyncio.sleep(0.05)
        bridge.last = incoming.leg  # type: ignore[attr-defined]
        await phone.close()

    try:
        bridge.run(scenario())
        leg = bridge.last  # type: ignore[attr-defined]
        (ended,) = [e for e in mine() if isinstance(e, LegEnded)]
        assert ended.by == ("local" if bye_by == "bridge" else "remote")
        assert [(e.digit, e.source) for e in mine() if isinstance(e, LegDtmf)] == [("7", "rfc4733")]
        assert abs(_freq(bridge.heard[leg.leg_id]) - CALLER_TONE) < 15
        heard = phone.recording()
        assert abs(dominant_freq(heard[len(heard) // 4 :])[0] - BRIDGE_TONE) < 15
        if mode == "single" and bye_by == "bridge":
            # the bridge saw one ;transport=tls Record-Route and sent its BYE to the proxy's UDP side
            assert stack_counter("udp_fallback") > fallback_before
    finally:
        stop_process(phone.proc)


# --- linphone (linphonec) as the caller ----------------------------------------------------------------------

LINPHONE_ROWS = [
    ("direct", "udp"),
    ("double", "udp"),
    ("single", "tcp"),
    ("double", "tls"),
    ("single", "tls"),
]


@pytest.mark.parametrize("bye_by", ["phone", "bridge"])
@pytest.mark.parametrize(("path", "transport"), LINPHONE_ROWS, ids=[f"{p}-{t}" for p, t in LINPHONE_ROWS])
def test_linphone_caller(edge: dict[str, Any], tmp_path: Path, path: str, transport: str, bye_by: str) -> None:
    """linphonec calls the room: answered, audio both ways (its file player and recorder, by FFT), an RFC 4733
    digit and a SIP INFO digit reach the bridge, pause (hold) and resume, then a BYE from either side that the
    other end sees."""
    bridge: Bridge = edge["bridge"]
    proxy: Kamailio | None = None if path == "direct" else edge[path]
    if proxy is None:
        uri = f"sip:{ROOM}@{HOST}:{bridge.port}"
    else:
        uri = f"sip:{ROOM}@{HOST}:{proxy.port_for(transport)};transport={transport}"
    phone = Linphone(tmp_path, "linphone", CALLER_TONE, ca=proxy.ca if proxy is not None else None)
    started = len(bridge.recorder.events)
    mine = bridge.events_since(started)

    def wait(predicate: Callable[[], bool], what: str, timeout: float = 15) -> None:
        try:
            bridge.run(bridge.recorder.wait_for(predicate, timeout))
        except TimeoutError:
            raise AssertionError(f"{what}: {mine()}\n" + "\n".join(phone.lines[-20:])) from None

    def digits() -> list[tuple[str, str]]:
        return [(e.digit, e.source) for e in mine() if isinstance(e, LegDtmf)]

    def holds() -> list[bool]:
        return [e.on for e in mine() if isinstance(e, LegHold)]

    try:
        phone.send(f"call {uri}")
        after = phone.wait_for(r"^Call \d+ with .* connected\.", 20)
        wait(lambda: any(isinstance(e, IncomingCall) for e in mine()), "no call offered")
        (incoming,) = [e for e in mine() if isinstance(e, IncomingCall)]
        time.sleep(1.0)  # a second of audio each way
        phone.dtmf("1", "rfc4733")
        wait(lambda: ("1", "rfc4733") in digits(), "no RFC 4733 digit")
        phone.dtmf("5", "info")
        wait(lambda: ("5", "info") in digits(), "no INFO digit")
        # linphone starts no re-INVITE while its INFO transaction is open; linphonec takes up to a second (its
        # stdin poll) to read the bridge's 200, so wait until it has
        phone.wait_log(r"\[INFO\] transaction .* to \[COMPLETED\]", 1, 10)
        phone.send("pause")
        after = phone.wait_for(r"is now paused\.", 10, after=after)
        wait(lambda: holds() == [True], "no hold")
        phone.send("resume")
        wait(lambda: holds() == [True, False], "no resume")
        time.sleep(0.6)
        if bye_by == "bridge":
            bridge.loop.call_soon_threadsafe(bridge.service.hangup, incoming.leg, "kicked")
        else:
            phone.send("terminate")
        phone.wait_for(r"^Call \d+ with .* ended", 15, after=after)
        wait(lambda: any(isinstance(e, LegEnded) for e in mine()), "the bridge never saw the call end")
        phone.close()  # the recording is complete once linphonec has quit
        (ended,) = [e for e in mine() if isinstance(e, LegEnded)]
        assert ended.by == ("local" if bye_by == "bridge" else "remote")
        assert sorted(set(digits())) == [("1", "rfc4733"), ("5", "info")], digits()
        assert abs(_freq(bridge.heard[incoming.leg.leg_id]) - CALLER_TONE) < 15  # the bridge heard linphone
        heard = phone.recording()
        assert abs(dominant_freq(heard[len(heard) // 4 :])[0] - BRIDGE_TONE) < 15  # linphone heard the bridge
        # the BYE crossed the phone's side of the path on the row's transport (the bridge's one: received so)
        wire = r"new bytes from \[{t}://[^\]]+\]:\nBYE " if bye_by == "bridge" else r"sent to \[{t}://[^\]]+\].*\nBYE "
        assert phone.log_count(wire.format(t=transport.upper())) == 1, f"no BYE over {transport}: {phone.dir}/log"
    finally:
        phone.close()


# --- a TLS phone in a room, kicked through the engine's control API --------------------------------------------


@pytest.mark.parametrize("mode", ["double", "single"])
def test_tls_phone_in_a_room_is_kicked_over_the_control_api(tmp_path: Path, mode: str) -> None:
    """``bridge run`` behind Kamailio: baresip (TLS only) joins an open room through the proxy, the leg is
    kicked with POST /conferences/<run>/legs/<leg>/kick (what the portal's kick does); the phone gets the
    BYE, which can only have reached it over its TLS connection."""
    from click.testing import CliRunner

    from bridge.cli import main
    from tests.integration.ic_harness import Appliance, wait_for

    proxy = Kamailio(tmp_path / "kamailio", bridge_port=0, double_rr=mode == "double", children=2)
    proxy.dir.mkdir()
    (tmp_path / "bridge").mkdir()
    appliance = Appliance(tmp_path / "bridge", trunk_port=proxy.internal_port)
    proxy.bridge_port = appliance.sip_port
    result = CliRunner().invoke(
        main, ["--config", str(appliance.config_path), "room", "add", "--number", "7001", "--name", "TLS room"]
    )
    assert result.exit_code == 0, result.output
    phone: Baresip | None = None
    other: Baresip | None = None
    try:
        appliance.start()
        proxy.start()
        phone = tls_baresip(tmp_path, "kickme", proxy)
        other = Baresip(tmp_path, "stays", 880.0, secs=20)  # keeps the room open: kicking the last one ends it

        async def scenario(phone: Baresip, other: Baresip) -> None:
            await other.connect()
            other.send("dial", appliance.sip_uri("7001"))
            loop = asyncio.get_running_loop()

            def connected(count: int) -> dict[str, Any] | None:
                conf = next((c for c in appliance.conferences() if c["subject"] == "TLS room"), None)
                if conf is None:
                    return None
                legs = [leg for leg in conf["legs"] if leg["status"] == "connected"]
                return {"run_id": conf["run_id"], "legs": legs} if len(legs) >= count else None

            first = await loop.run_in_executor(None, lambda: wait_for(lambda: connected(1), 20, "the UDP phone in"))
            await phone.connect()
            phone.send("dial", f"sip:7001@127.0.0.1:{proxy.tls_port}")
            both = await loop.run_in_executor(None, lambda: wait_for(lambda: connected(2), 20, "the TLS phone in"))
            stayer = first["legs"][0]["leg_id"]
            (tls_leg,) = [leg["leg_id"] for leg in both["legs"] if leg["leg_id"] != stayer]
            await asyncio.sleep(0.5)
            appliance.client.kick(both["run_id"], tls_leg)
            deadline = loop.time() + 15
            while not any(e.get("type") == "CALL_CLOSED" for e in phone.events):
                assert loop.time() < deadline, f"the phone never got the BYE: {phone.events}\n{proxy.log()}"
                await asyncio.sleep(0.05)
            await phone.close()
            assert not any(e.get("type") == "CALL_CLOSED" for e in other.events)  # only the kicked one left
            await other.close()

        asyncio.run(scenario(phone, other))
        log = (phone.dir / "log").read_text(errors="replace")
        assert "transport=tls" in log and "terminated" in log, log[-2000:]
    finally:
        for peer in (phone, other):
            if peer is not None:
                stop_process(peer.proc)
        proxy.stop()
        appliance.stop()


# --- the bridge dials out through Kamailio to a phone registered over TCP or TLS -------------------------------

OUTBOUND_ROWS = [("double", "tls"), ("single", "tls"), ("single", "tcp")]


@pytest.mark.parametrize(("path", "transport"), OUTBOUND_ROWS, ids=[f"{p}-{t}" for p, t in OUTBOUND_ROWS])
def test_bridge_dials_a_phone_registered_behind_kamailio(
    edge: dict[str, Any], tmp_path: Path, path: str, transport: str
) -> None:
    """A dial-out (what an IC's or a room's dial-a-participant does: SipService.dial on a trunk group) via the
    trunk group whose gateway is Kamailio, to a linphone registered there over TCP or TLS (and reachable only
    through its own connection: it has no server certificate): the INVITE reaches the phone on that transport,
    it answers, audio both ways by FFT, and the bridge's BYE arrives over the same transport."""
    bridge: Bridge = edge["bridge"]
    proxy: Kamailio = edge[path]
    user = f"55512{OUTBOUND_ROWS.index((path, transport)):02d}"  # one user per row: registrations outlive a test
    phone = Linphone(tmp_path, "callee", CALLER_TONE, ca=proxy.ca)
    try:
        phone.register(user, f"sip:{HOST}:{proxy.port_for(transport)};transport={transport}")

        async def dial() -> SipLeg:
            leg = bridge.service.dial(called=user, calling=ROOM, trunk_group=f"via-{path}")
            bridge.start_media(leg)
            return leg

        leg: SipLeg = bridge.run(dial())

        def mine() -> list[Any]:
            return [e for e in bridge.recorder.events if e.leg is leg]

        bridge.run(bridge.recorder.wait_for(lambda: any(isinstance(e, LegAnswered) for e in mine()), 20))
        after = phone.wait_for(r"^Call \d+ with .* connected\.", 10)
        time.sleep(1.5)  # audio both ways
        bridge.loop.call_soon_threadsafe(bridge.service.hangup, leg, "normal")
        phone.wait_for(r"^Call \d+ with .* ended", 15, after=after)
        bridge.run(bridge.recorder.wait_for(lambda: any(isinstance(e, LegEnded) for e in mine()), 10))
        phone.close()
        wire = transport.upper()
        assert phone.log_count(rf"new bytes from \[{wire}://[^\]]+\]:\nINVITE sip:{user}@") == 1, phone.dir
        assert phone.log_count(rf"new bytes from \[{wire}://[^\]]+\]:\nBYE ") == 1, phone.dir
        assert abs(_freq(bridge.heard[leg.leg_id]) - CALLER_TONE) < 15  # the bridge heard the phone
        heard = phone.recording()
        assert abs(dominant_freq(heard[len(heard) // 4 :])[0] - BRIDGE_TONE) < 15  # the phone heard the bridge
    finally:
        phone.close()


# --- the ctl module: kamcmd against the running proxy ----------------------------------------------------------


def test_kamcmd_lists_and_reloads_the_dispatcher(tmp_path: Path) -> None:
    """The shipped config loads ``ctl`` on a local unix socket, so the operator guide's ``kamcmd
    dispatcher.reload`` works: a second bridge node added to dispatcher.list appears in ``dispatcher.list``
    after the reload, and is gone again after the next one."""
    first, second = free_udp_port(), free_udp_port()
    proxy = Kamailio(tmp_path / "kamailio", bridge_port=first, children=1)
    proxy.dir.mkdir()
    with proxy:
        listed = proxy.kamcmd("dispatcher.list")
        assert f"sip:{HOST}:{first}" in listed and f"sip:{HOST}:{second}" not in listed, listed
        nodes = proxy.dir / "etc" / "dispatcher.list"
        one = nodes.read_text()
        nodes.write_text(one + f"1 sip:{HOST}:{second} 0 0 duid=bridge-two\n")
        proxy.kamcmd("dispatcher.reload")
        listed = proxy.kamcmd("dispatcher.list")
        assert f"sip:{HOST}:{first}" in listed and f"sip:{HOST}:{second}" in listed, listed
        nodes.write_text(one)
        # the dispatcher refuses a reload within reload_delta (5 s) of the last one: kamcmd says so and fails
        deadline = time.monotonic() + 15
        while True:
            try:
                proxy.kamcmd("dispatcher.reload")
                break
            except RuntimeError as refused:
                assert "ongoing reload" in str(refused).lower() and time.monotonic() < deadline, refused
                time.sleep(0.5)
        assert f"sip:{HOST}:{second}" not in proxy.kamcmd("dispatcher.list")
