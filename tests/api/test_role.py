"""The HA seam of the provisioning APIs (bridge.api.role): the engine's role read through its control API,
cached, failing closed; wired into the CRM XML API (NOT_ACTIVE naming the active node on a standby)."""

from __future__ import annotations

import dataclasses
from typing import Any

from bridge.api import role
from bridge.config import Config, from_dict
from bridge.control_client import EngineUnreachable
from tests.api import crm_docs as docs
from tests.api.crm_fixtures import NOW, CrmClient, seed_dnis
from tests.api.test_crm import NS, nack_code, parsed
from web.crm import create_crm_app

HA = {"enabled": True, "peer_node_id": "b", "local_addresses": ["10.0.0.1"], "peer_addresses": ["10.0.0.2"],
      "interface": "eth0", "vip": "10.0.0.100", "key_env": "TEST_HA_KEY"}  # fmt: skip
ACTIVE = {"enabled": True, "role": "active", "read_only": False, "active_node": "a"}
STANDBY = {"enabled": True, "role": "standby", "read_only": True, "active_node": "a"}
ALONE = {"enabled": True, "role": "standby", "read_only": True, "active_node": None}


class FakeEngine:
    """The control API's GET /status as the engine answers it (``ha`` block), or not at all."""

    def __init__(self, ha: dict[str, Any] | None) -> None:
        self.ha, self.calls = ha, 0

    def status(self) -> dict[str, Any]:
        self.calls += 1
        if self.ha is None:
            raise EngineUnreachable("connection refused")
        return {"node": "b", "ha": self.ha}


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_engine_role_decides_and_names_the_active_node() -> None:
    engine = FakeEngine(ACTIVE)
    clock = Clock()
    seen = role.HaRole(engine.status, clock=clock)
    assert seen.is_active() and seen.active_node() == "a"
    engine.ha = STANDBY
    assert seen.is_active()  # cached for ttl_s: one control request a second at most
    clock.now += role.TTL_S
    assert not seen.is_active() and seen.active_node() == "a"
    engine.ha = ALONE
    clock.now += role.TTL_S
    assert not seen.is_active() and seen.active_node() == ""
    assert engine.calls == 3


def test_an_engine_that_does_not_answer_makes_a_standby() -> None:
    clock = Clock()
    seen = role.HaRole(FakeEngine(None).status, clock=clock)
    assert not seen.is_active() and seen.active_node() == ""
    assert "does not answer" in seen.state()["error"]
    assert not role.HaRole(FakeEngine({}).status, clock=clock).is_active()  # no ha block: not known to serve


def test_without_ha_the_node_is_active_and_the_engine_is_not_asked(config: Config) -> None:
    engine = FakeEngine(STANDBY)
    single = role.for_config(config, engine.status)
    assert single is role.SINGLE and single.is_active() and engine.calls == 0
    with_ha = role.for_config(dataclasses.replace(config, ha=from_dict({"ha": HA}).ha), engine.status)
    assert isinstance(with_ha, role.HaRole) and not with_ha.is_active()


def _crm(config: Config, db_url: str, engine: FakeEngine) -> CrmClient:
    seed_dnis(config, db_url)
    config = dataclasses.replace(config, ha=from_dict({"ha": HA}).ha)
    app = create_crm_app({"BRIDGE": config, "DATABASE_URL": db_url, "CLOCK": lambda: NOW, "CONTROL_CLIENT": engine})
    return CrmClient(app.test_client())


def test_the_crm_api_on_a_standby_refuses_naming_the_active_node(config: Config, db_url: str) -> None:
    crm = _crm(config, db_url, FakeEngine(STANDBY))
    response = crm.post(docs.create_company("t-ha1", "Acme"))
    assert (response.status_code, nack_code(response)) == (503, "NOT_ACTIVE")
    assert parsed(response).findtext("c:nack/c:activeNode", namespaces=NS) == "a"


def test_the_crm_api_on_the_active_node_acts(config: Config, db_url: str) -> None:
    crm = _crm(config, db_url, FakeEngine(ACTIVE))
    assert crm.post(docs.create_company("t-ha2", "Acme")).status_code == 200
