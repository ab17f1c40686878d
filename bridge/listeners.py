"""Listeners that must bind or stop the start: the one-line error an operator sees, and a probe for it."""

from __future__ import annotations

import os
import socket


class StartError(Exception):
    """The engine cannot start: one line for the operator (``control.listen: cannot bind 127.0.0.1:8181: ...``)."""


def bind_error(key: str, address: tuple[str, int]) -> str | None:
    """``"<key>: cannot bind <host>:<port>: <reason>"`` when a TCP listener could not bind there now, else None.

    The socket gets ``SO_REUSEADDR`` as gunicorn's does, so only a live listener counts, not TIME_WAIT.
    """
    host, port = address
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            return cannot_bind(key, address, exc)
    return None


def cannot_bind(key: str, address: tuple[str, int], exc: OSError) -> str:
    """The one-line message of a listener that cannot bind (``control.listen: cannot bind 127.0.0.1:8181: ...``)."""
    host, port = address
    # os.strerror: asyncio's own text repeats the address ("error while attempting to bind on address ...")
    gai = isinstance(exc, socket.gaierror)
    reason = os.strerror(exc.errno).lower() if exc.errno and exc.errno > 0 and not gai else str(exc)
    shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return f"{key}: cannot bind {shown}: {reason}"
