"""sd_notify over a real unix datagram socket, and the engine under a fake systemd: READY=1 once started,
WATCHDOG=1 from the media tick, none while the process is stopped (SIGSTOP), again after SIGCONT."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.ops.systemd import Watchdog, notify, watchdog_interval

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    yield sock, path
    sock.close()


def test_notify_sends_one_datagram_and_is_a_no_op_outside_systemd(notify_socket: tuple[socket.socket, str]) -> None:
    sock, path = notify_socket
    assert notify("READY=1\nSTATUS=up", environ={"NOTIFY_SOCKET": path}) is True
    assert sock.recv(4096) == b"READY=1\nSTATUS=up"
    assert notify("READY=1", environ={}) is False


def test_abstract_namespace_socket() -> None:
    name = f"bridge-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        assert notify("WATCHDOG=1", environ={"NOTIFY_SOCKET": "@" + name})
        assert sock.recv(100) == b"WATCHDOG=1"


def test_watchdog_interval_is_half_of_watchdog_usec_and_only_for_our_pid() -> None:
    env = {"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "4000000"}
    assert watchdog_interval(environ=env) == 2.0
    assert watchdog_interval(environ={**env, "WATCHDOG_PID": "1"}, pid=2) is None
    assert watchdog_interval(environ={**env, "WATCHDOG_PID": "2"}, pid=2) == 2.0
    assert watchdog_interval(environ={"WATCHDOG_USEC": "4000000"}) is None


def test_watchdog_pings_at_most_once_per_interval(notify_socket: tuple[socket.socket, str]) -> None:
    sock, path = notify_socket
    dog = Watchdog(1.0, environ={"NOTIFY_SOCKET": path})
    for now in (0.0, 0.02, 0.5, 0.99, 1.0, 1.5, 2.1):
        dog.tick(now)
    assert dog.pings == 3
    sock.setblocking(False)
    assert [sock.recv(100) for _ in range(3)] == [b"WATCHDOG=1"] * 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _drain(sock: socket.socket, seconds: float) -> list[bytes]:
    """Every datagram that arrives within ``seconds`` (a window to listen in, not a performance threshold)."""
    out: list[bytes] = []
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            out.append(sock.recv(4096))
        except TimeoutError:
            break
    return out


def test_engine_ready_then_watchdog_from_the_tick_and_silent_while_stopped(
    tmp_path: Path, notify_socket: tuple[socket.socket, str]
) -> None:
    sock, path = notify_socket
    config = tmp_path / "etc" / "bridge.toml"
    config.parent.mkdir()
    config.write_text(
        f'[node]\ndata_dir = "{tmp_path / "var"}"\n[smpp]\nenabled = false\n[sip]\nenabled = false\n'
        f'[web]\nenabled = false\n[cdr]\nfeed_listen = ""\n[control]\nlisten = "127.0.0.1:{_free_port()}"\n'
    )
    subprocess.run([sys.executable, "-m", "bridge.cli", "--config", str(config), "db", "upgrade"], check=True,
                   cwd=REPO, capture_output=True)  # fmt: skip
    env = dict(os.environ, NOTIFY_SOCKET=path, WATCHDOG_USEC="400000")  # a ping every 0.2 s
    log = open(tmp_path / "engine.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, "-m", "bridge.cli", "--config", str(config), "run", "--no-web"],
                            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        sock.settimeout(60)
        first = sock.recv(4096)
        assert first.startswith(b"READY=1\n"), first
        assert f"MAINPID={proc.pid}".encode() in first and b"control=http://" in first
        pings = _drain(sock, 1.5)
        assert pings.count(b"WATCHDOG=1") >= 3, pings  # the tick runs: about one ping per 0.2 s
        proc.send_signal(signal.SIGSTOP)
        _drain(sock, 0.3)  # a ping sent just before the stop
        assert _drain(sock, 1.5) == []  # stopped: no tick, no ping (systemd would restart it)
        proc.send_signal(signal.SIGCONT)
        assert b"WATCHDOG=1" in _drain(sock, 1.5)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        assert any(d.startswith(b"STOPPING=1") for d in _drain(sock, 0.5))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        log.close()
        print((tmp_path / "engine.log").read_text(errors="replace")[-3000:])
