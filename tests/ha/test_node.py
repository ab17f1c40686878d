"""HaNode: the role of a (fake) HA service becomes the engine's serve/suspend, in order, after the database."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bridge.config import from_dict
from bridge.ha.errors import SwitchoverRefused
from bridge.ha.node import HaNode
from bridge.ha.role import HaStatus, Role

HA = {"enabled": True, "peer_node_id": "b", "local_addresses": ["10.0.0.1"], "peer_addresses": ["10.0.0.2"],
      "interface": "eth0", "vip": "10.0.0.100", "key_env": "TEST_HA_KEY"}  # fmt: skip


class FakeService:
    """Stands in for HaService: the test plays its callbacks from the HA thread."""

    instances: list[FakeService] = []

    def __init__(self, settings: Any, *, on_active: Any, on_standby: Any, on_change: Any) -> None:
        self.on_active, self.on_standby, self.on_change = on_active, on_standby, on_change
        self.role, self.peer_role, self.switched = Role.INIT, Role.STANDBY, 0
        self.loop: asyncio.AbstractEventLoop | None = None
        FakeService.instances.append(self)

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()

    async def stop(self) -> None:
        pass

    def status(self) -> HaStatus:
        return HaStatus("a", self.role, 2, True, 0.0, self.peer_role, 1, True, {0: 0.01}, 0.1, 0.05)

    def switchover(self) -> None:
        self.switched += 1

    def play(self, role: Role, *args: Any) -> None:
        """Change role as the HA thread would, calling the callback there."""
        assert self.loop is not None

        def act() -> None:
            self.role = role
            (self.on_active if role is Role.ACTIVE else self.on_standby)(*args)

        self.loop.call_soon_threadsafe(act)


class FakeReplication:
    def __init__(self, calls: list[str]) -> None:
        self.calls = calls

    def promote(self) -> bool:
        self.calls.append("promote")
        return True

    def in_recovery(self) -> bool:
        return False

    def peer_streaming(self) -> bool:
        return True

    def set_synchronous(self, on: bool) -> None:
        pass

    def rejoin(self) -> bool:
        return False

    def describe(self) -> dict[str, Any]:
        return {"role": "primary"}


async def until(predicate: Any) -> None:
    for _ in range(400):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


def node(calls: list[str], **ha: Any) -> HaNode:
    async def serve(term: int) -> None:
        calls.append(f"serve {term}")

    async def suspend(reason: str) -> None:
        calls.append(f"suspend {reason}")

    config = from_dict({"node": {"name": "a"}, "ha": {**HA, **ha}})
    fake: Any = FakeService  # duck-typed HaService and Replication
    replication: Any = FakeReplication(calls)
    return HaNode(config, serve=serve, suspend=suspend, service_factory=fake, replication=replication)


def test_a_single_node_serves_at_once() -> None:
    calls: list[str] = []
    single = node(calls, enabled=False)

    async def scenario() -> None:
        await single.start()
        await single.stop()

    asyncio.run(scenario())
    assert calls == ["serve 0"] and single.is_active()
    assert single.status() == {"enabled": False, "role": "active", "read_only": False}


def test_takeover_promotes_before_serving_and_step_down_suspends(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_HA_KEY", "k" * 32)
    calls: list[str] = []
    pair = node(calls, realtime_priority=0)

    async def scenario() -> None:
        await pair.start()
        service = FakeService.instances[-1]
        with pytest.raises(SwitchoverRefused, match="not the active node"):
            pair.switchover()
        service.play(Role.ACTIVE, 4)
        await until(lambda: pair.is_active())
        await until(lambda: pair.status()["role"] == "active")
        status = pair.status()
        assert status["term"] == 2 and status["active_node"] == "a" and not status["read_only"]
        assert status["peer"]["alive"] and status["peer"]["role"] == "standby"
        assert pair.switchover() == {"switchover": "started", "from": "a", "to": "b"}
        await until(lambda: service.switched == 1)
        service.play(Role.STANDBY)
        await until(lambda: pair.status()["role"] == "standby")
        await pair.stop()

    asyncio.run(scenario())
    assert calls == ["promote", "serve 4", "suspend switchover to the peer"]
    assert not pair.is_active()


def test_a_missing_key_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TEST_HA_KEY", raising=False)
    with pytest.raises(ValueError, match=r"ha.key_env: \$TEST_HA_KEY is not set"):
        node([])
