"""Fixtures for the machine APIs: the CRM app on a migrated database, seeded with a DNIS pool."""

from __future__ import annotations

import pytest
from flask import Flask

from bridge.config import Config  # noqa: E402
from bridge.db import make_engine, make_session_factory  # noqa: E402
from bridge.provisioning import load_configured_dnis  # noqa: E402
from tests.api.crm_fixtures import NOW, CrmClient, FakeRole  # noqa: E402  (after the path)
from web.crm import create_crm_app  # noqa: E402


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


@pytest.fixture
def crm(crm_app: Flask) -> CrmClient:
    return CrmClient(crm_app.test_client())
