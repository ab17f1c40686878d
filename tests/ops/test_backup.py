"""``bridge backup`` then ``bridge restore`` into an empty node reproduces every table row and every file of the
data directory (recordings, generated keys); the SQLite copy is taken online, with a writer mid-transaction."""

from __future__ import annotations

import hashlib
import sqlite3
import tarfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import inspect, text

from bridge.cli import main
from bridge.config import Config, from_dict
from bridge.db.models import Company, EventLog, Subscriber
from bridge.db.session import make_engine, make_session_factory, upgrade
from bridge.ops.backup import MANIFEST, BackupError, backup, restore


def node(root: Path, url: str = "") -> Config:
    return from_dict({"node": {"name": "bk", "data_dir": str(root)}, "database": {"url": url}})


def all_rows(url: str) -> dict[str, list[tuple[object, ...]]]:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            names = sorted(inspect(connection).get_table_names())
            return {name: sorted((tuple(row) for row in connection.execute(text(f'SELECT * FROM "{name}"'))), key=repr)
                    for name in names}  # fmt: skip
    finally:
        engine.dispose()


def files(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*"))
            if p.is_file() and not p.name.startswith("bridge.db")}  # fmt: skip


def populate(config: Config) -> None:
    upgrade(config.database_url)
    with make_session_factory(make_engine(config.database_url))() as session:
        company = Company(name="Co")
        session.add_all([company, Subscriber(company=company, name="Sam", mobile="+15551230001")])
        session.add_all([EventLog(kind="test", detail=f"event {i}") for i in range(50)])
        session.commit()
    data = config.data_path
    (data / "recordings").mkdir(parents=True)
    (data / "recordings" / "run-1.wav").write_bytes(b"RIFF" + bytes(range(256)) * 40)
    (data / "tls").mkdir()
    (data / "tls" / "portal.key").write_text("-----BEGIN PRIVATE KEY-----\nabc\n")
    (data / "tls" / "portal.key").chmod(0o600)
    (data / "control.token").write_text("token\n")
    (data / "portal.pid").write_text("123\n")  # a live process's file: not backed up


def test_backup_online_then_restore_into_an_empty_node(tmp_path: Path) -> None:
    source = node(tmp_path / "a")
    populate(source)
    writer = sqlite3.connect(tmp_path / "a" / "bridge.db")
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("INSERT INTO event_log (at, kind, detail) VALUES ('2026-01-01', 'uncommitted', '')")
    archive = tmp_path / "node.tar.gz"
    summary = backup(source, archive)  # while the writer holds its write transaction
    writer.rollback()
    writer.close()
    assert summary.database == "sqlite" and summary.tables["event_log"] == 50 and summary.files == 3
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
    assert {MANIFEST, "database/bridge.sqlite3", "data/recordings/run-1.wav", "data/tls/portal.key"} <= names
    assert "data/portal.pid" not in names and "data/bridge.db" not in names

    target = node(tmp_path / "b")
    result = CliRunner().invoke(main, ["--config", str(_config_file(tmp_path, target)), "restore", str(archive)])
    assert result.exit_code == 0, result.output
    assert "rows (as in the backup), 3 files" in result.output
    assert all_rows(target.database_url) == all_rows(source.database_url)
    expected = files(tmp_path / "a")
    expected.pop("portal.pid")
    assert files(tmp_path / "b") == expected
    assert (tmp_path / "b" / "tls" / "portal.key").stat().st_mode & 0o777 == 0o600


def test_restore_refuses_a_node_that_is_not_empty(tmp_path: Path) -> None:
    source = node(tmp_path / "a")
    populate(source)
    archive = tmp_path / "node.tar.gz"
    backup(source, archive)
    with pytest.raises(BackupError, match="already has tables"):
        restore(source, archive)
    restore(source, archive, force=True)
    other = node(tmp_path / "c")
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "stray.txt").write_text("x")
    with pytest.raises(BackupError, match="is not empty"):
        restore(other, archive)


def test_the_cli_backup_line(tmp_path: Path) -> None:
    source = node(tmp_path / "a")
    populate(source)
    result = CliRunner().invoke(main, ["--config", str(_config_file(tmp_path, source)), "backup",
                                       str(tmp_path / "x.tar.gz")])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"backup {tmp_path / 'x.tar.gz'}: sqlite database, ")


def _config_file(tmp_path: Path, config: Config) -> Path:
    path = tmp_path / f"{config.data_path.name}.toml"
    path.write_text(f'[node]\nname = "bk"\ndata_dir = "{config.data_path}"\n')
    return path
