"""Helpers for the SIP integration tests and bench/sip_calls.py: SIPp scenarios and runner, a running
:class:`SipService` with an event recorder, and a headless baresip. Free ports, tones, the RTP pcap writer for
SIPp's play_pcap_audio and the other audio primitives come from rtp_peers.py (re-exported where tests use them).

SIPp scenarios are generated from the templates below into the test's tmp directory (so the expected status,
digest credentials or INFO digits are parameters, not copies of XML). A missing ``sipp`` binary makes the
tests fail (``FileNotFoundError``), never skip.
"""

from __future__ import annotations

import asyncio
import functools
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bridge.config import Config, from_dict
from bridge.sip.events import LegEvent
from bridge.sip.service import SipService
from tests.integration.rtp_peers import PTIME as PTIME  # re-exported for the SIP tests
from tests.integration.rtp_peers import baresip_config, free_tcp_port, free_udp_port, launch_sipp, read_wav, write_wav
from tests.integration.rtp_peers import dominant_freq as dominant_freq
from tests.integration.rtp_peers import stop as stop_process
from tests.integration.rtp_peers import tone as _tone
from tests.integration.rtp_peers import write_tone_dtmf_pcap as write_tone_dtmf_pcap

# The SIP tests' tones truncate toward zero (rtp_peers.tone rounds by default): the same samples as ever.
tone = functools.partial(_tone, rounded=False)


def rtp_range(size: int = 40) -> str:
    """A ``low-high`` RTP range of ``size`` ports starting at a currently free even port."""
    low = free_udp_port(even=True)
    low = min(low, 65535 - size)
    low -= low % 2
    return f"{low}-{low + size - 1}"


def make_config(
    *,
    sip_port: int,
    trunk_groups: list[dict[str, Any]],
    rtp: str | None = None,
    sip: dict[str, Any] | None = None,
    ring_timeout_s: float = 20.0,
) -> Config:
    return from_dict(
        {
            "sip": {
                "listen": f"127.0.0.1:{sip_port}",
                "rtp_ports": rtp or rtp_range(),
                "options_interval_s": 30.0,
                **(sip or {}),
            },
            "trunk_group": trunk_groups,
            "dnis": {"common": "5550100", "pool": ["5550101-5550110"]},
            "conference": {"ring_timeout_s": ring_timeout_s},
        }
    )


class Recorder:
    """Collects the service's events; ``wait_for`` awaits a predicate over them."""

    def __init__(self) -> None:
        self.events: list[LegEvent] = []
        self._changed = asyncio.Event()
        self.hooks: list[Callable[[LegEvent], None]] = []

    def __call__(self, event: LegEvent) -> None:
        self.events.append(event)
        for hook in self.hooks:
            hook(event)
        self._changed.set()

    def of(self, kind: type[LegEvent]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 20.0) -> None:
        async def waiter() -> None:
            while not predicate():  # re-checked on every event and at least every 50 ms
                self._changed.clear()
                try:
                    await asyncio.wait_for(self._changed.wait(), 0.05)
                except TimeoutError:
                    pass

        await asyncio.wait_for(waiter(), timeout)


async def started_service(config: Config, recorder: Recorder, **kwargs: Any) -> SipService:
    service = SipService(config, on_event=recorder, **kwargs)
    await service.start()
    return service


# --- SIPp ------------------------------------------------------------------------------------------------

SDP_OFFER = """v=0
o=sipp 1 1 IN IP[local_ip_type] [local_ip]
s=sipp
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 0 101
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=ptime:20
a=sendrecv
"""

_UAC_HEAD = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="{name}">
  <send retrans="500">
    <![CDATA[
INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: "Caller" <sip:{from_user}@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>
Call-ID: [call_id]
CSeq: 1 INVITE
Contact: <sip:sipp@[local_ip]:[local_port];transport=[transport]>
{extra_headers}Max-Forwards: 70
Content-Type: application/sdp
Content-Length: [len]

{sdp}
    ]]>
  </send>
"""


def uac_refused_scenario(status: int) -> str:
    """INVITE [service]; expect exactly ``status`` (ACK it); anything else fails the call."""
    return (
        _UAC_HEAD.format(name=f"uac_{status}", from_user="sipp", extra_headers="", sdp=SDP_OFFER)
        + f"""  <recv response="100" optional="true"/>
  <recv response="{status}"/>
  <send>
    <![CDATA[
ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: "Caller" <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
Call-ID: [call_id]
CSeq: 1 ACK
Max-Forwards: 70
Content-Length: 0

    ]]>
  </send>
