"""RtpEndpoint against baresip, a real independent softphone, on loopback.

baresip (headless: aufile source playing a 440 Hz WAV, sndfile recording what it receives) calls a minimal
SIP UAS written in this test whose only job is to answer with our SDP (``answer_offer``) and start the
endpoint. Then, in both directions at once:

* baresip -> us: the 440 Hz tone is measured by FFT in what ``read_frame`` returns, and the digits baresip
  sends (``sndcode 1234#``, RFC 4733) are reported exactly once each by ``on_dtmf``;
* us -> baresip: the 1 kHz tone the endpoint sends is found by FFT in baresip's own recording, and the
  digits we send with ``send_dtmf`` are reported by baresip's ``CALL_DTMF_START`` events.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import wave
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest

from bridge.rtp import PortAllocator, answer_offer
from tests.integration.rtp_peers import (
    HOST,
    dominant_freq,
    free_rtp_range,
    free_tcp_port,
    free_udp_port,
    lin2ulaw,
    open_endpoint,
    tone,
    ulaw2lin,
)

pytestmark = pytest.mark.integration


def write_wav(path: Path, pcm: np.ndarray[Any, Any]) -> None:
    with wave.open(str(path), "wb") as w:  # aufile needs S16LE, 8000 Hz, mono
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(pcm.astype("<i2").tobytes())


def baresip_config(workdir: Path, *, sip_port: int, ctrl_port: int, rtp: tuple[int, int]) -> None:
    (workdir / "rec").mkdir()
    write_wav(workdir / "mic.wav", tone(440, 20))
    (workdir / "config").write_text(
        f"""poll_method epoll
net_interface {HOST}
sip_listen {HOST}:{sip_port}
rtp_ports {rtp[0]}-{rtp[1]}
audio_player alsa,null
audio_alert alsa,null
audio_source aufile,{workdir}/mic.wav
ausrc_srate 8000
auplay_srate 8000
ausrc_channels 1
auplay_channels 1
snd_path {workdir}/rec
ctrl_tcp_listen {HOST}:{ctrl_port}
module_path /usr/lib/baresip/modules
module g711.so
module alsa.so
module aufile.so
module sndfile.so
module_app account.so
module_app menu.so
module_app ctrl_tcp.so
"""
    )
    (workdir / "accounts").write_text(f"<sip:peer@{HOST}:{sip_port}>;regint=0;audio_codecs=PCMU\n")
    (workdir / "contacts").write_text("")


class Ctrl:
    """baresip ctrl_tcp: netstring-framed JSON commands, responses and events."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.events: list[dict[str, Any]] = []
        self.task = asyncio.create_task(self._read())

    @classmethod
    async def connect(cls, port: int, proc: subprocess.Popen[bytes]) -> Ctrl:
        for _ in range(100):
            try:
                return cls(*await asyncio.open_connection(HOST, port))
            except OSError:
                if proc.poll() is not None:
                    break
                await asyncio.sleep(0.1)
        raise AssertionError(f"baresip ctrl_tcp port {port} never opened")

    def send(self, command: str, params: str = "") -> None:
        body = json.dumps({"command": command, "params": params, "token": command}).encode()
        self.writer.write(b"%d:%s," % (len(body), body))

    async def _read(self) -> None:
        while True:
            length = await self.reader.readuntil(b":")
            body = await self.reader.readexactly(int(length[:-1]) + 1)
            self.events.append(json.loads(body[:-1]))

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("type") == kind]

    async def close(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, asyncio.IncompleteReadError):
            await self.task
        self.writer.close()


