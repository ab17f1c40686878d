"""``sd_notify(3)`` without libsystemd: readiness, status and the watchdog over ``$NOTIFY_SOCKET``.

The protocol is one datagram of ``KEY=VALUE`` lines to the unix socket named by ``NOTIFY_SOCKET`` (a path, or
``@name`` for the abstract namespace). ``WATCHDOG_USEC`` says how often systemd expects ``WATCHDOG=1``; if
``WATCHDOG_PID`` is set it must be ours. Outside systemd (no ``NOTIFY_SOCKET``) every call is a no-op.

:class:`Watchdog` is driven by the engine's media tick: it pings at half the interval systemd asked for, so a
tick that hangs (or a process that is stopped) stops the pings and systemd restarts the service.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger(__name__)


def notify(state: str, *, environ: Mapping[str, str] | None = None) -> bool:
    """Send ``state`` (e.g. ``"READY=1\\nSTATUS=running"``); True if a notify socket took it."""
    env = os.environ if environ is None else environ
    address = env.get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
    except OSError as exc:
        log.warning("sd_notify to %s failed: %s", env.get("NOTIFY_SOCKET"), exc)
        return False
    return True


def watchdog_interval(*, environ: Mapping[str, str] | None = None, pid: int | None = None) -> float | None:
    """Seconds between the pings systemd expects (half of ``WATCHDOG_USEC``), or None if no watchdog is set."""
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC", "")
    if not usec.isdigit() or int(usec) == 0 or not env.get("NOTIFY_SOCKET"):
        return None
    owner = env.get("WATCHDOG_PID", "")
    if owner and owner != str(os.getpid() if pid is None else pid):
        return None
    return int(usec) / 2e6


class Watchdog:
    """``WATCHDOG=1`` at most every ``interval`` seconds; :meth:`tick` is called with the loop's clock."""

    def __init__(self, interval: float | None, *, environ: Mapping[str, str] | None = None) -> None:
        self.interval = interval
        self.environ = environ
        self.pings = 0
        self._next = 0.0

    @classmethod
    def from_environment(cls) -> Watchdog:
        return cls(watchdog_interval())

    @property
    def enabled(self) -> bool:
        return self.interval is not None

    def tick(self, now: float) -> None:
        if self.interval is None or now < self._next:
            return
        self._next = now + self.interval
        if notify("WATCHDOG=1", environ=self.environ):
            self.pings += 1


def ready(status: str) -> bool:
    """Tell systemd the service is up (``Type=notify``): it then starts the units ordered after us."""
    return notify(f"READY=1\nSTATUS={status}\nMAINPID={os.getpid()}")


def stopping() -> bool:
    return notify("STOPPING=1\nSTATUS=stopping: ending conferences")
