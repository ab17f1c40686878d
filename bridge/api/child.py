"""The CRM XML API as a child process of ``bridge run``, started and stopped like the portal.

The child is ``python -m bridge.portal <engine pid> [--config X] api serve``: :mod:`bridge.portal`'s launcher
gives it the same guarantees as the portal (SIGTERM when the engine dies, no start when the engine is
already gone) and its cmdline names that module, so :func:`bridge.portal.is_portal` recognises a stale one.
Its pid goes to ``<data_dir>/api.pid`` (the portal's is ``portal.pid``).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from pathlib import Path

from bridge import portal as launcher
from bridge.listeners import bind_error

PID_FILE = "api.pid"
log = logging.getLogger(__name__)


def bridge_args(portal_args: list[str]) -> list[str]:
    """``[--config X] api serve`` from the portal's ``[--config X] web``."""
    return [*portal_args[:-1], "api", "serve"]


def start(data_dir: Path, args: list[str]) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(launcher.command(os.getpid(), args))
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / PID_FILE).write_text(f"{proc.pid}\n")
    return proc


def stop(proc: subprocess.Popen[bytes], data_dir: Path) -> None:
    proc.terminate()
    try:
        proc.wait(launcher.STOP_WAIT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    path = data_dir / PID_FILE
    if path.is_file() and path.read_text().strip() == str(proc.pid):
        path.unlink()


def stop_stale(data_dir: Path) -> int | None:
    """Stop an API child a killed engine left running (pid file + ``/proc`` check); returns its pid, if any."""
    path = data_dir / PID_FILE
    try:
        pid = int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    path.unlink(missing_ok=True)
    if pid == os.getpid() or not launcher.is_portal(pid):
        return None
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + launcher.STOP_WAIT_S
        while time.monotonic() < deadline and launcher.is_portal(pid):
            time.sleep(0.05)
        if not launcher.is_portal(pid):
            break
    log.warning("stopped the CRM API (pid %d) left running by a previous engine", pid)
    return pid


def start_if_enabled(
    enabled: bool, listen: str, data_dir: Path, portal_args: list[str] | None
) -> subprocess.Popen[bytes] | None:
    """The engine's one call at start: the API child when ``api.enabled`` (and the CLI gave its arguments)."""
    if not enabled or portal_args is None:
        return None
    stop_stale(data_dir)
    from bridge.configcheck import parse_host_port

    error = bind_error("api.listen", parse_host_port(listen, "api.listen"))
    if error is not None:
        log.error("CRM API not started: %s", error)
        return None
    try:
        return start(data_dir, bridge_args(portal_args))
    except OSError as exc:
        log.error("CRM API failed to start: %s", exc)
        return None
