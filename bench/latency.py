"""Added mouth-to-ear latency of the bridge (issue 16): a click sent by one SIPp leg of a room, found again
in what the bridge sends another leg. Run by hand, as root (SIPp's play_pcap_audio and the capture socket):

    .venv/bin/python bench/latency.py                                  # both media paths, jitter 0/20/40/60 ms
    .venv/bin/python bench/latency.py --media-path batched --jitter 0 40 --calls 8 --clicks 10

Per media path, ``bridge run`` (SIP on a free port, SMPP and the portal off, control API on) with one meet-me
room without PIN. ``--listeners`` SIPp legs join it and send µ-law silence; then, ``--calls`` times one after
the other (each call lands on another phase of the bridge's 20 ms tick), a *clicker* SIPp leg joins and plays
a pcap of µ-law RTP with a 5 ms click every second (each at another sample offset of its packet) and faint
noise. With ``--jitter J``, the pcap's packet times are late by a uniform 0..J ms each (kept in order: a packet
never leaves before the one before it), so the sender has +-J/2 ms of jitter around its mean and the jitter
buffer has work to do.

A capture on ``lo`` (``bench/capture.py``: kernel timestamps) keeps the clicker's packets to the bridge and
the bridge's packets to the first listener. Each stream is decoded (µ-law, in sequence order) and the clicks
found by normalised cross-correlation with the click; a click's time is its packet's capture time plus its
sample offset / 8000. Per click:

* **added delay**: time out of the bridge - time into the bridge (the bridge's own share: its tick phase,
  its jitter buffer, its mixer);
* **from the schedule**: time out - the clicker's jitter-free schedule (first packet's time + n x 20 ms, the
  earliest packet defining the schedule): what a listener hears beyond a jitter-free path, network jitter
  included;
* **phase**: from the click's arrival to the bridge's next packet to that listener (the wait for a tick);
  **ticks**: whole 20 ms ticks between that packet and the one carrying the click (the jitter-buffer depth
  and anything else that holds a frame a tick).

Same-run baseline: the clicker calling a SIPp UAS that echoes RTP at once (``-rtp_echo``), no bridge: the
floor of the method (SIPp's echo thread and the capture). Measurements take the lock
``/tmp/bridge-conference-load.lock`` (the CPU benchmarks' lock), one condition at a time.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root, for bench.* and tests.* helpers

from bench.capture import IPPROTO_UDP, Capture, Packet, Rule  # noqa: E402
from tests.integration.rtp_peers import lin2ulaw as ulaw_encode  # noqa: E402 - the independent G.711 reference
from tests.integration.rtp_peers import ulaw2lin as ulaw_decode  # noqa: E402

RATE = 8000
FRAME = 160
PTIME = 0.02
CLICK_SAMPLES = 40
ROOM = "1001"
ROOT = Path(__file__).resolve().parents[1]
BRIDGE = ROOT / ".venv" / "bin" / "bridge"
LOCK = Path(tempfile.gettempdir()) / "bridge-conference-load.lock"
Array = np.ndarray[Any, Any]

# --- the signal and its analysis (pure; tests/bench/test_latency.py) ----------------------------------------


def click() -> Array:
    """The click: 5 ms of a Hann-windowed 1.5 kHz burst at about -10 dBFS (int16)."""
    n = np.arange(CLICK_SAMPLES)
    return np.round(10000 * np.hanning(CLICK_SAMPLES) * np.sin(2 * np.pi * 1500 * n / RATE)).astype(np.int16)


def click_offset(k: int) -> int:
    """Sample offset of click ``k`` inside its packet: it moves around the packet so that sample-level
    alignment is checked, never crossing into the next packet."""
    return 7 + (k * 37) % (FRAME - CLICK_SAMPLES - 7)


def click_audio(seconds: float, *, first_s: float = 1.0, period_s: float = 1.0, noise: float = 8.0) -> Array:
    """``seconds`` of faint noise with :func:`click` every ``period_s`` from ``first_s`` (int16)."""
    total = int(seconds * RATE) // FRAME * FRAME
    pcm = np.random.default_rng(1).normal(0.0, noise, total)
    template = click()
    k = 0
    while True:
        frame = int(round((first_s + k * period_s) / PTIME))
        start = frame * FRAME + click_offset(k)
        if start + CLICK_SAMPLES > total:
            break
        pcm[start : start + CLICK_SAMPLES] += template
        k += 1
    return np.clip(np.round(pcm), -32768, 32767).astype(np.int16)


def jittered_times(packets: int, jitter_s: float, seed: int = 7) -> list[float]:
    """Send times of ``packets`` 20 ms packets each late by a uniform 0..``jitter_s``, never before the one
    before it (SIPp plays a pcap in its order)."""
    rng = random.Random(seed)
    times: list[float] = []
    for i in range(packets):
        t = i * PTIME + (rng.uniform(0.0, jitter_s) if jitter_s > 0 else 0.0)
        times.append(max(t, times[-1]) if times else t)
    return times


@dataclass(frozen=True)
class Stream:
    """One captured RTP stream in sequence order: decoded PCM (lost packets as silence) and each packet's
    capture time (NaN where lost)."""

    pcm: Array
    times: Array
    seqs: Array

    def time_of(self, sample: int) -> float:
        return float(self.times[sample // FRAME]) + (sample % FRAME) / RATE


def rtp_stream(packets: list[tuple[float, bytes]], payload_type: int = 0) -> Stream:
    """Decode ``(capture time, datagram)`` RTP packets of one payload type (other types, duplicates and
    non-RTP are skipped) into a :class:`Stream`; sequence numbers are unwrapped."""
    rows: dict[int, tuple[float, bytes]] = {}
    last: int | None = None
    for when, data in packets:
        if len(data) < 12 or data[0] >> 6 != 2 or data[1] & 0x7F != payload_type:
            continue
        head = 12 + 4 * (data[0] & 0x0F)
        if data[0] & 0x10 and len(data) >= head + 4:
            head += 4 + 4 * struct.unpack_from(">H", data, head + 2)[0]
        payload = data[head:]
        if data[0] & 0x20 and payload:
            payload = payload[: -payload[-1]]
        seq = struct.unpack_from(">H", data, 2)[0]
        if last is not None:  # unwrap around the previous one
            seq = last + ((seq - last + 0x8000) % 0x10000) - 0x8000
        last = seq
        if seq not in rows and len(payload) == FRAME:
            rows[seq] = (when, payload)
    if not rows:
        return Stream(np.zeros(0, np.int16), np.zeros(0), np.zeros(0, np.int64))
    first, end = min(rows), max(rows) + 1
    silence = b"\xff" * FRAME
    pcm = ulaw_decode(b"".join(rows.get(s, (0.0, silence))[1] for s in range(first, end)))
    times = np.array([rows[s][0] if s in rows else np.nan for s in range(first, end)])
    return Stream(pcm, times, np.arange(first, end))


def find_clicks(pcm: Array, template: Array, *, threshold: float = 0.7, floor: float = 500.0,
                min_gap: int = RATE // 2) -> list[int]:  # fmt: skip
    """Start samples of the copies of ``template`` in ``pcm``: normalised cross-correlation above
    ``threshold`` where the window's RMS is above ``floor``, the best one per ``min_gap`` samples."""
    x = np.asarray(pcm, dtype=np.float64)
    t = np.asarray(template, dtype=np.float64)
    m = len(t)
    if len(x) < m:
        return []
    corr = np.correlate(x, t, mode="valid")
    energy = np.convolve(x * x, np.ones(m), mode="valid")
    ncc = corr / (np.sqrt(np.maximum(energy, 1e-9)) * np.linalg.norm(t))
    ok = (ncc > threshold) & (energy / m > floor * floor)
    candidates = np.flatnonzero(ok)
    found: list[int] = []
    for i in candidates[np.argsort(-ncc[candidates], kind="stable")]:
        if all(abs(int(i) - j) >= min_gap for j in found):
            found.append(int(i))
    return sorted(found)


