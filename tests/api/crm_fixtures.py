"""Shared values of the machine API tests (importable: ``conftest`` modules of several packages collide)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask.testing import FlaskClient

from bridge.config import Config
from bridge.db import make_engine, make_session_factory
from bridge.provisioning import load_configured_dnis

NOW = dt.datetime(2026, 11, 22, 12, 0, 0)
SUBJECT = "CN=crm-1,O=bridge CRM API"


def seed_dnis(config: Config, db_url: str) -> None:
    """The configured DNIS pool into the test database (what ``bridge run`` does at start)."""
    engine = make_engine(db_url)
    with make_session_factory(engine)() as session:
        load_configured_dnis(session, config)
        session.commit()
    engine.dispose()


class FakeRole:
    def __init__(self) -> None:
        self.active = True

    def is_active(self) -> bool:
        return self.active

    def active_node(self) -> str:
        return "bridge-b.example:8444"


class CrmClient:
    def __init__(self, client: FlaskClient) -> None:
        self.client = client

    def post(self, document: bytes) -> Any:
        return self.client.post(
            "/crm", data=document, content_type="application/xml", environ_base={"bridge.client_subject": SUBJECT}
        )
