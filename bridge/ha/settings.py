"""HA settings: one frozen dataclass, keyword-only, validated on construction (to be folded into the config).

The timing defaults, 50 ms heartbeats and a 4-interval (200 ms) miss window, fail a dead node over in
about 0.2 s where keepalived's VRRPv3 with ``advert_int 0.1`` needs 3 adverts plus skew (~0.35 s):
``bench/ha_failover.py``, 10 runs per mode, medians kill -9 220 ms vs keepalived 312 ms, link down
43 vs 330 ms, SIGSTOP 218 vs 293 ms, switchover 28 vs 66 ms. They never flap on a busy 2-core machine
as long as the service runs under SCHED_RR (``realtime_priority``): ``bench/ha_failover.py jitter``,
6 busy loops on 2 cores for 45 s, longest silence between two heartbeats 60 ms (a 140 ms margin); with
normal scheduling the same load once delayed a heartbeat by 334 ms and caused a false failover.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from bridge.ha.errors import SettingsError

DEFAULT_PORT = 5405


@dataclass(frozen=True, kw_only=True)
class HaSettings:
    node_id: str
    """This node's name, e.g. ``"a"``; sent in every heartbeat. The two ids must differ."""

    peer_node_id: str
    """The peer's name; heartbeats from any other node are refused. Which id sorts first decides which
    node takes even terms, and who wins a cold-start election between two idle standbys."""

    local_addresses: tuple[str, ...]
    """Our IPv4 address on each heartbeat path, in path order (path 0: the service LAN, path 1: a
    dedicated link). Two paths so one cable cannot cause a split brain."""

    peer_addresses: tuple[str, ...]
    """The peer's IPv4 address on each heartbeat path, in the same order."""

    key: bytes
    """The shared HMAC-SHA256 key (at least 16 bytes; the same on both nodes)."""

    interface: str
    """The service interface that carries the VIP; its carrier is watched (down = this node is unfit)."""

    vip: str
    """The floating IPv4 address the active node holds."""

    vip_prefix: int = 24
    """Prefix length the VIP is added with (that of the service LAN)."""

    port: int = DEFAULT_PORT
    """UDP port of the heartbeat on every path (the same on both nodes)."""

    interval_s: float = 0.05
    """Heartbeat interval: one heartbeat per path and one deadline check per interval."""

    miss_count: int = 4
    """The peer is dead after this many intervals of silence on every path (the miss window)."""

    witness: str | None = None
    """IPv4 address that must answer ICMP echo before this node promotes itself: the default gateway
    or another always-on host on the service LAN. None disables the check (a lab, never a pair in
    production: without it two isolated nodes both promote)."""

    witness_interval_s: float = 0.5
    """Routine witness probe period; while the peer is late the witness is probed every interval."""

    witness_timeout_s: float = 1.5
    """A node whose witness has not answered for this long is unhealthy: it hands the role to a healthy
    standby, and as a standby it will not promote."""

    garp_count: int = 3
    """Gratuitous ARPs sent on takeover: the first at once, the rest ``garp_interval_s`` apart."""

    garp_interval_s: float = 0.5
    """Spacing of the repeated gratuitous ARPs (for switches and hosts that missed the first)."""

    replay_forget_s: float = 10.0
    """A path that accepted no heartbeat for this long forgets the peer's last sequence number."""

    realtime_priority: int = 10
    """SCHED_RR priority (1..99) for the thread that runs the HA service, 0 for normal scheduling. Applied
    by the entry point (``python -m bridge.ha``; the engine's HA thread), never to a loop that also mixes
    audio. Like keepalived's ``vrrp_rt_priority``; the measurement is in the module docstring."""

    def __post_init__(self) -> None:
        if self.node_id == self.peer_node_id:
            raise SettingsError(f"node_id and peer_node_id are both {self.node_id!r}")
        for name in ("node_id", "peer_node_id"):
            if not 1 <= len(getattr(self, name).encode()) <= 64:
                raise SettingsError(f"{name} must be 1..64 bytes")
        if not self.local_addresses or len(self.local_addresses) != len(self.peer_addresses):
            raise SettingsError(
                f"need one local and one peer address per path, got {len(self.local_addresses)} local and "
                f"{len(self.peer_addresses)} peer"
            )
        for address in (*self.local_addresses, *self.peer_addresses, self.vip, *filter(None, [self.witness])):
            try:
                ipaddress.IPv4Address(address)
            except ValueError:
                raise SettingsError(f"{address!r} is not an IPv4 address") from None
        if len(self.key) < 16:
            raise SettingsError(f"the HMAC key must be at least 16 bytes, got {len(self.key)}")
        if not 0 < self.vip_prefix <= 32 or not 0 < self.port < 65536:
            raise SettingsError(f"vip_prefix {self.vip_prefix} or port {self.port} out of range")
        if not 0.005 <= self.interval_s <= 10 or not 2 <= self.miss_count <= 100:
            raise SettingsError(f"interval_s {self.interval_s} (0.005..10) or miss_count {self.miss_count} (2..100)")
        if not 0 <= self.realtime_priority <= 99:
            raise SettingsError(f"realtime_priority {self.realtime_priority} out of 0..99")
        if self.witness_timeout_s < 2 * self.witness_interval_s:
            raise SettingsError("witness_timeout_s must cover at least two witness probes")

    @property
    def miss_window_s(self) -> float:
        return self.interval_s * self.miss_count
