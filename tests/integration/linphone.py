"""A headless linphone (``linphonec`` from Debian's ``linphone-cli``) for the interop matrix.

What makes it work without a sound card or a terminal:

* ``HOME`` is a directory of the phone's own with ``.local/share/linphone`` in it: liblinphone 5.1 stays in
  ``LinphoneGlobalStartup`` (no SIP listening point, every call fails with "Error from linphone_core_invite")
  when it cannot open its sqlite database there.
* ``soundcard use files`` then ``play <wav>`` (what the phone sends) and ``record <wav>`` (what it receives,
  written as 16-bit WAV): the FFT of both directions.
* linphonec reads commands line by line from stdin and reports call states on stdout ("Call 1 with ...
  connected.", "... is now paused.", "... ended (...)"); ``stdbuf -oL`` keeps stdout line-buffered through the
  pipe, and a reader thread keeps every line.
* DTMF: a line of digits sends them; the method follows ``[sip] use_rfc2833`` / ``use_info``, switched between
  digits with ``param sip ...`` (only keys present in the rc file can be changed, so both are written).

SIP and RTP bind to 127.0.0.1 only. TLS trusts the given CA and checks the server's certificate.
A missing ``linphonec`` makes the caller fail (run tests/peers/install.sh), never skip.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from tests.integration.rtp_peers import free_udp_port, read_wav, tone, write_wav

LINPHONEC = shutil.which("linphonec") or "/usr/bin/linphonec"


class Linphone:
    """One linphonec in ``workdir/name``: plays a ``freq`` tone, records what it hears, driven over stdin."""

    def __init__(self, workdir: Path, name: str, freq: float, *, ca: Path | None = None, secs: float = 30.0) -> None:
        if not Path(LINPHONEC).exists():
            raise FileNotFoundError("linphonec is not installed: run tests/peers/install.sh (linphone-cli)")
        self.dir = workdir / name
        (self.dir / ".local" / "share" / "linphone").mkdir(parents=True)
        self.mic = self.dir / "mic.wav"
        self.rec = self.dir / "rec.wav"
        write_wav(self.mic, tone(freq, secs))
        self.sip_port = free_udp_port()
        (self.dir / "linphonerc").write_text(linphonerc(self.sip_port, free_udp_port(even=True), ca))
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self.proc = subprocess.Popen(
            ["stdbuf", "-oL", LINPHONEC, "-c", str(self.dir / "linphonerc"), "-d", "6", "-l", str(self.dir / "log")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=self.dir,
            env={**os.environ, "HOME": str(self.dir)},
        )
        self._reader = threading.Thread(target=self._read, name=f"linphonec-{name}", daemon=True)
        self._reader.start()
        for command in ("soundcard use files", f"play {self.mic}", f"record {self.rec}"):
            self.send(command)
        self.wait_for(r"^linphonec> record ", 10)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            with self._cond:
                self.lines.append(raw.decode(errors="replace").rstrip("\n"))
                self._cond.notify_all()

    def send(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command.encode() + b"\n")
        self.proc.stdin.flush()

    def wait_for(self, pattern: str, timeout: float, *, after: int = 0) -> int:
        """Wait for an output line (from line number ``after`` on) matching ``pattern``; returns its number + 1
        (pass it as ``after`` to wait for a later one)."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for n in range(after, len(self.lines)):
                    if regex.search(self.lines[n]):
                        return n + 1
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    raise AssertionError(f"linphonec never printed /{pattern}/:\n" + "\n".join(self.lines[-30:]))
                self._cond.wait(min(left, 0.2))

    def register(self, user: str, proxy: str) -> None:
        """Register ``sip:<user>@127.0.0.1`` at ``proxy`` (a SIP URI, e.g. ``sip:127.0.0.1:5061;transport=tls``)
        and answer incoming calls by itself; returns once the registrar said 200."""
        self.send("autoanswer enable")
        self.send(f"register sip:{user}@127.0.0.1 {proxy}")
        deadline = time.monotonic() + 15
        after = len(self.lines)
        while True:  # linphonec prints nothing when the registration completes: ask it
            self.send("status register")
            try:
                self.wait_for(r"^registered, identity=", 0.5, after=after)
                return
            except AssertionError:
                if time.monotonic() > deadline:
                    raise

    def log_count(self, pattern: str) -> int:
        """How many lines of linphone's own log match ``pattern`` (what it did on the wire)."""
        path = self.dir / "log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return len(re.findall(pattern, text, re.MULTILINE))

    def wait_log(self, pattern: str, count: int, timeout: float) -> None:
        """Wait until linphone's log has ``count`` lines matching ``pattern``."""
        deadline = time.monotonic() + timeout
        while self.log_count(pattern) < count:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise AssertionError(f"linphone's log never had {count} x /{pattern}/ (see {self.dir}/log)")
            time.sleep(0.05)

    def dtmf(self, digit: str, method: str) -> None:
        """Send one digit by RFC 4733 (``rfc4733``) or SIP INFO (``info``)."""
        info = method == "info"
        self.send(f"param sip use_info {int(info)}")
        self.send(f"param sip use_rfc2833 {int(not info)}")
        self.send(digit)

    def recording(self) -> np.ndarray[Any, Any]:
        """What the phone received and decoded (complete once the call has ended)."""
        if not self.rec.exists():
            raise AssertionError(f"linphonec recorded nothing (see {self.dir}/log)")
        return read_wav(self.rec)

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.send("quit")
                self.proc.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(5)
        self._reader.join(2)


def linphonerc(sip_port: int, rtp_port: int, ca: Path | None) -> str:
    """The phone's rc: UDP on ``sip_port``, TCP and TLS on a random port (needed to place calls over them),
    loopback only, RFC 4733 to start with."""
    tls = f"root_ca={ca}\nverify_server_certs=1\nverify_server_cn=1\n" if ca is not None else ""
    return f"""[sip]
sip_port={sip_port}
sip_tcp_port=-1
sip_tls_port=-1
bind_address=127.0.0.1
use_ipv6=0
use_info=0
use_rfc2833=1
inc_timeout=30
{tls}
[rtp]
bind_address=127.0.0.1
audio_rtp_port={rtp_port}
nortp_timeout=30

[sound]
echocancellation=0

[video]
capture=0
display=0
automatically_initiate=0
automatically_accept=0
"""
