"""Harness for the Instant Conference end-to-end tests: the real appliance (``bridge run`` in a
subprocess), SIPp as the trunk's far end (every dialled phone), headless baresip phones that dial in,
and the node SMSC simulator. Every peer missing from the machine makes the test fail loudly.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bridge.control_client import ControlClient, ControlError
from bridge.db.models import Company, DnisKind, DnisNumber, IcMember, InstantConference, Subscriber
from bridge.db.session import make_engine, make_session_factory, upgrade
from tests.integration.rtp_peers import baresip_config, free_tcp_port, free_udp_port, tone, write_wav

SUB = "+15551230001"
MEMBERS = ("+15551230002", "+15551230003", "+15551230004")
COMMON = "+15550100"
POOL1 = "+15550101"
ACTIVATION_PIN = "111111"
USER_PIN = "222222"
REPO = Path(__file__).resolve().parents[2]
MEDIA_PATH = os.environ.get("BRIDGE_TEST_MEDIA_PATH", "batched")
"""``sip.media_path`` of the appliance under test: ``BRIDGE_TEST_MEDIA_PATH=socket`` runs the IC and room
tests on the per-socket path (both are run; docs/design/sip-media.md "Batched RTP in the engine")."""


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A loopback port free right now: TCP, or UDP with ``kind=socket.SOCK_DGRAM``."""
    return free_udp_port() if kind == socket.SOCK_DGRAM else free_tcp_port()


def free_rtp_range(size: int) -> str:
    """``low-high`` of currently free UDP ports (even start)."""
    for _ in range(200):
        low = free_port(socket.SOCK_DGRAM)
        low -= low % 2
        if low + size >= 65535:
            continue
        try:
            socks = []
            for port in range(low, low + size):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(s)
                s.bind(("127.0.0.1", port))
            return f"{low}-{low + size - 1}"
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free UDP port range")


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll until truthy; the timeout only guards against hangs."""
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def require(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        raise RuntimeError(f"{binary} is not installed: run `make deps` (tests/peers/install.sh)")
    return path


# --- SIPp: the phones behind the trunk --------------------------------------------------------------


def uas_scenario(refuse: str | None) -> str:
    """Answer every INVITE (no audio) and wait for BYE; INVITEs to ``refuse`` get 480 (an unanswered phone)."""
    digits = re.escape(refuse.lstrip("+")) if refuse else "no-such-number"
    if True:  # SIPp wants every tested variable assigned somewhere
        check = f"""    <action>
      <ereg regexp="^INVITE sip:\\+?{digits}@" search_in="msg" check_it="false" assign_to="refuse"/>
    </action>
"""
    return f"""<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="ic_phones">
  <recv request="INVITE">
{check}  </recv>
  <nop next="refuse" test="refuse"/>
  <send>
    <![CDATA[
SIP/2.0 180 Ringing
[last_Via:]
[last_From:]
[last_To:];tag=[pid]IC[call_number]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:[local_ip]:[local_port];transport=[transport]>
Content-Length: 0

    ]]>
  </send>
  <send retrans="500">
    <![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:];tag=[pid]IC[call_number]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:[local_ip]:[local_port];transport=[transport]>
Content-Type: application/sdp
Content-Length: [len]

v=0
o=sipp 1 1 IN IP4 [local_ip]
s=sipp
c=IN IP4 [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 0 101
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=sendrecv

    ]]>
  </send>
  <recv request="ACK"/>
  <recv request="BYE" timeout="300000"/>
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
  <nop next="done"/>
  <label id="refuse"/>
  <send>
    <![CDATA[
SIP/2.0 480 Temporarily Unavailable
[last_Via:]
[last_From:]
[last_To:];tag=[pid]IC[call_number]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

    ]]>
  </send>
  <recv request="ACK"/>
  <label id="done"/>
