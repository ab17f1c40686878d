"""The portal child's bookkeeping: the ``/status`` text polled from the ``Popen``, and a pid file naming a
process that is not our portal (a recycled pid) is left alone."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from bridge import portal


def _exited(code: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-c", f"import sys; sys.exit({code})"])
    proc.wait(30)
    return proc


def _free_address() -> tuple[str, int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return "127.0.0.1", int(s.getsockname()[1])


def test_describe_polls_the_real_state() -> None:
    address = _free_address()
    running = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert portal.describe(running, "web.listen", address) == f"running (pid {running.pid})"
        running.kill()
        running.wait(30)
        assert portal.describe(running, "web.listen", address) == f"killed by SIGKILL (pid {running.pid})"
    finally:
        running.kill()
    done = _exited(3)
    assert portal.describe(done, "web.listen", address) == f"exited with code 3 (pid {done.pid})"
    with socket.socket() as squatter:
        squatter.bind(address)
        squatter.listen()
        assert portal.describe(done, "web.listen", address) == (
            f"failed: web.listen: cannot bind 127.0.0.1:{address[1]}: address already in use (exited with code 3)"
        )


def test_a_pid_file_naming_another_program_is_not_killed(tmp_path: Path) -> None:
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / portal.PID_FILE).write_text(f"{other.pid}\n")
        assert not portal.is_portal(other.pid)
        assert portal.stop_stale(tmp_path) is None
        assert other.poll() is None and not (tmp_path / portal.PID_FILE).exists()
    finally:
        other.kill()
        other.wait(30)
    assert portal.stop_stale(tmp_path) is None  # no pid file at all
