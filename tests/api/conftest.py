"""Fixtures for the machine APIs: the CRM app on a migrated database, seeded with a DNIS pool."""

from __future__ import annotations

import pytest
from flask import Flask

from bridge.config import Config  # noqa: E402
from tests.api.crm_fixtures import NOW, CrmClient, FakeRole, seed_dnis  # noqa: E402  (after the path)
from web.crm import create_crm_app  # noqa: E402


@pytest.fixture
def role() -> FakeRole:
    return FakeRole()


@pytest.fixture
def crm_app(config: Config, db_url: str, role: FakeRole) -> Flask:
    seed_dnis(config, db_url)
    return create_crm_app({"BRIDGE": config, "DATABASE_URL": db_url, "CLOCK": lambda: NOW, "ROLE": role})


@pytest.fixture
def crm(crm_app: Flask) -> CrmClient:
    return CrmClient(crm_app.test_client())
