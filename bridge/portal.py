"""The portal subprocess of ``bridge run``: started so that it cannot outlive the engine, found and stopped
when a previous engine's portal is still there, and reported as it really is.

* The child is ``python -m bridge.portal <engine pid> <bridge args...> web``: it asks the kernel for SIGTERM
  when its parent dies (``prctl(PR_SET_PDEATHSIG)``, Linux), checks that the parent it was started by is
  still its parent (it may have died before the ``prctl``), then runs ``bridge ... web`` in the same
  process (the death signal would survive an ``exec`` too; staying keeps this module in the cmdline).
  Doing this in the child, not in a ``preexec_fn``, keeps the engine's threads (sippy, SMPP, APScheduler)
  away from code run between fork and exec. gunicorn's master then stops its workers.
* A pid file in the data dir names the running portal. At start, a pid file whose process is alive and is
  really ``bridge.portal`` (its ``/proc/<pid>/cmdline``) is a stale portal (e.g. the engine was killed on a
  kernel without the death signal): it gets SIGTERM, then SIGKILL if it lingers.
* :func:`describe` turns the ``Popen`` into the ``/status`` text: ``running (pid N)``, ``exited with code N``,
  ``killed by SIGKILL``, or ``failed: cannot bind ...`` when it exited and its address is taken.
"""

from __future__ import annotations

import ctypes
import os
import runpy
import signal
import subprocess
import sys
import time
from pathlib import Path

from bridge.listeners import bind_error

PID_FILE = "portal.pid"
MODULE = "bridge.portal"
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
STOP_WAIT_S = 10.0
"""How long a stale portal gets to stop after SIGTERM (gunicorn's graceful timeout is 5 s) before SIGKILL."""


def command(engine_pid: int, bridge_args: list[str]) -> list[str]:
    """The child's argv: this module, the engine's pid, then the ``bridge`` arguments (``[--config X] web``)."""
    return [sys.executable, "-m", MODULE, str(engine_pid), *bridge_args]


def start(data_dir: Path, bridge_args: list[str], *, pid_file: str = PID_FILE) -> subprocess.Popen[bytes]:
    """Start the portal (or another child of the engine run through this launcher, e.g. ``api serve``) and record
    its pid in ``<data_dir>/<pid_file>``. Call it from the thread that lives as long as the engine: the kernel
    sends the death signal when the *thread* that forked the child ends."""
    proc = subprocess.Popen(command(os.getpid(), bridge_args))
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / pid_file).write_text(f"{proc.pid}\n")
    return proc


def stop(proc: subprocess.Popen[bytes], data_dir: Path, *, pid_file: str = PID_FILE) -> None:
    proc.terminate()
    try:
        proc.wait(STOP_WAIT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    _forget(data_dir / pid_file, proc.pid)


def stop_stale(data_dir: Path, *, pid_file: str = PID_FILE) -> int | None:
    """Stop the child a previous engine left running (pid file + ``/proc`` check); returns its pid, if any."""
    path = data_dir / pid_file
    try:
        pid = int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    if pid == os.getpid() or not is_portal(pid):
        path.unlink(missing_ok=True)
        return None
    for sig, wait_s in ((signal.SIGTERM, STOP_WAIT_S), (signal.SIGKILL, STOP_WAIT_S)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.05)
        if not _alive(pid):
            break
    path.unlink(missing_ok=True)
    return pid


def is_portal(pid: int) -> bool:
    """``pid`` is alive and runs this module (so a recycled pid of another program is left alone)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return MODULE.encode() in argv and _alive(pid)


def describe(proc: subprocess.Popen[bytes], key: str, address: tuple[str, int]) -> str:
    """The portal's real state for ``/status``, polled from the ``Popen``."""
    code = proc.poll()
    if code is None:
        return f"running (pid {proc.pid})"
    if code < 0:
        return f"killed by {signal.Signals(-code).name} (pid {proc.pid})"
    error = bind_error(key, address)
    if error is not None:
        return f"failed: {error} (exited with code {code})"
    return f"exited with code {code} (pid {proc.pid})"


def _forget(path: Path, pid: int) -> None:
    try:
        if int(path.read_text().strip()) == pid:
            path.unlink()
    except (FileNotFoundError, ValueError):
        pass


def _alive(pid: int) -> bool:
    """Alive and not a zombie (a stale portal is not our child: its parent reaps it, not us)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _die_with_parent(engine_pid: int) -> None:
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != engine_pid:  # the engine died before the prctl: nobody would send the signal
        sys.exit(f"portal: the engine (pid {engine_pid}) is gone; not starting")


def main(argv: list[str]) -> None:
    engine_pid, bridge_args = int(argv[0]), argv[1:]
    _die_with_parent(engine_pid)
    # ``bridge <args>`` in this process (its cmdline keeps naming this module, which is_portal looks for);
    # by module name, as ``-m`` would: the engine that starts us imports this module.
    sys.argv = ["bridge", *bridge_args]
    runpy.run_module("bridge.cli", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
