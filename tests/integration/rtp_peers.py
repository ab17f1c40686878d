"""Helpers for the RTP integration tests: free ports, SIPp scenarios/runner, a pcap writer for SIPp's
``play_pcap_audio``, and an audio analysis that does not use our own code (µ-law decoding and RFC 4733
decoding written independently here, after ../shared/peers/sip/rtp_tools.py).

This module is the one home of the integration tests' audio/pcap/RTP primitives (tones, µ-law, FFT, RTP
packets, pcap and WAV files, free ports, baresip's config file); sip_peers.py and ic_harness.py import them.

A missing ``sipp`` or ``baresip`` binary makes the tests fail (FileNotFoundError), never skip.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import struct
import subprocess
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bridge.rtp.endpoint import RtpEndpoint
from bridge.rtp.ports import PortAllocator
from bridge.rtp.sdp import MediaDescription
from bridge.rtp.shared import BatchedMedia
from bridge.rtp.sharedleg import BatchedLeg

RATE = 8000
PTIME = 160
DTMF_CODES = "0123456789*#ABCD"
HOST = "127.0.0.1"


def free_udp_port(host: str = HOST, *, even: bool = False) -> int:
    """A UDP port free right now on ``host`` (bind port 0, read it, close); ``even``: an even port whose +1 is
    free as well."""
    while True:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((host, 0))
        port = int(s.getsockname()[1])
        if not even:
            s.close()
            return port
        try:
            if port % 2 == 0 and port < 65534:
                t = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                t.bind((host, port + 1))
                t.close()
                return port
        except OSError:
            pass
        finally:
            s.close()


def free_tcp_port() -> int:
    """A TCP port free right now on loopback."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def free_rtp_range(size: int = 20) -> tuple[int, int]:
    low = min(free_udp_port(even=True), 65534 - size)
    low -= low % 2
    return low, low + size - 1


# --- audio, independent of bridge.* ----------------------------------------------------------------


def tone(freq: float, secs: float, amp: float = 8000, *, rounded: bool = True) -> np.ndarray[Any, Any]:
    """``secs`` of a sine at ``freq`` Hz (8 kHz, int16). ``rounded=False`` truncates toward zero instead of
    rounding (the SIP and IC tests' tones have always been made that way)."""
    t = np.arange(int(secs * RATE)) / RATE
    wave_ = amp * np.sin(2 * np.pi * freq * t)
    return (np.round(wave_) if rounded else wave_).astype(np.int16)


def dtmf_tones(digits: str, *, tone_ms: int = 100, gap_ms: int = 100, amp: float = 5000) -> np.ndarray[Any, Any]:
    """Key presses as in-band tones (Q.23 frequencies), each followed by silence."""
    rows, cols = (697, 770, 852, 941), (1209, 1336, 1477, 1633)
    keys = ("123A", "456B", "789C", "*0#D")
    parts = [np.zeros(RATE * gap_ms // 1000)]
    t = np.arange(RATE * tone_ms // 1000) / RATE
    for digit in digits:
        row = next(i for i, k in enumerate(keys) if digit in k)
        col = keys[row].index(digit)
        parts += [amp * (np.sin(2 * np.pi * rows[row] * t) + np.sin(2 * np.pi * cols[col] * t)), parts[0]]
    return np.round(np.concatenate(parts)).astype(np.int16)


_SEG_END = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])


def lin2ulaw(pcm: np.ndarray[Any, Any]) -> bytes:
    """G.711 µ-law encoding of 16-bit PCM, one byte a sample."""
    x = np.asarray(pcm, dtype=np.int32) >> 2
    mask = np.where(x < 0, 0x7F, 0xFF)
    x = np.minimum(np.abs(x), 8159) + 33
    seg = np.searchsorted(_SEG_END, x)
    u = np.where(seg >= 8, 0x7F, (seg << 4) | ((x >> (seg + 1)) & 0x0F))
    return bytes((u ^ mask).astype(np.uint8))


def ulaw2lin(data: bytes) -> np.ndarray[Any, Any]:
    u = ~np.frombuffer(data, dtype=np.uint8).astype(np.int32) & 0xFF
    exp, mant = (u >> 4) & 7, u & 0x0F
    x = (((mant << 3) + 0x84) << exp) - 0x84
    return np.where(u & 0x80, -x, x).astype(np.int16)


def dominant_freq(pcm: np.ndarray[Any, Any], rate: int = RATE) -> tuple[float, float]:
    """Frequency of the strongest FFT bin and the share of the energy within +-20 Hz of it."""
    x = np.asarray(pcm, dtype=np.float64)
    x = x - x.mean()
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x)))) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / rate)
    k = int(np.argmax(spec[1:]) + 1)
    return float(freqs[k]), float(spec[np.abs(freqs - freqs[k]) <= 20].sum() / spec.sum())


