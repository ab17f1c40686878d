"""REST on the standby of an HA pair, with the engine's real role seam (bridge.api.role over the control API's
GET /status): writes are a 503 problem naming the active node with Retry-After, reads are served and write
nothing (the standby's database is a read-only replica)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import select

from bridge.config import from_dict
from bridge.db import make_engine, make_session_factory
from bridge.db.models import ApiToken
from tests.api.test_role import HA, STANDBY
from tests.web.conftest import Clock, make_app
from tests.web.portal_world import FakeControl, World
from tests.web.rest_fixtures import bearer, make_tokens


class EngineWithRole(FakeControl):
    def __init__(self, ha: dict[str, Any]) -> None:
        super().__init__()
        self.ha = ha

    def status(self) -> dict[str, Any]:
        return {**super().status(), "ha": self.ha}


def _client(tmp_path: Path, world: World, clock: Clock, ha: dict[str, Any]) -> FlaskClient:
    app = make_app(tmp_path, world, EngineWithRole(ha), clock)
    config = dataclasses.replace(app.config["BRIDGE"], ha=from_dict({"ha": HA}).ha)
    return make_app(tmp_path, world, EngineWithRole(ha), clock, BRIDGE=config).test_client()


def test_a_write_on_the_standby_is_a_503_problem_naming_the_active_node(
    tmp_path: Path, world: World, clock: Clock
) -> None:
    secret = make_tokens(world).operator
    client = _client(tmp_path, world, clock, STANDBY)
    assert client.get("/api/v1/companies", headers=bearer(secret)).status_code == 200
    refused = client.post("/api/v1/companies", json={"name": "New"}, headers=bearer(secret))
    assert refused.status_code == 503 and refused.mimetype == "application/problem+json"
    assert refused.json["active_node"] == "a" and "active node, a" in refused.json["detail"]
    assert refused.headers["Retry-After"] == "1"


def test_with_no_active_node_known_the_problem_says_so(tmp_path: Path, world: World, clock: Clock) -> None:
    secret = make_tokens(world).operator
    client = _client(tmp_path, world, clock, {**STANDBY, "active_node": None})
    refused = client.post("/api/v1/companies", json={"name": "New"}, headers=bearer(secret))
    assert refused.status_code == 503 and refused.json["active_node"] == ""
    assert "no node is known to be active" in refused.json["detail"]


def test_the_active_node_takes_writes(tmp_path: Path, world: World, clock: Clock) -> None:
    secret = make_tokens(world).operator
    client = _client(tmp_path, world, clock, {**STANDBY, "role": "active", "read_only": False})
    assert client.post("/api/v1/companies", json={"name": "New"}, headers=bearer(secret)).status_code == 201


def _last_used(world: World) -> list[object]:
    engine = make_engine(world.url)
    with make_session_factory(engine)() as session:
        stamps = list(session.scalars(select(ApiToken.last_used_at).order_by(ApiToken.id)))
    engine.dispose()
    return stamps


def test_reads_on_the_standby_write_nothing(tmp_path: Path, world: World, clock: Clock) -> None:
    """Its database is a read-only replica: a token's last-used stamp (a write) is left to the active node."""
    secret = make_tokens(world).operator
    assert all(stamp is None for stamp in _last_used(world))
    standby = _client(tmp_path, world, clock, STANDBY)
    assert standby.get("/api/v1/companies", headers=bearer(secret)).status_code == 200
    assert all(stamp is None for stamp in _last_used(world))
    active = _client(tmp_path, world, clock, {**STANDBY, "role": "active", "read_only": False})
    assert active.get("/api/v1/companies", headers=bearer(secret)).status_code == 200
    assert sum(stamp is not None for stamp in _last_used(world)) == 1
