"""SIP call-setup benchmark: the bridge dialling a SIPp UAS, against SIPp UAC -> the same UAS (baseline);
then SIPp calling the bridge straight (baseline) against SIPp calling it through Kamailio (etc/kamailio/)
over UDP and TCP: the proxy's cost in set-ups per second and its added latency (INVITE -> 180, and -> 200).

    .venv/bin/python bench/sip_calls.py [--calls 300] [--concurrency 50] [--no-proxy]

Each call is INVITE -> 180 -> 200 -> ACK -> BYE -> 200, with an RTP endpoint opened per leg on the bridge
side (what a real dial-out costs). Figures: call setups per second (wall clock, first INVITE to last BYE
answered) and CPU seconds per call of the calling process (the bridge process: asyncio thread + sippy
thread; the baseline: the SIPp UAC process), plus the ratios. Both runs use the same UAS scenario,
concurrency and call count, in the same run of this script.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root, for the tests.* helpers

from tests.integration.rtp_peers import free_udp_port  # noqa: E402
from tests.integration.rtp_peers import stop as stop_process  # noqa: E402
from tests.integration.sip_peers import (  # noqa: E402 - test helpers live with the integration tests
    Recorder,
    make_config,
    rtp_range,
    sipp_common,
    start_sipp,
    started_service,
    uas_scenario,
    wait_process,
)

SIPP = shutil.which("sipp") or "sipp"
LOCK = Path(tempfile.gettempdir()) / "bridge-conference-load.lock"  # shared with bench/conference_load.py

from bridge.sip.events import IncomingCall, LegAnswered, LegEnded, LegEvent, LegFailed  # noqa: E402

# A UAC that follows the route set (Kamailio record-routes; in-dialog requests without Route get 404 there).
_ROUTED_UAC = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="routed_uac">
  <send retrans="500"><![CDATA[
INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:bench@[local_ip]:[local_port]>;tag=[pid]T[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>
Call-ID: [call_id]
CSeq: 1 INVITE
Contact: <sip:bench@[local_ip]:[local_port];transport=[transport]>
Max-Forwards: 70
Content-Type: application/sdp
Content-Length: [len]

v=0
o=bench 1 1 IN IP4 [local_ip]
s=-
c=IN IP4 [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 0
a=rtpmap:0 PCMU/8000
]]></send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="200" rrs="true" rtd="true"/>
  <send><![CDATA[
ACK [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:bench@[local_ip]:[local_port]>;tag=[pid]T[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
Call-ID: [call_id]
CSeq: 1 ACK
[routes]
Max-Forwards: 70
Content-Length: 0

]]></send>
  <send retrans="500"><![CDATA[
BYE [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:bench@[local_ip]:[local_port]>;tag=[pid]T[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
Call-ID: [call_id]
CSeq: 2 BYE
[routes]
Max-Forwards: 70
Content-Length: 0

]]></send>
  <recv response="180" optional="true"/>
  <recv response="200" crlf="true"/>
</scenario>
"""


async def bridge_run(workdir: Path, calls: int, concurrency: int) -> tuple[float, float, int]:
    uas_port = free_udp_port()
    uas = start_sipp(
        uas_scenario(), workdir, "uas_bridge", ["-m", str(calls), *sipp_common(uas_port, free_udp_port(even=True))]
    )
    config = make_config(
        sip_port=free_udp_port(),
        rtp=rtp_range(4 * concurrency + 40),
        trunk_groups=[{"name": "pstn", "gateways": [f"127.0.0.1:{uas_port}"]}],
    )
    recorder = Recorder()
    service = await started_service(config, recorder)
    await asyncio.sleep(0.5)
    state = {"dialed": 0, "done": 0, "failed": 0}
    finished = asyncio.Event()

    def dial() -> None:
        state["dialed"] += 1
        service.dial(called=f"1555{state['dialed']:07d}", calling="+15551230001")

    def on_event(event: LegEvent) -> None:
        if isinstance(event, LegAnswered):
            service.hangup(event.leg)
        elif isinstance(event, LegEnded | LegFailed):
            state["done"] += 1
            state["failed"] += isinstance(event, LegFailed)
            if state["dialed"] < calls:
                dial()
            elif state["done"] == calls:
                finished.set()

    recorder.hooks.append(on_event)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for _ in range(min(concurrency, calls)):
        dial()
    await asyncio.wait_for(finished.wait(), 300)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    uas_rc = await wait_process(uas, 30)
    await service.stop()
    stop_process(uas)
    return wall, cpu, state["failed"] if uas_rc == 0 else state["failed"] + 1000 * uas_rc


