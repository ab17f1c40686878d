"""Meet-me rooms end to end: ``bridge run`` (real SIP/RTP/mixer) and SIPp callers on loopback.

Every caller is one SIPp UAC call that replays a pcap with ``play_pcap_audio``. All pcaps carry the SAME
SSRC, sequence numbers and timestamps (as the standard load does), only the payload differs, so a bridge
that keyed streams by SSRC would mix them up. The SDP offers ``[media_port+4]``: SIPp sends from that
port and the bridge sends back to it, where a plain socket of this test records what the caller hears
(decoded with an independent µ-law decoder, analysed by FFT).

1. a PIN-less room: two callers (440 Hz, 880 Hz) join at once; each hears the other's tone, not its own;
2. a PIN room: RFC 4733 ``4321#`` joins as participant, the moderator PIN ``9876#`` as moderator, both hear
   each other; a wrong PIN is refused (not admitted, hung up);
3. a full room (max 2): the third caller hears the "conference is full" prompt and the bridge hangs up;
4. every admitted leg has a CDR with service type "room".

The rooms are provisioned with ``bridge room add`` on the appliance's config before ``bridge run`` starts.
"""

from __future__ import annotations

import shutil
import socket
import struct
import subprocess
import threading
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from sqlalchemy import select

from bridge.cli import main
from bridge.db.models import Cdr, Room
from tests.integration.ic_harness import Appliance, free_port, wait_for
from tests.integration.rtp_peers import _UAC, SIPP_SDP, dominant_freq, lin2ulaw, rtp, tone, ulaw2lin, write_pcap

pytestmark = pytest.mark.integration

HOST = "127.0.0.1"
SSRC = 0x1234ABCD  # the same for every caller
OPEN, PIN_ROOM, SMALL = "7001", "7002", "7003"
PIN, MODERATOR_PIN = "4321", "9876"
PROMPTS = Path(__file__).resolve().parents[2] / "bridge" / "prompts" / "wav"

