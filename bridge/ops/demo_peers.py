"""The demo's stand-ins for the operator's network, on loopback: the SMSC simulator (node ``smpp``, the one the
SMPP tests use: ``tests/peers/smsc_sim.js``) and the phones behind the trunk (one SIPp UAS that rings, answers
every call and talks: a pcap of tone bursts, so the live view shows the legs talking).

Each is a real protocol peer in its own process on free ports; a missing one raises :class:`PeerMissing` with
the command that installs it (``make deps``).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import struct
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

from bridge.mixer.g711 import SAMPLE_RATE, SAMPLES_PER_FRAME, ulaw_encode

REPO = Path(__file__).resolve().parents[2]
PEERS = REPO / "tests" / "peers"


class PeerMissing(RuntimeError):
    """A stand-in's program is not installed."""


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


# --- the SMSC ------------------------------------------------------------------------------------------


class SmscSimulator:
    """``node tests/peers/smsc_sim.js`` on free ports; :meth:`mo` injects a text as if a mobile sent it."""

    def __init__(self, workdir: Path, *, system_id: str, password: str) -> None:
        node = shutil.which("node")
        if node is None or not (PEERS / "node_modules" / "smpp").is_dir():
            raise PeerMissing("the SMSC simulator needs node and tests/peers/node_modules: run `make deps`")
        self.port, self.ctrl_port = free_port(), free_port()
        env = dict(os.environ, SMSC_PORT=str(self.port), CTRL_PORT=str(self.ctrl_port), SMSC_SYSTEM_ID=system_id,
                   SMSC_PASSWORD=password, SMSC_QUIET="1", NODE_PATH=str(PEERS / "node_modules"))  # fmt: skip
        with open(workdir / "smsc.log", "wb") as log:  # the child keeps its own descriptor
            self.proc: subprocess.Popen[bytes] | None = subprocess.Popen(
                [node, str(PEERS / "smsc_sim.js")], env=env, stdout=log, stderr=subprocess.STDOUT
            )
        _wait_tcp(self.ctrl_port, self.proc, "SMSC simulator")

    def mo(self, source: str, destination: str, text: str) -> Any:
        body = json.dumps({"source_addr": source.lstrip("+"), "destination_addr": destination, "text": text})
        request = urllib.request.Request(f"http://127.0.0.1:{self.ctrl_port}/mo", data=body.encode(), method="POST",
                                         headers={"content-type": "application/json"})  # fmt: skip
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)

    def stop(self) -> None:
        _stop(self.proc)
        self.proc = None


def _wait_tcp(port: int, proc: subprocess.Popen[bytes], what: str) -> None:
    for _ in range(150):
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited at start ({proc.returncode})")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not open port {port}")


# --- the phones ----------------------------------------------------------------------------------------


def talk_pcm(seconds: float) -> np.ndarray[Any, np.dtype[np.int16]]:
    """Speech-like bursts: 1.2 s of a two-tone chord, 0.8 s of silence, repeated (so talkers come and go)."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    tone = 5000 * (np.sin(2 * math.pi * 440 * t) + 0.5 * np.sin(2 * math.pi * 660 * t)) / 1.5
    on = (t % 2.0) < 1.2
    return (tone * on).astype(np.int16)


def write_rtp_pcap(path: Path, pcm: np.ndarray[Any, np.dtype[np.int16]]) -> None:
    """One µ-law RTP stream (PT 0, 20 ms packets) in an Ethernet/IPv4/UDP pcap, as SIPp's ``play_pcap_audio``
    reads it (it rewrites the addresses and ports only)."""
    codes = ulaw_encode(pcm).tobytes()
    with open(path, "wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for seq, start in enumerate(range(0, len(codes) - SAMPLES_PER_FRAME + 1, SAMPLES_PER_FRAME)):
            rtp = struct.pack(">BBHII", 0x80, 0x80 if seq == 0 else 0, seq & 0xFFFF, start, 0x0DE30DE3)
            udp_payload = rtp + codes[start : start + SAMPLES_PER_FRAME]
            udp = struct.pack(">HHHH", 6000, 6000, 8 + len(udp_payload), 0) + udp_payload
            frame = b"\x00" * 12 + b"\x08\x00" + _ipv4_header(len(udp)) + udp
            when = seq * 0.02
            out.write(struct.pack("<IIII", int(when), int(round((when % 1) * 1e6)), len(frame), len(frame)))
            out.write(frame)


def _ipv4_header(payload: int) -> bytes:
    loopback = bytes([127, 0, 0, 1])
    header = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + payload, 0, 0, 64, 17, 0, loopback, loopback)
    total = sum(struct.unpack(">10H", header))
    total = (total & 0xFFFF) + (total >> 16)
    return header[:10] + struct.pack(">H", ~((total & 0xFFFF) + (total >> 16)) & 0xFFFF) + header[12:]


UAS_SCENARIO = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="demo phones: ring, answer, talk until BYE">
  <recv request="INVITE"/>
  <send><![CDATA[
SIP/2.0 180 Ringing
[last_Via:]
[last_From:]
[last_To:];tag=[pid]DEMO[call_number]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:[local_ip]:[local_port];transport=[transport]>
Content-Length: 0

]]></send>
  <pause milliseconds="800"/>
  <send retrans="500"><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:];tag=[pid]DEMO[call_number]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:[local_ip]:[local_port];transport=[transport]>
Content-Type: application/sdp
Content-Length: [len]

v=0
o=demo 1 1 IN IP4 [local_ip]
s=demo phone
c=IN IP4 [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 0 101
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=sendrecv

]]></send>
  <recv request="ACK"/>
  <nop><action><exec play_pcap_audio="{pcap}"/></action></nop>
  <recv request="BYE" timeout="{bye_timeout_ms}"/>
  <send><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]></send>
</scenario>
"""


class Phones:
    """One SIPp UAS standing for every phone behind the demo trunk (``sipp -sf``), talking for ``talk_s``."""

    def __init__(self, workdir: Path, *, talk_s: float) -> None:
        sipp = shutil.which("sipp")
        if sipp is None:
            raise PeerMissing("the demo phones need SIPp (Debian package sip-tester): run `make deps`")
        self.port, media = free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_DGRAM)
        pcap = workdir / "talk.pcap"
        write_rtp_pcap(pcap, talk_pcm(talk_s))
        scenario = workdir / "phones.xml"
        scenario.write_text(UAS_SCENARIO.format(pcap=pcap, bye_timeout_ms=int((talk_s + 120) * 1000)))
        with open(workdir / "phones.log", "wb") as log:
            self.proc: subprocess.Popen[bytes] | None = subprocess.Popen(
                [sipp, "-sf", str(scenario), "-i", "127.0.0.1", "-p", str(self.port), "-mi", "127.0.0.1",
                 "-mp", str(media), "-nostdin", "-trace_err", "-error_file", str(workdir / "phones_errors.log")],
                cwd=workdir, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        time.sleep(0.3)
        if self.proc.poll() is not None:
            raise RuntimeError(f"SIPp exited at start: {(workdir / 'phones.log').read_text(errors='replace')}")

    def stop(self) -> None:
        _stop(self.proc)
        self.proc = None