class MiniUas(asyncio.DatagramProtocol):
    """Just enough SIP (RFC 3261 UAS) to answer one INVITE with our SDP, and BYE with 200."""

    def __init__(self, endpoint: Any) -> None:  # an RtpEndpoint or a BatchedEndpoint
        self.endpoint = endpoint
        self.transport: asyncio.DatagramTransport | None = None
        self.answered = asyncio.Event()
        self.bye = asyncio.Event()
        self._ok: bytes | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)  # selector transports do not subclass it

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        head, _, body = data.decode().partition("\r\n\r\n")
        lines = head.split("\r\n")
        method = lines[0].split(" ", 1)[0]
        keep = ("via:", "v:", "from:", "f:", "to:", "t:", "call-id:", "i:", "cseq:")
        headers = [line for line in lines[1:] if line.lower().startswith(keep)]
        if method == "INVITE":
            if self._ok is None:
                answer, remote = answer_offer(body, HOST, self.endpoint.local_port, session_id=4242)
                self.endpoint.start(remote)
                headers = [h + ";tag=bridge1" if h.lower().startswith(("to:", "t:")) else h for h in headers]
                port = self.transport.get_extra_info("sockname")[1]
                self._ok = self._response("200 OK", headers + [f"Contact: <sip:bridge@{HOST}:{port}>"], answer)
                self.answered.set()
            self.transport.sendto(self._ok, addr)
        elif method == "BYE":
            self.transport.sendto(self._response("200 OK", headers, ""), addr)
            self.bye.set()

    @staticmethod
    def _response(status: str, headers: list[str], sdp: str) -> bytes:
        extra = ["Content-Type: application/sdp"] if sdp else []
        lines = [f"SIP/2.0 {status}", *headers, *extra, f"Content-Length: {len(sdp.encode())}", "", sdp]
        return "\r\n".join(lines).encode()


@pytest.mark.parametrize("mode", ["socket", "batched"])
def test_baresip_tone_and_dtmf_both_ways(tmp_path: Path, mode: str) -> None:
    asyncio.run(asyncio.wait_for(_baresip_both_ways(tmp_path, mode), 90))


async def _baresip_both_ways(tmp_path: Path, mode: str) -> None:
    loop = asyncio.get_running_loop()
    digits: list[str] = []
    endpoint = await open_endpoint(mode, loop, PortAllocator(*free_rtp_range()), host=HOST, on_dtmf=digits.append)
    transport, uas = await loop.create_datagram_endpoint(lambda: MiniUas(endpoint), local_addr=(HOST, 0))
    uas_port = transport.get_extra_info("sockname")[1]
    sip_port, ctrl_port = free_udp_port(), free_tcp_port()  # baresip also listens on TCP sip_port: rare clash
    baresip_config(tmp_path, sip_port=sip_port, ctrl_port=ctrl_port, rtp=free_rtp_range(20))
    log = open(tmp_path / "baresip.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(["baresip", "-f", str(tmp_path)], stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    ctrl: Ctrl | None = None
    received: list[bytes] = []
    try:
        ctrl = await Ctrl.connect(ctrl_port, proc)
        ctrl.send("dial", f"sip:bridge@{HOST}:{uas_port}")
        await asyncio.wait_for(uas.answered.wait(), 15)
        encoded = lin2ulaw(tone(1000, 6.0))
        next_tick = loop.time()
        for i in range(250):  # 5 s of 20 ms ticks, as the mixer would drive the leg
            endpoint.write_frame(encoded[i * 160 : (i + 1) * 160])
            frame = endpoint.read_frame(loop.time())
            if frame is not None:
                received.append(frame)
            if i == 100:
                ctrl.send("sndcode", "1234#")
                endpoint.send_dtmf("9", 120)
                endpoint.send_dtmf("*", 120)
            next_tick += 0.02
            await asyncio.sleep(max(0.0, next_tick - loop.time()))
        ctrl.send("hangup")
        await asyncio.wait_for(uas.bye.wait(), 10)
        await asyncio.sleep(0.5)
        events = [(e.get("type"), e.get("param")) for e in ctrl.events if e.get("event")]
    finally:
        if ctrl is not None:
            await ctrl.close()
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        endpoint.close()
        transport.close()
    diagnostics = (tmp_path / "baresip.log").read_text(errors="replace")[-2000:]
    # baresip -> us
    assert digits == list("1234#"), (digits, diagnostics)
    freq, share = dominant_freq(ulaw2lin(b"".join(received[25:95])))  # after set-up, before the digits
    assert abs(freq - 440) < 5 and share > 0.9, (freq, share)
    # us -> baresip: its recording of what it received, and its DTMF events
    recordings = sorted((tmp_path / "rec").glob("dump-*-dec.wav"))
    assert recordings, diagnostics
    with wave.open(str(recordings[0])) as w:
        pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2")
        rate = w.getframerate()
    assert rate == 8000
    freq, share = dominant_freq(pcm[len(pcm) // 5 : len(pcm) * 2 // 5])
    assert abs(freq - 1000) < 5 and share > 0.9, (freq, share)
    got = "".join(param or "" for kind, param in events if kind == "CALL_DTMF_START")
    assert got == "9*", (events, diagnostics)