async def sipp_run(workdir: Path, calls: int, concurrency: int) -> tuple[float, float, int]:
    uas_port = free_udp_port()
    uas = start_sipp(
        uas_scenario(), workdir, "uas_sipp", ["-m", str(calls), *sipp_common(uas_port, free_udp_port(even=True))]
    )
    await asyncio.sleep(0.5)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall0 = time.perf_counter()
    uac_args = ["-sn", "uac", "-m", str(calls), "-l", str(concurrency), "-r", "10000", "-d", "0"]
    proc = await asyncio.create_subprocess_exec(
        SIPP, f"127.0.0.1:{uas_port}", *uac_args, *sipp_common(free_udp_port(), free_udp_port(even=True)),
        cwd=workdir, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    rc = await proc.wait()
    wall = time.perf_counter() - wall0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    await wait_process(uas, 30)
    stop_process(uas)
    return wall, cpu, 0 if rc == 0 else -1


async def inbound_run(
    workdir: Path, name: str, bridge_port: int, target: str, transport: str, calls: int, concurrency: int
) -> tuple[float, list[float], int]:
    """SIPp calls the bridge (answering every call at once) at ``target``: (wall s, INVITE->200 ms per call,
    failed calls)."""
    config = make_config(
        sip_port=bridge_port,
        rtp=rtp_range(4 * concurrency + 40),
        trunk_groups=[{"name": "edge", "gateways": ["127.0.0.1:5999"]}],
    )
    recorder = Recorder()
    service = await started_service(config, recorder)
    recorder.hooks.append(lambda e: service.answer(e.leg) if isinstance(e, IncomingCall) else None)
    await asyncio.sleep(0.3)
    args = [target, "-s", "5550100", "-m", str(calls), "-l", str(concurrency), "-r", "400", "-rp", "1000",
            "-t", "t1" if transport == "tcp" else "u1", "-trace_rtt", "-rtt_freq", "1",
            *sipp_common(free_udp_port(), free_udp_port(even=True))]  # fmt: skip
    wall0 = time.perf_counter()
    proc = start_sipp(_ROUTED_UAC, workdir, name, args)
    rc = await wait_process(proc, 300)
    wall = time.perf_counter() - wall0
    await service.stop()
    rtts: list[float] = []
    for path in workdir.glob(f"{name}_*_rtt.csv"):
        for line in path.read_text().splitlines()[1:]:
            fields = line.split(";")
            if len(fields) >= 3 and fields[2].replace(".", "", 1).isdigit():
                rtts.append(float(fields[2]))
    failed = sum(isinstance(e, LegFailed) for e in recorder.events) + (0 if rc == 0 else 1000 * rc)
    return wall, rtts, failed


class _Probe:
    """One call at a time over a plain socket (UDP or TCP): INVITE -> 180 and INVITE -> 200 timed with
    perf_counter, then ACK and BYE along the route set. The 180 is the bridge's sippy thread alone (sent on
    receipt), so INVITE -> 180 is the signalling path and what a proxy adds to it; the 200 also crosses to the
    asyncio service and back (the answer), which waits for the sippy reactor's next beat (REACTOR_HZ)."""

    def __init__(self, target: tuple[str, int], transport: str) -> None:
        import socket

        self.target, self.transport = target, transport
        kind = socket.SOCK_STREAM if transport == "tcp" else socket.SOCK_DGRAM
        self.sock = socket.socket(socket.AF_INET, kind)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(5)
        if transport == "tcp":
            self.sock.connect(target)
        self.port = self.sock.getsockname()[1]
        self.buf = b""

    def send(self, text: str) -> None:
        data = text.replace("\n", "\r\n").encode()
        if self.transport == "tcp":
            self.sock.sendall(data)
        else:
            self.sock.sendto(data, self.target)

    def recv(self) -> str:
        if self.transport != "tcp":
            return self.sock.recv(65535).decode()
        while True:
            head, sep, rest = self.buf.partition(b"\r\n\r\n")
            if sep:
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith((b"content-length:", b"l:")):
                        length = int(line.split(b":", 1)[1])
                if len(rest) >= length:
                    self.buf = rest[length:]
                    return (head + sep + rest[:length]).decode()
            self.buf += self.sock.recv(65535)

    def call(self, n: int) -> tuple[float, float]:
        t = self.transport.upper()
        host, port = self.target
        common = f"From: <sip:probe@127.0.0.1:{self.port}>;tag=p{n}\nCall-ID: probe-{n}-{self.port}\nMax-Forwards: 70\n"
        sdp = "v=0\no=p 1 1 IN IP4 127.0.0.1\ns=-\nc=IN IP4 127.0.0.1\nt=0 0\nm=audio 9 RTP/AVP 0\n"
        invite = (
            f"INVITE sip:5550100@{host}:{port} SIP/2.0\nVia: SIP/2.0/{t} 127.0.0.1:{self.port};branch=z9hG4bKp{n}a\n"
            f"{common}To: <sip:5550100@{host}>\nCSeq: 1 INVITE\n"
            f"Contact: <sip:probe@127.0.0.1:{self.port};transport={self.transport}>\n"
            f"Content-Type: application/sdp\nContent-Length: {len(sdp) + sdp.count(chr(10))}\n\n{sdp}"
        )
        t0 = time.perf_counter()
        self.send(invite)
        ringing: float | None = None
        while True:
            ok = self.recv()
            if ok.startswith("SIP/2.0 180 ") and ringing is None:
                ringing = time.perf_counter() - t0
            if ok.startswith("SIP/2.0 200 "):
                break
        latency = time.perf_counter() - t0
        lines = ok.split("\r\n")
        to = next(x.split(":", 1)[1].strip() for x in lines if x.lower().startswith("to:"))
        contact = next(x.split(":", 1)[1].strip() for x in lines if x.lower().startswith(("contact:", "m:")))
        ruri = contact.strip("<>").split(">")[0]
        routes = [x.split(":", 1)[1].strip() for x in lines if x.lower().startswith("record-route:")][::-1]
        route = "".join(f"Route: {r}\n" for r in routes)
        for method, cseq, branch in (("ACK", 1, "b"), ("BYE", 2, "c")):
            self.send(
                f"{method} {ruri} SIP/2.0\nVia: SIP/2.0/{t} 127.0.0.1:{self.port};branch=z9hG4bKp{n}{branch}\n"
                f"{common}To: {to}\nCSeq: {cseq} {method}\n{route}Content-Length: 0\n\n"
            )
        while not (reply := self.recv()).startswith("SIP/2.0 200 ") or "BYE" not in reply:
            pass
        return (float("nan") if ringing is None else ringing * 1000), latency * 1000

    def close(self) -> None:
        self.sock.close()


async def probe_latency(
    bridge_port: int, target: tuple[str, int], transport: str, calls: int
) -> list[tuple[float, float]]:
    config = make_config(sip_port=bridge_port, trunk_groups=[{"name": "edge", "gateways": ["127.0.0.1:5999"]}])
    recorder = Recorder()
    service = await started_service(config, recorder)
    recorder.hooks.append(lambda e: service.answer(e.leg) if isinstance(e, IncomingCall) else None)
    probe = _Probe(target, transport)
    loop = asyncio.get_running_loop()
    try:
        return [await loop.run_in_executor(None, probe.call, n) for n in range(calls)]
    finally:
        probe.close()
        await service.stop()


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def proxy_runs(workdir: Path, calls: int, concurrency: int) -> None:
    from tests.integration.kamailio import Kamailio

    bridge_port = free_udp_port()
    proxy = Kamailio(workdir / "kamailio", bridge_port=bridge_port, children=4)
    proxy.dir.mkdir()
    rows: list[tuple[str, float, list[tuple[float, float]], int]] = []
    paths = (("direct_udp", "bridge", "udp"), ("kamailio_udp", "proxy", "udp"), ("kamailio_tcp", "proxy", "tcp"))
    try:
        proxy.start()
        for name, via, transport in paths:
            port = bridge_port if via == "bridge" else proxy.sip_port
            wall, _rtts, failed = await inbound_run(
                workdir, name, bridge_port, f"127.0.0.1:{port}", transport, calls, concurrency
            )
            latency = await probe_latency(bridge_port, ("127.0.0.1", port), transport, min(calls, 200))
            rows.append((name, wall, latency, failed))
    finally:
        proxy.stop()
    base_rate = calls / rows[0][1]
    base_p50 = _pct([r for r, _ in rows[0][2]], 0.5)
    print(
        f"inbound: SIPp UAC -> bridge ({concurrency} calls at once, the bridge answers at once); INVITE -> 180 and"
        " INVITE -> 200 latency of sequential calls from a socket probe"
    )
    for name, wall, latency, failed in rows:
        rate = calls / wall
        ring, ok = [r for r, _ in latency], [a for _, a in latency]
        p50 = _pct(ring, 0.5)
        print(
            f"  {name:13s}: {rate:8.1f} setups/s (x{rate / base_rate:.2f})  INVITE->180 p50 {p50:6.3f} ms"
            f" p95 {_pct(ring, 0.95):6.3f} ms (added by the proxy p50 {p50 - base_p50:+6.3f} ms)"
            f"  INVITE->200 p50 {_pct(ok, 0.5):6.3f} ms p95 {_pct(ok, 0.95):6.3f} ms  failed={failed}"
        )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--no-proxy", action="store_true", help="skip the Kamailio comparison")
    args = parser.parse_args()
    with open(LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one heavy benchmark window at a time (bench/conference_load.py's lock)
        print(f"load before: {os.getloadavg()}")
        await _runs(args)
        print(f"load after: {os.getloadavg()}")


async def _runs(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="sip-bench-") as tmp:
        workdir = Path(tmp)
        b_wall, b_cpu, b_failed = await bridge_run(workdir, args.calls, args.concurrency)
        s_wall, s_cpu, s_rc = await sipp_run(workdir, args.calls, args.concurrency)
    n = args.calls
    print(f"calls={n} concurrency={args.concurrency}")
    print(
        f"bridge -> SIPp UAS : {n / b_wall:8.1f} setups/s  {1000 * b_cpu / n:7.2f} ms CPU/call  failed={b_failed}"
        " (+1000 x SIPp UAS exit code if it saw errors)"
    )
    print(
        f"SIPp UAC -> UAS    : {n / s_wall:8.1f} setups/s  {1000 * s_cpu / n:7.2f} ms CPU/call  (baseline, rc={s_rc})"
    )
    print(f"ratio bridge/baseline: rate x{(n / b_wall) / (n / s_wall):.2f}, CPU/call x{b_cpu / max(s_cpu, 1e-9):.2f}")
    if not args.no_proxy:
        with tempfile.TemporaryDirectory(prefix="sip-bench-proxy-") as tmp:
            await proxy_runs(Path(tmp), args.calls, args.concurrency)


if __name__ == "__main__":
    asyncio.run(main())
