"""Route plan, route-advance codes, E1 port map and gateway health (pure cores, fake clock)."""

from __future__ import annotations

from bridge.config import TrunkGroupConfig
from bridge.sip.routing import NO_RESPONSE, GatewayHealth, PortMap, RouteAttempt, advances, plan_routes

GROUPS = [
    TrunkGroupConfig(name="a", gateways=["10.0.0.1:5060", "10.0.0.2:5060"]),
    TrunkGroupConfig(name="alt", role="alternate", gateways=["10.0.1.1:5060"]),
    TrunkGroupConfig(name="b", gateways=["10.0.2.1:5060"]),
    TrunkGroupConfig(name="e1", kind="e1", role="alternate", gateways=["10.0.3.1:5060"], spans=2, channels_per_span=2),
]


def test_plan_without_group_tries_main_groups_then_alternates() -> None:
    plan = plan_routes(GROUPS, first_group=None, is_up=lambda gw: True)
    assert [(r.group, r.gateway) for r in plan] == [
        ("a", "10.0.0.1:5060"),
        ("a", "10.0.0.2:5060"),
        ("b", "10.0.2.1:5060"),
        ("alt", "10.0.1.1:5060"),
        ("e1", "10.0.3.1:5060"),
    ]


def test_plan_with_group_puts_it_first_then_only_alternates() -> None:
    plan = plan_routes(GROUPS, first_group="b", is_up=lambda gw: True)
    assert [r.group for r in plan] == ["b", "alt", "e1"]
    plan = plan_routes(GROUPS, first_group="e1", is_up=lambda gw: True)
    assert [r.group for r in plan] == ["e1", "alt"]


def test_down_gateways_are_skipped() -> None:
    plan = plan_routes(GROUPS, first_group="a", is_up=lambda gw: gw != "10.0.0.1:5060")
    assert plan[0] == RouteAttempt("a", "10.0.0.2:5060")
    assert plan_routes(GROUPS, first_group=None, is_up=lambda gw: False) == []


def test_which_statuses_advance() -> None:
    assert advances(NO_RESPONSE) and advances(408) and advances(500) and advances(503) and advances(599)
    for status in (400, 403, 404, 480, 486, 487, 488, 600, 603):
        assert not advances(status), status


def test_port_map_allocates_lowest_free_and_releases() -> None:
    ports = PortMap("e1", spans=2, channels_per_span=2)
    assert [ports.allocate(f"L{i}") for i in range(4)] == [(1, 1), (1, 2), (2, 1), (2, 2)]
    assert ports.allocate("L9") is None and ports.busy == 4 == ports.capacity
    assert ports.allocate("L1") == (1, 2)  # idempotent per leg
    ports.release("L1")
    ports.release("L1")  # twice is harmless
    assert ports.allocate("L5") == (1, 2)
    snap = ports.snapshot(down=False)
    assert snap[1] == {"span": 1, "channel": 2, "state": "busy", "leg_id": "L5"}


def test_port_map_snapshot_shows_down_for_idle_ports_only() -> None:
    ports = PortMap("e1", spans=1, channels_per_span=2)
    ports.allocate("L1")
    assert [p["state"] for p in ports.snapshot(down=True)] == ["busy", "down"]


def test_gateway_goes_down_after_missed_probes_and_comes_back() -> None:
    health = GatewayHealth(["gw"], timeout_s=5.0, down_after=2)
    assert health.is_up("gw")
    health.probe_sent("gw", 0.0)
    assert health.expire(4.9) == []
    assert health.expire(5.0) == [] and health.is_up("gw")  # one miss is tolerated
    probe = health.probe_sent("gw", 30.0)
    assert health.expire(35.0) == ["gw"] and not health.is_up("gw")
    assert health.expire(100.0) == []  # reported once
    probe = health.probe_sent("gw", 60.0)
    assert health.reply("gw", probe, 60.1) is True and health.is_up("gw")
    assert health.snapshot() == {"gw": True}


def test_late_or_unknown_replies_are_ignored() -> None:
    health = GatewayHealth(["gw"], timeout_s=5.0, down_after=1)
    old = health.probe_sent("gw", 0.0)
    health.expire(5.0)
    assert not health.is_up("gw")
    health.probe_sent("gw", 30.0)
    assert health.reply("gw", old, 30.5) is False and not health.is_up("gw")
    assert health.reply("other", 1, 1.0) is False
    assert health.is_up("never-configured")


def test_unanswered_probe_counts_when_the_next_one_is_sent() -> None:
    health = GatewayHealth(["gw"], timeout_s=50.0, down_after=2)
    health.probe_sent("gw", 0.0)
    health.probe_sent("gw", 30.0)
    health.probe_sent("gw", 60.0)
    assert not health.is_up("gw")
