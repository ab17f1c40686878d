"""The CRM XML API as a child process of ``bridge run``, started and stopped like the portal.

The child is ``python -m bridge.portal <engine pid> [--config X] api serve``: :mod:`bridge.portal`'s launcher
gives it the same guarantees as the portal (SIGTERM when the engine dies, no start when the engine is
already gone) and its cmdline names that module, so :func:`bridge.portal.is_portal` recognises a stale one.
Its pid goes to ``<data_dir>/api.pid`` (the portal's is ``portal.pid``).
"""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

from bridge import portal as launcher
from bridge.listeners import bind_error

PID_FILE = "api.pid"
log = logging.getLogger(__name__)


def stop(proc: subprocess.Popen[bytes], data_dir: Path) -> None:
    launcher.stop(proc, data_dir, pid_file=PID_FILE)


def start_if_enabled(
    enabled: bool, listen: str, data_dir: Path, api_args: list[str] | None
) -> subprocess.Popen[bytes] | None:
    """The engine's one call at start: the API child when ``api.enabled`` and the CLI gave its arguments
    (``[--config X] api serve``; ``bridge run --no-api`` gives none). Independent of the portal's child."""
    if not enabled or api_args is None:
        return None
    stale = launcher.stop_stale(data_dir, pid_file=PID_FILE)
    if stale is not None:
        log.warning("stopped the CRM API (pid %d) left running by a previous engine", stale)
    from bridge.configcheck import parse_host_port

    error = bind_error("api.listen", parse_host_port(listen, "api.listen"))
    if error is not None:
        log.error("CRM API not started: %s", error)
        return None
    try:
        return launcher.start(data_dir, api_args, pid_file=PID_FILE)
    except OSError as exc:
        log.error("CRM API failed to start: %s", exc)
        return None
