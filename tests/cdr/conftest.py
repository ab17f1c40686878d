"""CDR fixtures: a session factory on the per-test database, a small tenant, a config with three targets."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from bridge.config import Config, from_dict
from bridge.db import make_engine, make_session_factory
from tests.cdr.cdr_world import Tenant, make_tenant


@pytest.fixture
def factory(db_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(db_url)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture
def tenant(factory: sessionmaker[Session]) -> Tenant:
    return make_tenant(factory)


@pytest.fixture
def cdr_config(tmp_path: Path) -> Config:
    return from_dict(
        {
            "node": {"name": "nodeA", "data_dir": str(tmp_path / "data")},
            "cdr": {
                "alert_after_s": 7200,
                "retry_min_s": 60,
                "retry_max_s": 600,
                "targets": [
                    {"name": "primary", "kind": "ftp", "user": "u", "password": "p"},
                    {"name": "backup", "kind": "ftp", "user": "u", "password": "p"},
                    {"name": "sums", "kind": "ftp", "user": "u", "password": "p", "purpose": "summary"},
                ],
            },
        }
    )