</scenario>
"""


class Phones:
    """One SIPp UAS standing for every phone behind the trunk; logs every message it sees."""

    def __init__(self, workdir: Path, *, refuse: str | None = None) -> None:
        sipp = require("sipp")
        self.port = free_port(socket.SOCK_DGRAM)
        media = free_port(socket.SOCK_DGRAM)
        self.log = workdir / "phones_messages.log"
        scenario = workdir / "phones.xml"
        scenario.write_text(uas_scenario(refuse))
        self.out = open(workdir / "phones.out", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sipp, "-sf", str(scenario), "-i", "127.0.0.1", "-p", str(self.port), "-mi", "127.0.0.1",
             "-mp", str(media), "-nostdin", "-trace_msg", "-message_file", str(self.log), "-trace_err",
             "-error_file", str(workdir / "phones_errors.log")],
            cwd=workdir, stdin=subprocess.DEVNULL, stdout=self.out, stderr=subprocess.STDOUT,
        )  # fmt: skip
        time.sleep(0.3)
        if self.proc.poll() is not None:
            raise RuntimeError(f"SIPp exited at start: {(workdir / 'phones.out').read_text(errors='replace')}")

    def invites(self) -> list[dict[str, str]]:
        """Distinct INVITEs received (by Call-ID): Request-URI user, From user, P-Asserted-Identity user."""
        if not self.log.exists():
            return []
        text = self.log.read_text(errors="replace")
        seen: dict[str, dict[str, str]] = {}
        for block in re.split(r"\n-{5,}[^\n]*\n", text):
            if "message received" not in block:
                continue
            match = re.search(r"^INVITE sip:([^@;> ]+)@", block, re.M)
            if not match:
                continue
            call_id = _header(block, "Call-ID")
            frm = re.search(r"sip:([^@;> ]+)@", _header(block, "From"))
            pai = re.search(r"sip:([^@;> ]+)@", _header(block, "P-Asserted-Identity"))
            seen.setdefault(call_id, {"to": match[1], "from": frm[1] if frm else "", "pai": pai[1] if pai else ""})
        return list(seen.values())

    def byes(self) -> set[str]:
        """Call-IDs of the calls the bridge hung up (BYE received)."""
        if not self.log.exists():
            return set()
        calls = set()
        for block in re.split(r"\n-{5,}[^\n]*\n", self.log.read_text(errors="replace")):
            if "message received" in block and re.search(r"^BYE sip:", block, re.M):
                calls.add(_header(block, "Call-ID"))
        return calls

    def invite_call_ids(self, to: str) -> set[str]:
        """Call-IDs of the INVITEs to ``to`` (any spelling of the number)."""
        ids = set()
        for block in re.split(r"\n-{5,}[^\n]*\n", self.log.read_text(errors="replace")):
            match = re.search(r"^INVITE sip:\+?([^@;> ]+)@", block, re.M)
            if "message received" in block and match and match[1] == to.lstrip("+"):
                ids.add(_header(block, "Call-ID"))
        return ids

    def stop(self) -> None:
        _stop(self.proc)
        self.out.close()


def _header(block: str, name: str) -> str:
    match = re.search(rf"^{name}\s*:\s*(.*)$", block, re.M | re.I)
    return match[1].strip() if match else ""


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


# --- baresip: phones that dial in --------------------------------------------------------------------


class Baresip:
    """A headless baresip phone (ctrl_tcp), sending a tone and recording what it receives."""

    def __init__(self, workdir: Path, name: str, *, user: str, freq: float) -> None:
        binary = require("baresip")
        self.dir = workdir / name
        (self.dir / "rec").mkdir(parents=True)
        self.sip_port = free_port(socket.SOCK_DGRAM)
        self.ctrl_port = free_port()
        write_wav(self.dir / "mic.wav", tone(freq, 60.0, rounded=False))
        rtp = free_rtp_range(20)
        (self.dir / "config").write_text(
            baresip_config(self.dir, sip_port=self.sip_port, rtp_ports=rtp, ctrl_port=self.ctrl_port)
        )
        (self.dir / "accounts").write_text(
            f"<sip:{user}@127.0.0.1:{self.sip_port}>;regint=0;answermode=auto;audio_codecs=PCMU\n"
        )
        (self.dir / "contacts").write_text("")
        self.log = open(self.dir / "log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [binary, "-f", str(self.dir)], stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT
        )
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self.sock = self._connect()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _connect(self) -> socket.socket:
        end = time.monotonic() + 10
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"baresip exited: {(self.dir / 'log').read_text(errors='replace')[-2000:]}")
            try:
                return socket.create_connection(("127.0.0.1", self.ctrl_port), 1)
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("baresip ctrl_tcp never opened")

    def _read(self) -> None:
        buf = b""
        self.sock.settimeout(0.2)
        while True:
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if not chunk:
                return
            buf += chunk
            while b":" in buf:
                size, rest = buf.split(b":", 1)
                if not size.isdigit() or len(rest) < int(size) + 1:
                    break
                with self._lock:
                    self.events.append(json.loads(rest[: int(size)]))
                buf = rest[int(size) + 1 :]

    def send(self, command: str, params: str = "") -> None:
        body = json.dumps({"command": command, "params": params, "token": command}).encode()
        self.sock.sendall(b"%d:%s," % (len(body), body))

    def event_types(self) -> list[str]:
        with self._lock:
            return [str(e.get("type")) for e in self.events if e.get("event")]

    def count(self, kind: str) -> int:
        return self.event_types().count(kind)

    def dial(self, uri: str) -> None:
        established = self.count("CALL_ESTABLISHED")
        self.send("dial", uri)
        wait_for(lambda: self.count("CALL_ESTABLISHED") > established, 10, f"{uri} answered")

    def digits(self, digits: str, gap: float = 0.25) -> None:
        for digit in digits:
            self.send("sndcode", digit)
            time.sleep(gap)

    def hangup(self) -> None:
        self.send("hangup")

    def received(self) -> np.ndarray[Any, Any]:
        """PCM of the most recent call's received audio (sndfile's ``dump-*-dec.wav``)."""
        files = sorted(self.dir.glob("rec/dump-*-dec.wav"), key=lambda p: p.stat().st_mtime)
        if not files:
            raise AssertionError(f"baresip {self.dir.name} recorded nothing")
        raw = files[-1].read_bytes()
        # The WAV header's sizes are written when the call closes; while it is live, read past "data".
        start = raw.find(b"data")
        if start < 0:
            raise AssertionError(f"baresip {self.dir.name}: no data chunk yet")
        body = raw[start + 8 :]
        return np.frombuffer(body[: len(body) // 2 * 2], "<i2").astype(float)

    def stop(self) -> None:
        try:
            self.send("quit")
        except OSError:
            pass
        try:
            self.proc.wait(3)
        except subprocess.TimeoutExpired:
            _stop(self.proc)
        self.sock.close()
        self.log.close()


def band_share(pcm: np.ndarray[Any, Any], freq: float, width: float = 25.0, rate: int = 8000) -> float:
    """Share of the signal's energy within ``freq`` +- ``width`` Hz."""
    x = pcm - pcm.mean()
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x)))) ** 2
    f = np.fft.rfftfreq(len(x), 1 / rate)
    total = spec[f > 50].sum()
    return float(spec[np.abs(f - freq) <= width].sum() / total) if total else 0.0


