"""Fixtures for the machine APIs: the CRM app on a migrated database, seeded with a DNIS pool."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from bridge.config import Config
from bridge.db import make_engine, make_session_factory
from bridge.provisioning import load_configured_dnis
from web.crm import create_crm_app

sys.path.insert(0, str(Path(__file__).parent))

NOW = dt.datetime(2026, 11, 22, 12, 0, 0)
SUBJECT = "CN=crm-1,O=bridge CRM API"


class FakeRole:
    def __init__(self) -> None:
        self.active = True

    def is_active(self) -> bool:
        return self.active

    def active_node(self) -> str:
        return "bridge-b.example:8444"


@pytest.fixture
def role() -> FakeRole:
    return FakeRole()


@pytest.fixture
def crm_app(config: Config, db_url: str, role: FakeRole) -> Flask:
    engine = make_engine(db_url)
    with make_session_factory(engine)() as session:
        load_configured_dnis(session, config)
        session.commit()
    engine.dispose()
    return create_crm_app({"BRIDGE": config, "DATABASE_URL": db_url, "CLOCK": lambda: NOW, "ROLE": role})


class CrmClient:
    def __init__(self, client: FlaskClient) -> None:
        self.client = client

    def post(self, document: bytes) -> Any:
        return self.client.post(
            "/crm", data=document, content_type="application/xml", environ_base={"bridge.client_subject": SUBJECT}
        )


@pytest.fixture
def crm(crm_app: Flask) -> CrmClient:
    return CrmClient(crm_app.test_client())
