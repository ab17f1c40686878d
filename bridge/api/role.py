"""The one seam between the provisioning APIs (and the portal) and high availability (:mod:`bridge.ha`).

The CRM XML API and the REST API's writes run only on the active node of an HA pair: before acting they
ask ``is_active()``; on a standby the CRM gets the ``NOT_ACTIVE`` negative acknowledgement and REST clients
a ``503`` problem, both naming ``active_node()`` so the client can go there (or retry on the VIP, which
the active node holds).

The role lives in the engine (:class:`bridge.ha.node.HaNode`); the portal and the CRM API are child
processes, so they read it where ``bridge ha status`` does: the ``ha`` block of the engine's control API
``GET /status`` (``read_only``: this node does not serve; ``active_node``: the active node's id, ``None``
while nobody is known to be active). :class:`HaRole` caches that block for ``ttl_s`` (one control request
a second at most) and fails closed: an engine that does not answer makes the node a standby with no
known active node. Without HA (``ha.enabled = false``) :data:`SINGLE` is always active and asks nothing.

A change the CRM was acknowledged is committed before the acknowledgement is sent, so it survives a
failover whenever the database replication is synchronous (PostgreSQL ``synchronous_commit`` with the
peer healthy, DESIGN.md).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from bridge.config import Config

TTL_S = 1.0
"""How long a process trusts the engine's HA role before asking again."""


class Role(Protocol):
    """What the APIs ask (tests inject fakes)."""

    def is_active(self) -> bool: ...
    def active_node(self) -> str: ...


class _Single:
    """No HA: this node is the only one, always active."""

    def is_active(self) -> bool:
        return True

    def active_node(self) -> str:
        return ""

    def state(self) -> dict[str, Any]:
        return {"enabled": False, "read_only": False, "active_node": None}


SINGLE = _Single()


class HaRole:
    """The engine's HA role seen from another process: ``status`` is the control API's ``GET /status``."""

    def __init__(
        self, status: Callable[[], Mapping[str, Any]], *, ttl_s: float = TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:  # fmt: skip
        self._status, self._ttl_s, self._clock = status, ttl_s, clock
        self._lock = threading.Lock()
        self._at: float | None = None
        self._state: dict[str, Any] = {}

    def state(self) -> dict[str, Any]:
        """The engine's ``ha`` block, at most ``ttl_s`` old; ``read_only`` when the engine does not answer."""
        with self._lock:
            now = self._clock()
            if self._at is None or now - self._at >= self._ttl_s:
                try:
                    self._state = dict(self._status().get("ha") or {})
                except Exception as exc:  # the engine stopped or is restarting: refuse writes, keep serving reads
                    error = f"the engine does not answer ({exc})"
                    self._state = {"read_only": True, "active_node": None, "error": error}
                self._at = now
            return self._state

    def is_active(self) -> bool:
        return not bool(self.state().get("read_only", True))

    def active_node(self) -> str:
        return str(self.state().get("active_node") or "")


def for_config(config: Config, status: Callable[[], Mapping[str, Any]]) -> HaRole | _Single:
    """:data:`SINGLE` without HA, else an :class:`HaRole` over ``status`` (the engine's control API)."""
    return HaRole(status) if config.ha.enabled else SINGLE