def dominant(pcm: np.ndarray[Any, Any], rate: int = 8000) -> float:
    x = pcm - pcm.mean()
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x)))) ** 2
    f = np.fft.rfftfreq(len(x), 1 / rate)
    spec[f < 50] = 0
    return float(f[int(np.argmax(spec))])


# --- the appliance ----------------------------------------------------------------------------------


class Appliance:
    """``bridge run --no-web`` with a private config and database; control API client ready."""

    def __init__(
        self,
        workdir: Path,
        *,
        trunk_port: int,
        smpp_port: int | None = None,
        conference: dict[str, Any] | None = None,
        extra: str = "",
        feed_port: int | None = None,
    ) -> None:
        self.workdir = workdir
        self.sip_port = free_port(socket.SOCK_DGRAM)
        self.control_port = free_port()
        data = workdir / "var"
        data.mkdir()
        conference_cfg = {"hysteresis_s": 120, "callback_retries": 2, "callback_delay_s": 0.5, "ring_timeout_s": 10}
        conference_cfg.update(conference or {})
        lines = [
            "[node]", 'name = "test-node"', f'data_dir = "{data}"',
            "[smpp]", f"enabled = {'true' if smpp_port else 'false'}", f"port = {smpp_port or 2775}",
            'password = "secret"', 'short_codes = ["2663"]',
            "[sip]", f'listen = "127.0.0.1:{self.sip_port}"', f'rtp_ports = "{free_rtp_range(80)}"',
            "rtp_timeout_s = 120", f'media_path = "{MEDIA_PATH}"',
            "[[trunk_group]]", 'name = "trunk"', f'gateways = ["127.0.0.1:{trunk_port}"]',
            "calls_per_second = 20",
            "[dnis]", f'common = "{COMMON}"', f'pool = ["{POOL1}-+15550103"]', "digit_timeout_s = 2",
            "[conference]", *(f"{k} = {json.dumps(v)}" for k, v in conference_cfg.items()),
            "[web]", "enabled = false",
            "[control]", f'listen = "127.0.0.1:{self.control_port}"', 'token = "test-token"',
            "[cdr]", f'feed_listen = "{f"127.0.0.1:{feed_port}" if feed_port else ""}"', "push_enabled = false",
        ]  # fmt: skip
        self.config_path = workdir / "etc" / "bridge.toml"
        self.config_path.parent.mkdir()
        self.config_path.write_text("\n".join(lines) + "\n" + extra)
        self.db_url = f"sqlite:///{data / 'bridge.db'}"
        upgrade(self.db_url)
        self.db = make_engine(self.db_url)
        self.sessions: sessionmaker[Session] = make_session_factory(self.db)
        self.client = ControlClient(f"http://127.0.0.1:{self.control_port}", "test-token", timeout=5)
        self.proc: subprocess.Popen[bytes] | None = None

    def seed(self, *, ic_members: tuple[str, ...] | None = None) -> None:
        """A company and the subscriber; with ``ic_members``, IC slot 1 on POOL1 with known PINs."""
        with self.sessions() as s:
            company = Company(name="Demo Co")
            sub = Subscriber(company=company, name="Sam", mobile=SUB)
            s.add_all([company, sub])
            s.flush()
            if ic_members is not None:
                pool = s.scalars(select(DnisNumber).where(DnisNumber.number == POOL1)).first()
                if pool is None:
                    pool = DnisNumber(number=POOL1, kind=DnisKind.POOL, position=1)
                    s.add(pool)
                    s.flush()
                ic = InstantConference(
                    subscriber=sub, slot=1, name="team", dnis_id=pool.id, activation_pin=ACTIVATION_PIN,
                    user_pin=USER_PIN,
                )  # fmt: skip
                ic.members = [IcMember(position=i, phone=number) for i, number in enumerate(ic_members)]
                s.add(ic)
            s.commit()

    def start(self) -> None:
        env = dict(os.environ, BRIDGE_CONFIG=str(self.config_path), PYTHONUNBUFFERED="1")
        self.out = open(self.workdir / "bridge.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bridge.cli", "--config", str(self.config_path), "run", "--no-web"],
            cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=self.out, stderr=subprocess.STDOUT,
        )  # fmt: skip
        wait_for(self._up, 30, "bridge control API")

    def _up(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"bridge exited: {self.logs()[-3000:]}")
        try:
            return self.client.status()["services"].get("sip") == "running"
        except ControlError:
            return False

    def logs(self) -> str:
        path = self.workdir / "bridge.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def conferences(self) -> list[dict[str, Any]]:
        return self.client.conferences()

    def sip_uri(self, number: str) -> str:
        return f"sip:{number}@127.0.0.1:{self.sip_port}"

    def stop(self) -> int:
        """SIGTERM and wait (graceful end: BYE to all, CDRs written)."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.out.close()
        self.db.dispose()
        code = int(self.proc.returncode)
        self.proc = None
        return code
