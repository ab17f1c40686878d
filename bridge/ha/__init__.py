"""High availability: a primary/hot-standby pair behind a floating IP.

``role`` is the pure role state machine (terms, election, failover rules); ``heartbeat`` the signed wire
format and its replay guard; ``settings`` the configuration dataclass. The glue: ``vip`` (floating IP,
gratuitous ARP, ``IP_FREEBIND``), ``witness`` (ICMP echo to a third address), ``service`` (asyncio
heartbeat on two paths feeding the machine and running its actions). ``python -m bridge.ha`` runs the
service standalone with a tiny UDP echo on the VIP; ``lab`` builds the network-namespace lab used by the
integration test and ``bench/ha_failover.py``. In ``bridge run``: ``node`` (:class:`~bridge.ha.node.HaNode`, the
HA thread and the engine's service starts and stops), ``replication`` (PostgreSQL: sync/async, promote, rewind,
base backup), ``cli`` (``bridge ha status|switchover|init-standby``).
"""

from __future__ import annotations

from bridge.ha.errors import (
    HaError,
    HeartbeatError,
    LocalError,
    PeerError,
    ReplayError,
    SettingsError,
    SwitchoverRefused,
    TransitionError,
)

__all__ = [
    "HaError",
    "HeartbeatError",
    "LocalError",
    "PeerError",
    "ReplayError",
    "SettingsError",
    "SwitchoverRefused",
    "TransitionError",
]