</scenario>
"""
    )


def uac_dtmf_scenario(*, pcap: str, pause_ms: int, info_digits: str, calling: str) -> str:
    """Call [service] with P-Asserted-Identity ``calling``, play ``pcap`` (audio + RFC 4733), send each of
    ``info_digits`` as SIP INFO (alternating application/dtmf-relay and application/dtmf), then BYE."""
    infos = []
    for i, digit in enumerate(info_digits):
        if i % 2 == 0:
            ctype, body = "application/dtmf-relay", f"Signal={digit}\r\nDuration=160\r\n"
        else:
            ctype, body = "application/dtmf", digit
        infos.append(
            f"""  <send retrans="500">
    <![CDATA[
INFO sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: "Caller" <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
Call-ID: [call_id]
CSeq: {10 + i} INFO
Contact: <sip:sipp@[local_ip]:[local_port];transport=[transport]>
Max-Forwards: 70
Content-Type: {ctype}
Content-Length: [len]

{body}
    ]]>
  </send>
  <recv response="200"/>
  <pause milliseconds="100"/>
"""
        )
    pai = f"P-Asserted-Identity: <sip:{calling}@[local_ip]>\n"
    return (
        _UAC_HEAD.format(name="uac_dtmf", from_user="anonymous", extra_headers=pai, sdp=SDP_OFFER)
        + f"""  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="200" rtd="true"/>
  <send>
    <![CDATA[
ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: "Caller" <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
Call-ID: [call_id]
CSeq: 1 ACK
Max-Forwards: 70
Content-Length: 0

    ]]>
  </send>
  <nop>
    <action>
      <exec play_pcap_audio="{pcap}"/>
    </action>
  </nop>
  <pause milliseconds="{pause_ms}"/>
{"".join(infos)}  <send retrans="500">
    <![CDATA[
BYE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: "Caller" <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
Call-ID: [call_id]
CSeq: 50 BYE
Contact: <sip:sipp@[local_ip]:[local_port];transport=[transport]>
Max-Forwards: 70
Content-Length: 0

    ]]>
  </send>
  <recv response="200" crlf="true"/>