def rtp(pt: int, seq: int, ts: int, ssrc: int, payload: bytes, marker: bool = False) -> bytes:
    """One RTP packet (version 2, no CSRC/extension)."""
    return struct.pack(">BBHII", 0x80, (0x80 if marker else 0) | pt, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc) + payload


def write_pcap(path: Path, packets: list[tuple[float, bytes]]) -> None:
    """Ethernet/IPv4/UDP pcap as SIPp's play_pcap_audio reads it (it rewrites addresses and ports only)."""

    def ipv4(n: int) -> bytes:
        loopback = bytes([127, 0, 0, 1])
        hdr = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + n, 0, 0, 64, 17, 0, loopback, loopback)
        s = sum(struct.unpack(">10H", hdr))
        s = (s & 0xFFFF) + (s >> 16)
        return hdr[:10] + struct.pack(">H", ~((s & 0xFFFF) + (s >> 16)) & 0xFFFF) + hdr[12:]

    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for t, data in packets:
            udp = struct.pack(">HHHH", 6000, 6000, 8 + len(data), 0) + data
            frame = b"\x00" * 12 + b"\x08\x00" + ipv4(len(udp)) + udp
            f.write(struct.pack("<IIII", int(t), int(round((t % 1) * 1e6)), len(frame), len(frame)))
            f.write(frame)


def write_tone_dtmf_pcap(path: Path, audio: np.ndarray[Any, Any], digits: str, event_pt: int = 101) -> float:
    """One RTP stream: µ-law audio, then RFC 4733 digits (200 ms, 3 end packets, 200 ms audio gap). Returns
    the play time in seconds."""
    packets: list[tuple[float, bytes]] = []
    seq, ts, t, ssrc = 1, 0, 0.0, 0x1234ABCD
    encoded = lin2ulaw(audio)
    for i in range(0, len(encoded) - PTIME + 1, PTIME):
        packets.append((t, rtp(0, seq, ts, ssrc, encoded[i : i + PTIME], marker=(i == 0))))
        seq, ts, t = seq + 1, ts + PTIME, t + 0.02
    silence = b"\xff" * PTIME
    for digit in digits:
        code, n = DTMF_CODES.index(digit), 10
        for k in range(1, n + 1):
            payload = struct.pack(">BBH", code, 10, k * PTIME)
            packets.append((t, rtp(event_pt, seq, ts, ssrc, payload, marker=(k == 1))))
            seq, t = seq + 1, t + 0.02
        for _ in range(3):
            packets.append((t, rtp(event_pt, seq, ts, ssrc, struct.pack(">BBH", code, 0x80 | 10, n * PTIME))))
            seq += 1
        t += 0.02
        ts += n * PTIME
        for _ in range(10):
            packets.append((t, rtp(0, seq, ts, ssrc, silence)))
            seq, ts, t = seq + 1, ts + PTIME, t + 0.02
    write_pcap(path, packets)
    return t


def write_wav(path: Path, pcm: np.ndarray[Any, Any]) -> None:
    """Mono 16-bit little-endian WAV at 8 kHz."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(pcm.astype("<i2").tobytes())


def read_wav(path: Path) -> np.ndarray[Any, Any]:
    """The int16 samples of a (complete) 16-bit WAV file."""
    with wave.open(str(path)) as w:
        return np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.int16)


# --- baresip ---------------------------------------------------------------------------------------------


def baresip_config(home: Path, *, sip_port: int, rtp_ports: str, ctrl_port: int) -> str:
    """baresip's ``config`` for a headless phone in ``home`` on loopback: plays ``home/mic.wav`` (aufile),
    records what it receives into ``home/rec`` (sndfile), PCMU only, driven over ctrl_tcp on ``ctrl_port``."""
    return f"""poll_method       epoll