# A UAC that waits for the bridge's BYE instead of sending its own (the refused caller).
_UAC_UNTIL_BYE = (
    _UAC.split("  <pause milliseconds")[0]
    + """  <recv request="BYE" timeout="{timeout_ms}"/>
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
)


def write_caller_pcap(path: Path, *, digits: str = "", freq: float | None, secs: float) -> None:
    """0.6 s of silence, RFC 4733 ``digits`` (PT 101), then ``freq`` Hz (or silence) for ``secs``.
    SSRC, sequence numbers and timestamps are the same for every pcap written with the same digits."""
    packets: list[tuple[float, bytes]] = []
    seq, ts, t = 1, 0, 0.0
    silence = b"\xff" * 160

    def audio(payload: bytes) -> None:
        nonlocal seq, ts, t
        packets.append((t, rtp(0, seq, ts, SSRC, payload, marker=seq == 1)))
        seq, ts, t = seq + 1, ts + 160, t + 0.02

    for _ in range(30):
        audio(silence)
    for digit in digits:
        code = "0123456789*#".index(digit)
        for k in range(1, 6):
            packets.append((t, rtp(101, seq, ts, SSRC, struct.pack(">BBH", code, 10, k * 160), marker=k == 1)))
            seq, t = seq + 1, t + 0.02
        for _ in range(3):
            packets.append((t, rtp(101, seq, ts, SSRC, struct.pack(">BBH", code, 0x80 | 10, 5 * 160))))
            seq += 1
        t += 0.02
        ts += 5 * 160
        for _ in range(10):
            audio(silence)
    body = lin2ulaw(tone(freq, secs)) if freq is not None else silence * int(secs * 50)
    for i in range(0, len(body) - 159, 160):
        audio(body[i : i + 160])
    write_pcap(path, packets)


class Caller:
    """One SIPp UAC call to ``number``; records (arrival time, RTP payload) of what the bridge sends it."""

    def __init__(
        self, workdir: Path, name: str, bridge: Appliance, number: str, *, pcap: str, hold_s: float,
        until_bye: bool = False,
    ) -> None:  # fmt: skip
        sipp = shutil.which("sipp")
        if sipp is None:
            raise RuntimeError("sipp is not installed: run `make deps`")
        self.name = name
        self.media_port, self.sock = _media_ports()
        self.packets: list[tuple[float, int, bytes]] = []
        self._stop = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        sdp = SIPP_SDP.format(port="[media_port+4]")
        if until_bye:
            text = _UAC_UNTIL_BYE.format(sdp=sdp, pcap=pcap, timeout_ms=int(hold_s * 1000))
        else:
            text = _UAC.format(sdp=sdp, pcap=pcap, pause_ms=int(hold_s * 1000))
        (workdir / f"{name}.xml").write_text(text)
        self.out = open(workdir / f"{name}.out", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sipp, f"{HOST}:{bridge.sip_port}", "-sf", f"{name}.xml", "-s", number, "-i", HOST, "-mi", HOST,
             "-p", str(free_port(socket.SOCK_DGRAM)), "-mp", str(self.media_port), "-m", "1", "-nostdin",
             "-trace_err", "-error_file", f"{name}_errors.log"],
            cwd=workdir, stdin=subprocess.DEVNULL, stdout=self.out, stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.workdir = workdir

    def _read(self) -> None:
        self.sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                data = self.sock.recv(2048)
            except TimeoutError:
                continue
            except OSError:
                return
            if len(data) >= 12 and data[0] >> 6 == 2:
                self.packets.append((time.monotonic(), data[1] & 0x7F, data[12 + 4 * (data[0] & 0x0F) :]))

    def heard(self, start: float, end: float) -> np.ndarray[Any, Any]:
        """PCM of the PCMU the caller received between two monotonic instants."""
        return ulaw2lin(b"".join(p for t, pt, p in list(self.packets) if pt == 0 and start <= t < end))

    def wait(self, timeout: float) -> int:
        try:
            return int(self.proc.wait(timeout))
        except subprocess.TimeoutExpired:
            raise AssertionError(f"SIPp {self.name} still running: {self.log()}") from None

    def log(self) -> str:
        parts = [self.workdir / f"{self.name}.out", *self.workdir.glob(f"{self.name}_errors*.log")]
        return "\n".join(p.read_text(errors="replace")[-1500:] for p in parts if p.exists())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._stop.set()
        self._reader.join(2)
        self.sock.close()
        self.out.close()


def _media_ports() -> tuple[int, socket.socket]:
    """An even SIPp ``-mp`` whose +0..+5 are free; the +4 socket (this test's recorder) is returned bound."""
    for _ in range(200):
        base = free_port(socket.SOCK_DGRAM)
        base -= base % 2
        probes: list[socket.socket] = []
        try:
            for offset in (0, 1, 2, 3, 5):
                probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                probes.append(probe)
                probe.bind((HOST, base + offset))
            recorder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                recorder.bind((HOST, base + 4))
            except OSError:
                recorder.close()
                raise
            recorder.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            return base, recorder
        except OSError:
            continue
        finally:
            for probe in probes:
                probe.close()
    raise RuntimeError("no free media ports")


def share(pcm: np.ndarray[Any, Any], freq: float, width: float = 20.0) -> float:
    """Share of the energy above 50 Hz that lies within ``freq`` +- ``width``."""
    x = np.asarray(pcm, dtype=np.float64)
    x = x - x.mean()
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x)))) ** 2
    f = np.fft.rfftfreq(len(x), 1 / 8000)
    total = spec[f > 50].sum()
    return float(spec[np.abs(f - freq) <= width].sum() / total) if total else 0.0


def prompt_match(pcm: np.ndarray[Any, Any], prompt: str) -> float:
    """Best normalised cross-correlation between the received audio and a prompt WAV (1.0 = identical)."""
    with wave.open(str(PROMPTS / f"{prompt}.wav")) as w:
        ref = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float64)
    x = np.asarray(pcm, dtype=np.float64)
    if len(x) < len(ref):
        return 0.0
    n = 1 << int(np.ceil(np.log2(len(x) + len(ref))))
    corr = np.fft.irfft(np.fft.rfft(x, n) * np.conj(np.fft.rfft(ref, n)), n)[: len(x) - len(ref) + 1]
    energy = np.convolve(x * x, np.ones(len(ref)), "valid")
    best = np.abs(corr) / np.sqrt(np.maximum(energy, 1e-9) * float(ref @ ref))
    return float(best.max())


