"""``bridge backup`` / ``restore`` on PostgreSQL (pg_dump -Fc / pg_restore): a throw-away cluster (initdb as the
``postgres`` user, loopback, trust auth, as tests/integration/test_cdr_postgres.py starts it) with two databases;
the backup of one restored into the other (empty) reproduces every row. Fails loudly without PostgreSQL."""

from __future__ import annotations

import pathlib
from collections.abc import Iterator

import pytest
from sqlalchemy import inspect, text

from bridge.config import from_dict
from bridge.db.models import Company, EventLog, Subscriber
from bridge.db.session import make_engine, make_session_factory, upgrade
from bridge.ops.backup import backup, restore
from tests.integration.postgres import throwaway_cluster

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    """``postgresql+psycopg2://postgres@127.0.0.1:PORT`` (no database name) with databases node_a and node_b."""
    with throwaway_cluster("ops-pg-") as root:
        engine = make_engine(f"{root}/postgres", isolation_level="AUTOCOMMIT")
        with engine.connect() as connection:
            connection.execute(text("CREATE DATABASE node_a"))
            connection.execute(text("CREATE DATABASE node_b"))
        engine.dispose()
        yield root


def _rows(url: str) -> dict[str, list[str]]:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return {name: sorted(repr(tuple(r)) for r in connection.execute(text(f'SELECT * FROM "{name}"')))
                    for name in sorted(inspect(connection).get_table_names())}  # fmt: skip
    finally:
        engine.dispose()


def test_pg_dump_backup_restores_every_row_into_an_empty_database(postgres: str, tmp_path: pathlib.Path) -> None:
    source = from_dict({"node": {"data_dir": str(tmp_path / "a")}, "database": {"url": f"{postgres}/node_a"}})
    target = from_dict({"node": {"data_dir": str(tmp_path / "b")}, "database": {"url": f"{postgres}/node_b"}})
    upgrade(source.database_url)
    with make_session_factory(make_engine(source.database_url))() as session:
        company = Company(name="Co")
        session.add_all([company, Subscriber(company=company, name="Sam", mobile="+15551230001")])
        session.add_all([EventLog(kind="test", detail=f"e{i}") for i in range(20)])
        session.commit()
    (tmp_path / "a" / "recordings").mkdir(parents=True)
    (tmp_path / "a" / "recordings" / "r.wav").write_bytes(b"RIFF....")
    summary = backup(source, tmp_path / "pg.tar.gz")
    assert summary.database == "postgresql" and summary.tables["event_log"] == 20
    restored = restore(target, tmp_path / "pg.tar.gz")
    assert restored.tables == summary.tables
    assert _rows(target.database_url) == _rows(source.database_url)
    assert (tmp_path / "b" / "recordings" / "r.wav").read_bytes() == b"RIFF...."
