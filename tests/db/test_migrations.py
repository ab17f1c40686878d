"""Migrations from empty reach a schema identical to the models, and the helpers behave."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from bridge.db import make_engine, upgrade
from bridge.db.models import Base
from bridge.db.session import alembic_config


def test_single_head() -> None:
    heads = ScriptDirectory.from_config(alembic_config("sqlite://")).get_heads()
    assert len(heads) == 1, f"migration branches must be merged: {heads}"


def test_upgrade_from_empty_creates_every_table(tmp_path: Path) -> None:
    url = "sqlite:///" + str(tmp_path / "sub" / "dir" / "fresh.db")  # the directory is created too
    upgrade(url)
    engine = make_engine(url)
    tables = set(inspect(engine).get_table_names())
    engine.dispose()
    assert set(Base.metadata.tables) <= tables
    assert "alembic_version" in tables


def test_models_match_migrations(tmp_path: Path) -> None:
    url = "sqlite:///" + str(tmp_path / "t.db")
    upgrade(url)
    engine = make_engine(url)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        diff = compare_metadata(context, Base.metadata)
    engine.dispose()
    assert diff == [], "models differ from migrations; add a migration:\n" + "\n".join(map(str, diff))


def test_upgrade_is_idempotent_and_at_head(tmp_path: Path) -> None:
    url = "sqlite:///" + str(tmp_path / "t.db")
    upgrade(url)
    upgrade(url)
    head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    engine = make_engine(url)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == head
    engine.dispose()


def test_sqlite_pragmas(tmp_path: Path) -> None:
    engine = make_engine("sqlite:///" + str(tmp_path / "p.db"))
    with engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar_one() == "wal"
        assert connection.execute(text("PRAGMA foreign_keys")).scalar_one() == 1
    engine.dispose()