@pytest.fixture
def bridge(tmp_path: Path) -> Iterator[Appliance]:
    """The appliance with three rooms provisioned through ``bridge room add`` (the CLI on its config)."""
    appliance = Appliance(tmp_path, trunk_port=free_port(socket.SOCK_DGRAM), conference={"pin_attempts": 1})
    for args in (
        ["--number", OPEN, "--name", "Open room"],
        ["--number", PIN_ROOM, "--name", "PIN room", "--pin", PIN, "--moderator-pin", MODERATOR_PIN],
        ["--number", SMALL, "--name", "Small room", "--max-members", "2"],
    ):
        result = CliRunner().invoke(main, ["--config", str(appliance.config_path), "room", "add", *args])
        assert result.exit_code == 0, result.output
    with appliance.sessions() as session:
        assert sorted(session.scalars(select(Room.number))) == [OPEN, PIN_ROOM, SMALL]
    appliance.start()
    yield appliance
    appliance.stop()


@pytest.fixture
def callers() -> Iterator[list[Caller]]:
    started: list[Caller] = []
    yield started
    for caller in started:
        caller.stop()


def _conference(bridge: Appliance, subject: str) -> dict[str, Any] | None:
    return next((c for c in bridge.conferences() if c["subject"] == subject), None)


def _connected(bridge: Appliance, subject: str, count: int) -> dict[str, Any] | None:
    conf = _conference(bridge, subject)
    if conf is None or sum(leg["status"] == "connected" for leg in conf["legs"]) < count:
        return None
    return conf


def _cdrs(bridge: Appliance) -> list[Cdr]:
    with bridge.sessions() as session:
        rows = list(session.scalars(select(Cdr).order_by(Cdr.id)))
        session.expunge_all()
    return rows


def _assert_hear_each_other(low: Caller, high: Caller, start: float, end: float) -> None:
    for caller, own, other in ((low, 440.0, 880.0), (high, 880.0, 440.0)):
        pcm = caller.heard(start, end)
        assert len(pcm) >= 8000, f"{caller.name} heard only {len(pcm)} samples"
        freq, _ = dominant_freq(pcm)
        assert abs(freq - other) < 5, (caller.name, freq)
        assert share(pcm, other) > 0.8, (caller.name, share(pcm, other))
        assert share(pcm, own) < 0.02, (caller.name, "hears itself", share(pcm, own))


def test_open_room_callers_with_the_same_ssrc_hear_each_other(
    bridge: Appliance, callers: list[Caller], tmp_path: Path
) -> None:
    write_caller_pcap(tmp_path / "low.pcap", freq=440, secs=9)
    write_caller_pcap(tmp_path / "high.pcap", freq=880, secs=9)
    low = Caller(tmp_path, "low", bridge, OPEN, pcap="low.pcap", hold_s=9)
    callers.append(low)
    high = Caller(tmp_path, "high", bridge, OPEN, pcap="high.pcap", hold_s=9)
    callers.append(high)
    conf = wait_for(lambda: _connected(bridge, "Open room", 2), 15, "both callers in the open room")
    both_in = time.monotonic()
    assert conf["service_type"] == "room"
    assert sorted(leg["role"] for leg in conf["legs"]) == ["participant", "participant"]
    time.sleep(5)  # prompts and join beeps are over after a few seconds; then only the tones remain
    _assert_hear_each_other(low, high, both_in + 3.0, both_in + 5.0)
    assert low.wait(30) == 0, low.log()
    assert high.wait(30) == 0, high.log()
    rows = wait_for(lambda: len(_cdrs(bridge)) == 2 and _cdrs(bridge), 15, "two CDRs")
    assert {(r.service_type, r.service_subject, r.dnis, r.role, r.direction) for r in rows} == {
        ("room", "Open room", OPEN, "participant", "in")
    }
    assert rows[0].service_id == rows[1].service_id == conf["run_id"]