net_interface     127.0.0.1
sip_listen        127.0.0.1:{sip_port}
rtp_ports         {rtp_ports}
audio_player      alsa,null
audio_alert       alsa,null
audio_source      aufile,{home}/mic.wav
ausrc_srate       8000
auplay_srate      8000
ausrc_channels    1
auplay_channels   1
snd_path          {home}/rec
ctrl_tcp_listen   127.0.0.1:{ctrl_port}
module_path       /usr/lib/baresip/modules
module            g711.so
module            alsa.so
module            aufile.so
module            sndfile.so
module_app        account.so
module_app        menu.so
module_app        ctrl_tcp.so
"""


class RtpSink:
    """A plain socket collecting RTP datagrams (parsed here with struct, not with bridge.rtp)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((HOST, 0))
        self.sock.setblocking(False)
        self.port = int(self.sock.getsockname()[1])
        self.packets: list[dict[str, Any]] = []

    def drain(self) -> None:
        while True:
            try:
                data, addr = self.sock.recvfrom(2048)
            except BlockingIOError:
                return
            if len(data) >= 12 and data[0] >> 6 == 2:
                seq, ts, ssrc = struct.unpack(">HII", data[2:12])
                self.packets.append(
                    {
                        "pt": data[1] & 0x7F,
                        "m": data[1] >> 7,
                        "seq": seq,
                        "ts": ts,
                        "ssrc": ssrc,
                        "payload": data[12 + 4 * (data[0] & 0x0F) :],
                        "src": addr,
                    }  # fmt: skip
                )

    def audio(self, pt: int = 0) -> np.ndarray[Any, Any]:
        return ulaw2lin(b"".join(p["payload"] for p in self.packets if p["pt"] == pt))

    def dtmf(self, pt: int = 101) -> str:
        """RFC 4733: one digit per (ssrc, timestamp) with an end bit."""
        seen, out = set(), []
        for p in self.packets:
            if p["pt"] == pt and len(p["payload"]) >= 4 and p["payload"][1] & 0x80:
                if (p["ssrc"], p["ts"]) not in seen:
                    seen.add((p["ssrc"], p["ts"]))
                    out.append(DTMF_CODES[p["payload"][0]] if p["payload"][0] < 16 else "?")
        return "".join(out)

    def close(self) -> None:
        self.sock.close()


# --- SIPp ------------------------------------------------------------------------------------------------

SIPP_SDP = """v=0
o=sipp 1 1 IN IP4 [local_ip]
s=sipp
c=IN IP4 [media_ip]
t=0 0
m=audio {port} RTP/AVP 0 101
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=ptime:20
a=sendrecv
"""