@dataclass(frozen=True)
class ClickDelay:
    """One click through the bridge (seconds): see the module docstring."""

    added: float
    scheduled: float
    phase: float
    ticks: int


def schedule_origin(stream: Stream) -> float:
    """The jitter-free schedule's time of the stream's first packet: min over packets of time - n x 20 ms."""
    n = np.arange(len(stream.times))
    return float(np.nanmin(stream.times - n * PTIME))


def click_delays(sent: Stream, received: Stream, template: Array, *, max_delay: float = 0.5) -> list[ClickDelay]:
    """Pair each click of ``sent`` with the first click of ``received`` within ``max_delay`` after it."""
    out_samples = find_clicks(received.pcm, template)
    out_clicks = [received.time_of(i) for i in out_samples]
    origin = schedule_origin(sent)
    packet_times = received.times[~np.isnan(received.times)]
    delays: list[ClickDelay] = []
    for i in find_clicks(sent.pcm, template):
        t_in = sent.time_of(i)
        if np.isnan(t_in):
            continue
        match = next((k for k, t in enumerate(out_clicks) if t_in < t <= t_in + max_delay), None)
        if match is None:
            continue
        t_out = out_clicks[match]
        arrived = float(sent.times[i // FRAME])
        later = packet_times[packet_times > arrived]
        if not len(later):
            continue
        carrying = float(received.times[out_samples[match] // FRAME])
        delays.append(ClickDelay(
            added=t_out - t_in,
            scheduled=t_out - (origin + (i // FRAME) * PTIME + (i % FRAME) / RATE),
            phase=float(later[0]) - arrived,
            ticks=int(round((carrying - float(later[0])) / PTIME)),
        ))  # fmt: skip
    return delays


def quantile(values: list[float], q: float) -> float:
    """Nearest-rank quantile (``q`` in 0..1)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(np.ceil(q * len(ordered))) - 1))]


# --- peers and the bridge (glue) ------------------------------------------------------------------------------


def write_pcap(path: Path, pcm: Array, times: list[float], *, ssrc: int) -> None:
    """µ-law RTP (PT 0, 20 ms) in an Ethernet/IPv4/UDP pcap for SIPp's play_pcap_audio, packet n at ``times[n]``
    (RTP timestamps stay on the 20 ms grid: only the send times jitter)."""
    codes = ulaw_encode(pcm)
    with open(path, "wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for n, when in enumerate(times):
            rtp = struct.pack(">BBHII", 0x80, 0x80 if n == 0 else 0, n & 0xFFFF, n * FRAME, ssrc)
            data = rtp + codes[n * FRAME : (n + 1) * FRAME]
            udp = struct.pack(">HHHH", 6000, 6000, 8 + len(data), 0) + data
            loopback = bytes([127, 0, 0, 1])
            ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, loopback, loopback)
            total = sum(struct.unpack(">10H", ip))
            total = (total & 0xFFFF) + (total >> 16)
            ip = ip[:10] + struct.pack(">H", ~((total & 0xFFFF) + (total >> 16)) & 0xFFFF) + ip[12:]
            frame = b"\x00" * 12 + b"\x08\x00" + ip + udp
            out.write(struct.pack("<IIII", int(when), int(round((when % 1) * 1e6)), len(frame), len(frame)))
            out.write(frame)


UAC = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="latency leg">
  <send retrans="500"><![CDATA[
INVITE sip:{room}@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: "{name}" <sip:{name}@[local_ip]:[local_port]>;tag=[pid]LAT[call_number]
To: <sip:{room}@[remote_ip]:[remote_port]>
Call-ID: [call_id]
CSeq: 1 INVITE
Contact: <sip:{name}@[local_ip]:[local_port]>
Max-Forwards: 70
Content-Type: application/sdp
Content-Length: [len]

v=0
o=sipp 1 1 IN IP4 [local_ip]
s=-
c=IN IP4 [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 0
a=rtpmap:0 PCMU/8000
a=ptime:20
a=sendrecv

]]></send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="200" rtd="true"/>
  <send><![CDATA[
ACK sip:{room}@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: "{name}" <sip:{name}@[local_ip]:[local_port]>;tag=[pid]LAT[call_number]
To: <sip:{room}@[remote_ip]:[remote_port]>[peer_tag_param]
Call-ID: [call_id]
CSeq: 1 ACK
Contact: <sip:{name}@[local_ip]:[local_port]>
Max-Forwards: 70
Content-Length: 0

]]></send>
  <nop><action><exec play_pcap_audio="{pcap}"/></action></nop>
  <pause milliseconds="{hold_ms}"/>
  <send retrans="500"><![CDATA[
BYE sip:{room}@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: "{name}" <sip:{name}@[local_ip]:[local_port]>;tag=[pid]LAT[call_number]
To: <sip:{room}@[remote_ip]:[remote_port]>[peer_tag_param]
Call-ID: [call_id]
CSeq: 2 BYE
Contact: <sip:{name}@[local_ip]:[local_port]>
Max-Forwards: 70
Content-Length: 0

]]></send>
  <recv response="200" crlf="true"/>
</scenario>
"""


class Sipp:
    """One SIPp process (one call) in ``work``; ``media_port`` is where its RTP leaves from and arrives."""

    def __init__(self, work: Path, name: str, scenario: str, target: str | None, extra: list[str]) -> None:
        from tests.integration.rtp_peers import free_udp_port

        self.port, self.media_port = free_udp_port(), free_udp_port(even=True)
        path = work / f"{name}.xml"
        path.write_text(scenario)
        self.out = open(work / f"{name}.out", "wb")  # noqa: SIM115 - closed in stop()
        command = ["sipp", *([target] if target else []), "-sf", str(path), "-i", "127.0.0.1", "-p", str(self.port),
                   "-mi", "127.0.0.1", "-mp", str(self.media_port), "-nostdin", "-trace_err",
                   "-error_file", str(work / f"{name}_errors.log"), *extra]  # fmt: skip
        self.proc = subprocess.Popen(command, cwd=work, stdin=subprocess.DEVNULL, stdout=self.out,
                                     stderr=subprocess.STDOUT)  # fmt: skip

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise SystemExit(f"SIPp {self.proc.args[:2]} still running after {timeout:.0f} s") from None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.out.close()


def uac(work: Path, name: str, target: str, pcap: Path, hold_s: float) -> Sipp:
    scenario = UAC.format(room=ROOM, name=name, pcap=pcap, hold_ms=int(hold_s * 1000))
    return Sipp(work, name, scenario, target, ["-m", "1", "-l", "1"])


def write_config(work: Path, *, sip_port: int, control_port: int, media_path: str) -> Path:
    from tests.integration.ic_harness import free_rtp_range

    path = work / "bridge.toml"
    path.write_text(f"""
[node]
name = "latency"
data_dir = "{work}"
[smpp]
enabled = false
[sip]
listen = "127.0.0.1:{sip_port}"
public_address = "127.0.0.1"
rtp_ports = "{free_rtp_range(60)}"
media_path = "{media_path}"
rtp_timeout_s = 600
[[trunk_group]]
name = "none"
gateways = ["127.0.0.1:9"]
[web]
enabled = false
[control]
listen = "127.0.0.1:{control_port}"
token = "bench"
[cdr]
push_enabled = false
feed_listen = ""
[[room]]
number = "{ROOM}"
name = "Latency room"
""")  # fmt: skip
    return path


class Bridge:
    """``bridge run`` on a private config with the room, until :meth:`stop`."""

    def __init__(self, work: Path, media_path: str, source: Path | None = None) -> None:
        from tests.integration.rtp_peers import free_tcp_port, free_udp_port

        self.sip_port, self.control_port = free_udp_port(), free_tcp_port()
        config = write_config(work, sip_port=self.sip_port, control_port=self.control_port, media_path=media_path)
        env = {**os.environ, "BRIDGE_CONFIG": str(config)}
        command = [str(BRIDGE)]
        if source is not None:  # another tree of bridge/ (e.g. `git archive HEAD bridge | tar -x -C DIR`)
            env["PYTHONPATH"] = str(source)
            command = [sys.executable, "-m", "bridge.cli"]
        subprocess.run([*command, "db", "upgrade"], env=env, check=True, stdout=subprocess.DEVNULL, cwd=work)
        self.log = open(work / "bridge.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([*command, "run"], env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                     cwd=work)  # fmt: skip
        for _ in range(150):
            if self.proc.poll() is not None:
                raise SystemExit(f"bridge exited; see {work / 'bridge.log'}")
            try:
                if self.status().get("services", {}).get("sip") == "running":
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise SystemExit(f"bridge did not start; see {work / 'bridge.log'}")

    def status(self) -> dict[str, Any]:
        import json

        request = urllib.request.Request(f"http://127.0.0.1:{self.control_port}/status",
                                         headers={"Authorization": "Bearer bench"})  # fmt: skip
        with urllib.request.urlopen(request, timeout=5) as response:
            return dict(json.load(response))

    def participants(self) -> int:
        mixer = self.status().get("mixer", {})
        return int(mixer.get("participants", 0)) if isinstance(mixer, dict) else 0

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@dataclass
class Condition:
    label: str
    jitter_ms: float
    delays: list[ClickDelay]
    sender_jitter_p95_ms: float
    lost_out: int
    sent_clicks: int = 0


def streams(packets: list[Packet], *, sent_from: int, received_at: int) -> tuple[Stream, Stream]:
    sent = rtp_stream([(p.time, p.payload) for p in packets if p.proto == IPPROTO_UDP and p.src[1] == sent_from])
    received = rtp_stream([(p.time, p.payload) for p in packets if p.proto == IPPROTO_UDP and p.dst[1] == received_at])
    return sent, received


def analyse(label: str, jitter_ms: float, runs: list[tuple[Stream, Stream]]) -> Condition:
    delays: list[ClickDelay] = []
    late: list[float] = []
    lost = sent_clicks = 0
    template = click()
    for sent, received in runs:
        delays += click_delays(sent, received, template)
        sent_clicks += len(find_clicks(sent.pcm, template))
        if len(sent.times):
            n = np.arange(len(sent.times))
            late += list((sent.times - n * PTIME - schedule_origin(sent))[~np.isnan(sent.times)] * 1000)
        lost += int(np.isnan(received.times).sum())
    return Condition(label, jitter_ms, delays, quantile(late, 0.95) if late else float("nan"), lost, sent_clicks)


def run_bridge_condition(work: Path, bridge: Bridge, pcap: Path, silence: Path, args: argparse.Namespace,
                         jitter_ms: float, label: str) -> Condition:  # fmt: skip
    """Listeners join, then ``args.calls`` clicker calls one after the other; the capture of each call."""
    target = f"127.0.0.1:{bridge.sip_port}"
    hold = args.clicks + 2.0
    listen_s = (args.clicks + 5.0) * args.calls + 50  # shorter than silence.pcap (see main)
    listeners = [uac(work, f"listener{i}-{label}", target, silence, listen_s) for i in range(args.listeners)]
    runs: list[tuple[Stream, Stream]] = []
    try:
        deadline = time.monotonic() + 20
        while bridge.participants() < args.listeners:
            if time.monotonic() > deadline:
                raise SystemExit(f"listeners did not join; see {work}")
            time.sleep(0.2)
        time.sleep(1.0)
        for call in range(args.calls):
            time.sleep(random.uniform(0.0, PTIME))  # another phase of the bridge's tick each call
            clicker = uac(work, f"clicker-{label}-{call}", target, pcap, hold)
            capture = Capture([Rule(IPPROTO_UDP, "src", clicker.media_port),
                               Rule(IPPROTO_UDP, "dst", listeners[0].media_port)])  # fmt: skip
            try:
                clicker.wait(hold + 30)
            finally:
                packets = capture.stop()
                clicker.stop()
            runs.append(streams(packets, sent_from=clicker.media_port, received_at=listeners[0].media_port))
            print(f"    call {call + 1}: {call_line(click_delays(*runs[-1], click()))}", flush=True)
    finally:
        for listener in listeners:
            listener.stop()
    deadline = time.monotonic() + 30
    while bridge.participants() and time.monotonic() < deadline:
        time.sleep(0.5)
    return analyse(label, jitter_ms, runs)


def call_line(delays: list[ClickDelay]) -> str:
    if not delays:
        return "no clicks matched"
    ticks = Counter(d.ticks for d in delays)
    return (f"{len(delays)} clicks, added delay median {1000 * quantile([d.added for d in delays], 0.5):.1f} ms,"
            f" phase median {1000 * quantile([d.phase for d in delays], 0.5):.1f} ms,"
            f" ticks {' '.join(f'{k}:{v}' for k, v in sorted(ticks.items()))}")  # fmt: skip


def run_echo_condition(work: Path, pcap: Path, args: argparse.Namespace) -> Condition:
    """The baseline: the clicker calls a SIPp UAS that echoes its RTP (``-rtp_echo``), no bridge."""
    from tests.integration.sip_peers import uas_scenario

    runs: list[tuple[Stream, Stream]] = []
    hold = args.clicks + 2.0
    for call in range(min(args.calls, 2)):
        echo = Sipp(work, f"echo-{call}", uas_scenario(), None, ["-rtp_echo", "-m", "1"])
        time.sleep(0.3)
        clicker = uac(work, f"clicker-echo-{call}", f"127.0.0.1:{echo.port}", pcap, hold)
        capture = Capture([Rule(IPPROTO_UDP, "src", clicker.media_port), Rule(IPPROTO_UDP, "dst", clicker.media_port)])
        try:
            clicker.wait(hold + 30)
        finally:
            packets = capture.stop()
            clicker.stop()
            echo.stop()
        runs.append(streams(packets, sent_from=clicker.media_port, received_at=clicker.media_port))
    return analyse("echo, no bridge", 0.0, runs)


def summary(c: Condition) -> str:
    if not c.delays:
        return f"  {c.label:>26}  no clicks matched"
    ms = lambda values, q: 1000 * quantile(values, q)  # noqa: E731
    added = [d.added for d in c.delays]
    scheduled = [d.scheduled for d in c.delays]
    phase = [d.phase for d in c.delays]
    ticks = Counter(d.ticks for d in c.delays)
    spread = " ".join(f"{k}:{v}" for k, v in sorted(ticks.items()))
    matched = f"{len(c.delays)}/{c.sent_clicks}"
    return (f"  {c.label:>26}  {matched:>7}  {ms(added, 0.5):6.1f} {ms(added, 0.95):6.1f} {ms(added, 0):6.1f}"
            f" {ms(added, 1):6.1f}  {ms(scheduled, 0.5):6.1f} {ms(scheduled, 0.95):6.1f}  {ms(phase, 0.5):5.1f}"
            f" {ms(phase, 0):4.1f}-{ms(phase, 1):4.1f}  {spread:<14} {c.sender_jitter_p95_ms:6.1f}"
            f" {c.lost_out:>4}")  # fmt: skip


def header() -> str:
    return (f"  {'':>26}  {'clicks':>7}  {'added delay ms':^27}  {'from schedule':^13}  {'phase ms':^15}  "
            f"{'ticks':<14} {'send':>6} {'lost':>4}\n"
            f"  {'':>26}  {'matched':>7}  {'median':>6} {'p95':>6} {'min':>6} {'max':>6}  {'median':>6} {'p95':>6}  "
            f"{'med':>5} {'range':>9}  {'(n:clicks)':<14} {'p95 ms':>6} {'pkts':>4}")  # fmt: skip


def machine_load() -> str:
    return f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--media-path", nargs="*", choices=("batched", "socket"), default=["batched", "socket"])
    parser.add_argument("--jitter", nargs="*", type=float, default=[0, 20, 40, 60],
                        help="sender jitter: each packet late by uniform 0..J ms")  # fmt: skip
    parser.add_argument("--calls", type=int, default=5, help="clicker calls per condition (a tick phase each)")
    parser.add_argument("--clicks", type=int, default=8, help="clicks per call (one a second)")
    parser.add_argument("--listeners", type=int, default=2, help="legs listening (the first is captured)")
    parser.add_argument(
        "--bridge-src",
        type=Path,
        default=None,
        help="run the engine from this tree of bridge/ (default: this checkout's working tree)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: SIPp's play_pcap_audio and the capture use raw sockets")
    if shutil.which("sipp") is None:
        raise SystemExit("sipp not found: run `make deps`")
    work = Path(tempfile.mkdtemp(prefix="latency-"))
    seconds = args.clicks + 1.5
    audio = click_audio(seconds)
    packets = len(audio) // FRAME
    silence = work / "silence.pcap"
    listen_s = (args.clicks + 5.0) * args.calls + 60  # the listeners' hold, with room for call set-ups
    frames = int(listen_s / PTIME)
    write_pcap(silence, np.zeros(frames * FRAME, np.int16), jittered_times(frames, 0), ssrc=0x51E7CE)
    pcaps = {}
    for jitter in sorted({0.0, *args.jitter}):
        pcaps[jitter] = work / f"clicks_j{jitter:g}.pcap"
        write_pcap(pcaps[jitter], audio, jittered_times(packets, jitter / 1000), ssrc=0xC11C4)
    results: list[Condition] = []
    source = args.bridge_src or ROOT
    print(f"work {work}; engine from {source}; {machine_load()}", flush=True)
    with open(LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        print("baseline: SIPp -> SIPp -rtp_echo, no bridge", flush=True)
        results.append(run_echo_condition(work, pcaps[0.0], args))
        fcntl.flock(lock, fcntl.LOCK_UN)
    for media_path in args.media_path:
        (work / media_path).mkdir()
        bridge = Bridge(work / media_path, media_path, args.bridge_src)
        try:
            for jitter in args.jitter:
                label = f"{media_path}, jitter 0..{jitter:g} ms"
                print(f"{label}: {args.listeners} listeners, {args.calls} calls x {args.clicks} clicks", flush=True)
                with open(LOCK, "w") as lock:
                    fcntl.flock(lock, fcntl.LOCK_EX)
                    results.append(run_bridge_condition(work, bridge, pcaps[jitter], silence, args, jitter,
                                                        f"{media_path}-j{jitter:g}"))  # fmt: skip
                results[-1].label = label
        finally:
            bridge.stop()
    print(f"\nadded mouth-to-ear latency ({machine_load()} at the end)")
    print(header())
    for c in results:
        print(summary(c))
    print("\nticks: whole ticks between the first packet to the listener after the click arrived and the packet "
          "carrying it;\nsend p95: the clicker's packets' lateness behind the jitter-free schedule (the jitter "
          "injected); lost pkts: seq gaps to the listener")  # fmt: skip
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