def test_pin_room_admits_after_rfc4733_pins_and_refuses_a_wrong_pin(
    bridge: Appliance, callers: list[Caller], tmp_path: Path
) -> None:
    write_caller_pcap(tmp_path / "user.pcap", digits=PIN + "#", freq=440, secs=12)
    write_caller_pcap(tmp_path / "moderator.pcap", digits=MODERATOR_PIN + "#", freq=880, secs=12)
    write_caller_pcap(tmp_path / "wrong.pcap", digits="1111#", freq=None, secs=8)
    user = Caller(tmp_path, "user", bridge, PIN_ROOM, pcap="user.pcap", hold_s=12)
    callers.append(user)
    moderator = Caller(tmp_path, "moderator", bridge, PIN_ROOM, pcap="moderator.pcap", hold_s=12)
    callers.append(moderator)
    conf = wait_for(lambda: _connected(bridge, "PIN room", 2), 20, "both PIN callers in the room")
    both_in = time.monotonic()
    assert conf["service_type"] == "room"
    assert sorted(leg["role"] for leg in conf["legs"]) == ["moderator", "participant"]
    wrong = Caller(tmp_path, "wrong", bridge, PIN_ROOM, pcap="wrong.pcap", hold_s=20, until_bye=True)
    callers.append(wrong)
    time.sleep(5)
    _assert_hear_each_other(user, moderator, both_in + 3.0, both_in + 5.0)
    assert wrong.wait(30) == 0, wrong.log()  # the bridge hung up on the wrong PIN (SIPp got its BYE)
    conf = _conference(bridge, "PIN room")
    assert conf is not None and len(conf["legs"]) == 2  # the wrong PIN never joined
    assert user.wait(30) == 0, user.log()
    assert moderator.wait(30) == 0, moderator.log()
    rows = wait_for(lambda: len(_cdrs(bridge)) == 3 and _cdrs(bridge), 15, "three CDRs")
    assert sorted((r.service_type, r.dnis, r.role, r.cause) for r in rows) == [
        ("dial-in", PIN_ROOM, "caller", "wrong pin"),  # answered, refused at the PIN prompt: billed as such
        ("room", PIN_ROOM, "moderator", "normal"),
        ("room", PIN_ROOM, "participant", "normal"),
    ]


def test_full_room_says_so_and_hangs_up(bridge: Appliance, callers: list[Caller], tmp_path: Path) -> None:
    write_caller_pcap(tmp_path / "quiet.pcap", freq=None, secs=15)
    for name in ("first", "second"):
        callers.append(Caller(tmp_path, name, bridge, SMALL, pcap="quiet.pcap", hold_s=15))
    wait_for(lambda: _connected(bridge, "Small room", 2), 15, "two callers in the small room")
    third = Caller(tmp_path, "third", bridge, SMALL, pcap="quiet.pcap", hold_s=20, until_bye=True)
    callers.append(third)
    assert third.wait(30) == 0, third.log()  # SIPp received the bridge's BYE
    heard = third.heard(0, time.monotonic())
    assert prompt_match(heard, "conference_full") > 0.9
    assert prompt_match(heard, "conference_locked") < prompt_match(heard, "conference_full") - 0.2
    conf = _conference(bridge, "Small room")
    assert conf is not None and len(conf["legs"]) == 2
    for caller in callers[:2]:
        assert caller.wait(30) == 0, caller.log()
    rows = wait_for(lambda: len(_cdrs(bridge)) == 3 and _cdrs(bridge), 15, "three CDRs")
    assert sorted((r.service_type, r.service_subject, r.cause) for r in rows) == [
        ("dial-in", f"PIN prompt on {SMALL}", "conference full"),  # the third caller, answered then refused
        ("room", "Small room", "normal"),
        ("room", "Small room", "normal"),
    ]