_UAC = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="uac_play">
  <send retrans="500">
    <![CDATA[
INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: "sipp" <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>
Call-ID: [call_id]
CSeq: 1 INVITE
Contact: <sip:sipp@[local_ip]:[local_port];transport=[transport]>
Max-Forwards: 70
Content-Type: application/sdp
Content-Length: [len]

{sdp}
    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="200" rtd="true"/>
  <send>
    <![CDATA[
ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: "sipp" <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
Call-ID: [call_id]
CSeq: 1 ACK
Contact: <sip:sipp@[local_ip]:[local_port];transport=[transport]>
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
  <send retrans="500">
    <![CDATA[
BYE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: "sipp" <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
Call-ID: [call_id]
CSeq: 2 BYE
Contact: <sip:sipp@[local_ip]:[local_port];transport=[transport]>
Max-Forwards: 70
Content-Length: 0

    ]]>
  </send>
  <recv response="200" crlf="true"/>
</scenario>
"""

_UAS = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="uas_answer">
  <recv request="INVITE" crlf="true"/>
  <send retrans="500">
    <![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:[local_ip]:[local_port];transport=[transport]>
Content-Type: application/sdp
Content-Length: [len]

{sdp}
    ]]>
  </send>
  <recv request="ACK" crlf="true"/>
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

_ECHO = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="echo_only">
  <recv request="INVITE" timeout="{timeout_ms}" ontimeout="done"/>
  <label id="done"/>
</scenario>
"""


def uac_play_scenario(pcap: str, pause_ms: int) -> str:
    """Offer PCMU + telephone-event on SIPp's own media port, play ``pcap`` after the ACK, BYE after
    ``pause_ms``. The SDP carries [media_port], so SIPp replays the pcap from that port (symmetric RTP)."""
    return _UAC.format(sdp=SIPP_SDP.format(port="[media_port]"), pcap=pcap, pause_ms=pause_ms)


def uas_answer_scenario(media_port: int) -> str:
    """Answer one INVITE with an SDP pointing at ``media_port`` (our endpoint), wait for BYE."""
    return _UAS.format(sdp=SIPP_SDP.format(port=media_port))


def echo_scenario(timeout_ms: int) -> str:
    """Do nothing for ``timeout_ms`` but run SIPp's RTP echo (``-rtp_echo`` on ``-mp``)."""
    return _ECHO.format(timeout_ms=timeout_ms)


def sipp_offer_sdp(media_port: int) -> str:
    """The SDP the UAC scenario sends, as SIPp expands it on loopback."""
    return SIPP_SDP.replace("[local_ip]", HOST).replace("[media_ip]", HOST).format(port=media_port)


def launch_sipp(workdir: Path, name: str, scenario: str, args: list[str]) -> subprocess.Popen[bytes]:
    """Write ``scenario`` to ``workdir/name.xml`` and start SIPp on it with ``args`` (output in
    ``workdir/name.out``, errors in ``workdir/name*errors.log``)."""
    path = workdir / f"{name}.xml"
    path.write_text(scenario)
    out = open(workdir / f"{name}.out", "wb")  # noqa: SIM115 - lives as long as the process
    return subprocess.Popen(
        [shutil.which("sipp") or "sipp", "-sf", str(path), *args],
        cwd=workdir,
        stdin=subprocess.DEVNULL,
        stdout=out,
        stderr=subprocess.STDOUT,
    )


def start_sipp(workdir: Path, name: str, scenario: str, args: list[str]) -> subprocess.Popen[bytes]:
    """:func:`launch_sipp` with SIP and media on :data:`HOST` and no keyboard."""
    return launch_sipp(workdir, name, scenario, ["-i", HOST, "-mi", HOST, "-nostdin", *args])


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def sipp_log(workdir: Path) -> str:
    logs = sorted(workdir.glob("*errors.log")) + sorted(workdir.glob("*.out"))
    return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-1500:]}" for p in logs)


async def pump_frames(
    read: Callable[[float], bytes | None], until: Callable[[], bool], *, timeout: float, tail_s: float = 0.3
) -> list[bytes]:
    """Call ``read(now)`` every 20 ms (as the mixer would) until ``until()`` holds, then ``tail_s`` more."""
    loop = asyncio.get_running_loop()
    frames: list[bytes] = []
    deadline = loop.time() + timeout
    next_tick = loop.time()
    stop_at: float | None = None
    while True:
        now = loop.time()
        frame = read(now)
        if frame is not None:
            frames.append(frame)
        if stop_at is None and until():
            stop_at = now + tail_s
        if (stop_at is not None and now >= stop_at) or now > deadline:
            return frames
        next_tick += 0.02
        await asyncio.sleep(max(0.0, next_tick - loop.time()))


class BatchedEndpoint:
    """One leg of a private :class:`~bridge.rtp.shared.BatchedMedia`, driven like an RtpEndpoint: each
    ``read_frame(now)`` is one engine tick of the batched path (receive, play out) -- so the endpoint tests
    run on the shared-socket path too."""

    def __init__(self, owner: BatchedMedia, leg: BatchedLeg) -> None:
        self.owner = owner
        self.leg = leg
        self.local_port = leg.place(None)

    @classmethod
    async def open(
        cls, loop: asyncio.AbstractEventLoop, allocator: PortAllocator, *, host: str,
        on_dtmf: Callable[[str], None] = lambda digit: None, inband_dtmf: bool = False,
        rtp_timeout_s: float = 30.0, on_timeout: Callable[[], None] = lambda: None,
    ) -> BatchedEndpoint:  # fmt: skip
        owner = BatchedMedia(allocator, host=host)
        leg = BatchedLeg.open(owner, now=loop.time(), on_dtmf=on_dtmf, on_timeout=on_timeout,
                              rtp_timeout_s=rtp_timeout_s, inband_dtmf=inband_dtmf)  # fmt: skip
        return cls(owner, leg)

    def start(self, media: MediaDescription) -> None:
        self.leg.start(media, asyncio.get_running_loop().time())

    def read_frame(self, now: float) -> bytes | None:
        self.owner.receive(now)
        self.owner.pop(now)
        return self.leg.read_frame(now)

    def write_frame(self, payload: bytes) -> None:
        self.leg.write_frame(payload)

    def send_dtmf(self, digit: str, duration_ms: int = 160) -> None:
        self.leg.send_dtmf(digit, duration_ms)

    def stats(self) -> dict[str, Any]:
        return self.leg.stats()

    def close(self) -> None:
        self.leg.close()
        self.owner.close()


async def open_endpoint(mode: str, loop: asyncio.AbstractEventLoop, allocator: PortAllocator, **kwargs: Any) -> Any:
    """An RtpEndpoint (``asyncio``/``socket``, or ``poller`` with kwargs["poller"]) or a BatchedEndpoint."""
    if mode == "batched":
        kwargs.pop("poller", None)
        return await BatchedEndpoint.open(loop, allocator, **kwargs)
    return await RtpEndpoint.open(loop, allocator, **kwargs)
