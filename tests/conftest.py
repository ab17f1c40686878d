"""Shared fixtures: a config with a temporary data_dir, and a fresh migrated SQLite database per test.

Migrations run once per test session into a template file that each test copies (``upgrade()`` from
empty is itself tested in ``tests/db``); keep this file small, put area fixtures in tests/<pkg>/conftest.py.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session

from bridge.config import Config, from_dict
from bridge.db import make_engine, make_session_factory, upgrade

TEST_CONFIG: dict[str, Any] = {
    "numbering": {"default_country": "US"},
    "dnis": {"common": "+15550100", "pool": ["+15550101-+15550130"]},
    "room": [{"number": "1001", "name": "Demo room"}],
}


@pytest.fixture
def config(tmp_path: Path) -> Config:
    """The test configuration, with ``node.data_dir`` inside ``tmp_path``."""
    return from_dict({**TEST_CONFIG, "node": {"name": "test", "data_dir": str(tmp_path / "data")}})


@pytest.fixture(scope="session")
def _migrated_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    upgrade("sqlite:///" + str(path))
    return path


@pytest.fixture
def db_url(tmp_path: Path, _migrated_template: Path) -> str:
    """URL of a fresh SQLite database at the migrations' head, private to the test."""
    target = tmp_path / "t.db"
    for suffix in ("", "-wal"):
        source = Path(str(_migrated_template) + suffix)
        if source.exists():
            shutil.copyfile(source, str(target) + suffix)
    return "sqlite:///" + str(target)


@pytest.fixture
def session(db_url: str) -> Iterator[Session]:
    """A session on :func:`db_url`; the test commits or not as it likes."""
    engine = make_engine(db_url)
    with make_session_factory(engine)() as db_session:
        yield db_session
    engine.dispose()