</scenario>
"""
    )


def uas_scenario(
    *, challenge: int | None = None, realm: str = "trunk.example", expect_header: str | None = None
) -> str:
    """Answer an INVITE, then wait for the caller's BYE. ``challenge``: answer the first INVITE with 401/407
    and check the retry carries credentials (sippy sends the retry before the ACK of the challenge; the
    responses copy the retry's Via/CSeq since SIPp's [last_*] would be the ACK's). ``expect_header``: fail
    the call unless the INVITE carries that header."""
    auth = ""
    seen = ""
    via, cseq = "[last_Via:]", "[last_CSeq:]"
    if challenge is not None:
        seen = "X-Seen-Auth: [$dummy]\n"
        via, cseq = "Via: [$via2]", "CSeq: [$cseq2]"
        hdr = "WWW-Authenticate" if challenge == 401 else "Proxy-Authenticate"
        want = "Authorization:" if challenge == 401 else "Proxy-Authorization:"
        auth = f"""  <recv request="INVITE"/>
  <send>
    <![CDATA[
SIP/2.0 {challenge} {"Unauthorized" if challenge == 401 else "Proxy Authentication Required"}
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
[last_CSeq:]
{hdr}: Digest realm="{realm}", nonce="[call_number]abc{challenge}", algorithm=MD5
Content-Length: 0

    ]]>
  </send>
  <recv request="INVITE">
    <action>
      <ereg regexp="Digest" search_in="hdr" header="{want}" check_it="true" assign_to="dummy"/>
      <ereg regexp=".*" search_in="hdr" header="Via:" assign_to="via2"/>
      <ereg regexp=".*" search_in="hdr" header="CSeq:" assign_to="cseq2"/>
    </action>
  </recv>
  <recv request="ACK"/>
"""
    elif expect_header is not None:
        seen = "X-Seen-Header: [$dummy]\n"
        auth = f"""  <recv request="INVITE">
    <action>
      <ereg regexp=".+" search_in="hdr" header="{expect_header}:" check_it="true" assign_to="dummy"/>
    </action>
  </recv>
"""
    else:
        auth = """  <recv request="INVITE"/>
"""
    return f"""<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="uas">
{auth}  <send>
    <![CDATA[
SIP/2.0 180 Ringing
{via}
[last_From:]
[last_To:];tag=[pid]SIPpTag02[call_number]
[last_Call-ID:]
{cseq}
Contact: <sip:[local_ip]:[local_port];transport=[transport]>
{seen}Content-Length: 0

    ]]>
  </send>
  <send retrans="500">
    <![CDATA[
SIP/2.0 200 OK
{via}
[last_From:]
[last_To:];tag=[pid]SIPpTag02[call_number]
[last_Call-ID:]
{cseq}
Contact: <sip:[local_ip]:[local_port];transport=[transport]>
Content-Type: application/sdp
Content-Length: [len]

{SDP_OFFER}
    ]]>
  </send>
  <recv request="ACK"/>
  <recv request="BYE" timeout="60000"/>
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
</scenario>
"""


def sipp_common(local_port: int, media_port: int, *, ip: str = "127.0.0.1", timeout_s: int = 60) -> list[str]:
    return [
        "-i", ip, "-p", str(local_port), "-mi", ip, "-mp", str(media_port),
        "-nostdin", "-timeout", str(timeout_s), "-timeout_error", "-trace_err", "-aa",
        "-buff_size", "4194304",  # SIPp's 64 KiB default overflows with 100 INVITEs in one burst
    ]  # fmt: skip


def start_sipp(scenario: str, workdir: Path, name: str, args: list[str]) -> subprocess.Popen[bytes]:
    """:func:`rtp_peers.launch_sipp` in this module's argument order (``args`` from :func:`sipp_common`)."""
    return launch_sipp(workdir, name, scenario, args)


async def wait_process(proc: subprocess.Popen[bytes], timeout: float) -> int:
    """Wait for a process without blocking the event loop; kill it on timeout."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while proc.poll() is None:
        if loop.time() > deadline:
            proc.kill()
            proc.wait()
            raise TimeoutError(f"{proc.args[:3]} still running after {timeout} s")
        await asyncio.sleep(0.05)
    return int(proc.returncode)


def sipp_errors(workdir: Path) -> str:
    return "\n".join(p.read_text(errors="replace")[-2000:] for p in sorted(workdir.glob("*errors.log")))


def cpu_seconds_of(pid: int) -> float:
    """User + system CPU seconds of a process (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- baresip (headless, ctrl_tcp; recipe: ../shared/peers/sip/baresip_tone_test.py) -----------------------

BARESIP = shutil.which("baresip") or "baresip"


class Baresip:
    """One headless baresip: plays a tone from a WAV (aufile), records what it receives (sndfile), driven over
    ctrl_tcp (netstring JSON). ``events`` collects its event messages."""

    def __init__(self, workdir: Path, name: str, freq: float, *, secs: float = 30.0) -> None:
        self.dir = workdir / name
        (self.dir / "rec").mkdir(parents=True)
        self.name = name
        self.sip_port = free_udp_port()
        self.ctrl_port = free_tcp_port()
        rtp = rtp_range(20)
        write_wav(self.dir / "mic.wav", tone(freq, secs))
        (self.dir / "config").write_text(
            baresip_config(self.dir, sip_port=self.sip_port, rtp_ports=rtp, ctrl_port=self.ctrl_port)
        )
        (self.dir / "accounts").write_text(
            f"<sip:{name}@127.0.0.1:{self.sip_port}>;regint=0;answermode=auto;audio_codecs=PCMU\n"
        )
        (self.dir / "contacts").write_text("")
        self.proc = subprocess.Popen(
            [BARESIP, "-f", str(self.dir), "-t", str(int(secs) + 30)],
            stdin=subprocess.DEVNULL,
            stdout=open(self.dir / "log", "wb"),  # noqa: SIM115 - closed with the process
            stderr=subprocess.STDOUT,
        )
        self.events: list[dict[str, Any]] = []
        self._buf = b""
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while True:
            try:
                self._reader, self._writer = await asyncio.open_connection("127.0.0.1", self.ctrl_port)
                break
            except OSError:
                if loop.time() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"baresip {self.name}: ctrl_tcp never opened, see {self.dir}/log") from None
                await asyncio.sleep(0.1)
        self._task = loop.create_task(self._read())

    async def _read(self) -> None:
        import json

        assert self._reader is not None
        while True:
            chunk = await self._reader.read(65536)
            if not chunk:
                return
            self._buf += chunk
            while b":" in self._buf:
                size, rest = self._buf.split(b":", 1)
                if not size.isdigit() or len(rest) < int(size) + 1:
                    break
                self.events.append(json.loads(rest[: int(size)]))
                self._buf = rest[int(size) + 1 :]

    def send(self, command: str, params: str = "") -> None:
        import json

        assert self._writer is not None
        body = json.dumps({"command": command, "params": params, "token": command}).encode()
        self._writer.write(b"%d:%s," % (len(body), body))

    def dtmf_received(self) -> str:
        return "".join(e.get("param", "") for e in self.events if e.get("type") == "CALL_DTMF_START")

    def recording(self) -> np.ndarray[Any, Any]:
        """What this baresip received and decoded (sndfile's dump-*-dec.wav)."""
        files = sorted((self.dir / "rec").glob("dump-*-dec.wav"))
        if not files:
            raise AssertionError(f"baresip {self.name} recorded nothing (see {self.dir}/log)")
        return read_wav(files[0])

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._task is not None:
            self._task.cancel()
        stop_process(self.proc)


def uac_hold_scenario() -> str:
    """Call [service]; re-INVITE with a=sendonly (hold; the answer must say recvonly), re-INVITE with
    a=sendrecv (resume; answer sendrecv), then BYE."""

    def reinvite(cseq: int, direction: str, expect: str) -> str:
        sdp = SDP_OFFER.replace("o=sipp 1 1", f"o=sipp 1 {cseq}").replace("a=sendrecv", f"a={direction}")
        return f"""  <send retrans="500">
    <![CDATA[
INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: "Caller" <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
Call-ID: [call_id]
CSeq: {cseq} INVITE
Contact: <sip:sipp@[local_ip]:[local_port];transport=[transport]>
Max-Forwards: 70
Content-Type: application/sdp
Content-Length: [len]

{sdp}
    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="200">
    <action>
      <ereg regexp="a={expect}" search_in="body" check_it="true" assign_to="dir{cseq}"/>
    </action>
  </recv>
  <send>
    <![CDATA[
ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: "Caller" <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
Call-ID: [call_id]
CSeq: {cseq} ACK
X-Seen: [$dir{cseq}]
Max-Forwards: 70
Content-Length: 0

    ]]>
  </send>
  <pause milliseconds="300"/>
"""

    base = uac_dtmf_scenario(pcap="", pause_ms=300, info_digits="", calling="+15550000000")
    head, _, tail = base.partition("  <nop>")
    _, _, bye = tail.partition('<pause milliseconds="300"/>\n')
    return head + reinvite(2, "sendonly", "recvonly") + reinvite(3, "sendrecv", "sendrecv") + bye


def uac_cancel_scenario() -> str:
    """Call [service], wait for 180, CANCEL: expect 200 (CANCEL) and 487 (INVITE), ACK it."""
    head = _UAC_HEAD.format(name="uac_cancel", from_user="sipp", extra_headers="", sdp=SDP_OFFER)
    return (
        head
        + """  <recv response="100" optional="true"/>
  <recv response="180"/>
  <pause milliseconds="300"/>
  <send>
    <![CDATA[
CANCEL sip:[service]@[remote_ip]:[remote_port] SIP/2.0
[last_Via:]
From: "Caller" <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>
Call-ID: [call_id]
CSeq: 1 CANCEL
Max-Forwards: 70
Content-Length: 0

    ]]>
  </send>
  <recv response="200"/>
  <recv response="487"/>
  <send>
    <![CDATA[
ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
[last_Via:]
From: "Caller" <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
Call-ID: [call_id]
CSeq: 1 ACK
Max-Forwards: 70
Content-Length: 0

    ]]>
  </send>
</scenario>
"""
    )


def uas_ring_only_scenario() -> str:
    """Ring (180) and never answer; expect the caller's CANCEL, answer 200 + 487, take the ACK."""
    return """<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="uas_ring_only">
  <recv request="INVITE">
    <action>
      <ereg regexp="[0-9]+" search_in="hdr" header="CSeq:" assign_to="cseq1"/>
    </action>
  </recv>
  <send>
    <![CDATA[
SIP/2.0 180 Ringing
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag03[call_number]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:[local_ip]:[local_port];transport=[transport]>
Content-Length: 0

    ]]>
  </send>
  <recv request="CANCEL" timeout="30000"/>
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
  <send>
    <![CDATA[
SIP/2.0 487 Request Terminated
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag03[call_number]
[last_Call-ID:]
CSeq: [$cseq1] INVITE
Content-Length: 0

    ]]>
  </send>
  <recv request="ACK"/>
</scenario>
"""
