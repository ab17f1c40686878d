"""The replication glue against a scripted cluster: which statements and tools run, in which order."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bridge.ha.replication import PeerNotPrimary, Replication, ReplicationSettings, init_standby

LOCAL, PEER = "host=/sock-a", "host=10.0.0.2"


class Cluster:
    """Answers the queries the glue sends; records every statement as ``(dsn, sql, args)``."""

    def __init__(self, *, local_standby: bool, peer_standby: bool = False) -> None:
        self.standby = {LOCAL: local_standby, PEER: peer_standby}
        self.log: list[tuple[str, str, Any]] = []

    def connect(self, dsn: str) -> Any:
        cluster = self

        class Cursor:
            description: Any = None

            def __enter__(self) -> Cursor:
                return self

            def __exit__(self, *exc: object) -> None:
                pass

            def execute(self, sql: str, args: Any = None) -> None:
                cluster.log.append((dsn, sql, args))
                self.rows: list[tuple[Any, ...]] = []
                self.description = None
                if "pg_is_in_recovery" in sql:
                    self.rows, self.description = [(cluster.standby[dsn],)], ["x"]
                elif "pg_promote" in sql:
                    cluster.standby[dsn] = False
                    self.rows, self.description = [(True,)], ["x"]

            def fetchall(self) -> list[tuple[Any, ...]]:
                return self.rows

        class Connection:
            def cursor(self) -> Cursor:
                return Cursor()

            def close(self) -> None:
                pass

        return Connection()


def settings(tmp_path: Path) -> ReplicationSettings:
    return ReplicationSettings(data=tmp_path / "data", bindir=Path("/pg/bin"), os_user="postgres", local=LOCAL,
                               peer=PEER, node_id="a", peer_node_id="b")  # fmt: skip


def test_synchronous_names_the_peer_and_is_set_once(tmp_path: Path) -> None:
    cluster = Cluster(local_standby=False)
    replication = Replication(settings(tmp_path), connect=cluster.connect, run=lambda cmd: "")
    replication.set_synchronous(True)
    replication.set_synchronous(True)
    replication.set_synchronous(False)
    statements = [(sql, args) for _, sql, args in cluster.log]
    assert statements == [
        ("ALTER SYSTEM SET synchronous_standby_names = %s", ('"b"',)), ("SELECT pg_reload_conf()", None),
        ("ALTER SYSTEM SET synchronous_standby_names = %s", ("",)), ("SELECT pg_reload_conf()", None),
    ]  # fmt: skip


def test_promote_only_a_standby(tmp_path: Path) -> None:
    cluster = Cluster(local_standby=True)
    replication = Replication(settings(tmp_path), connect=cluster.connect, run=lambda cmd: "")
    assert replication.promote() is True
    assert replication.promote() is False  # a primary already
    assert sum("pg_promote" in sql for _, sql, _ in cluster.log) == 1


def test_rejoin_waits_for_a_promoted_peer(tmp_path: Path) -> None:
    cluster = Cluster(local_standby=False, peer_standby=True)
    replication = Replication(settings(tmp_path), connect=cluster.connect, run=lambda cmd: "")
    with pytest.raises(PeerNotPrimary, match="still in recovery"):
        replication.rejoin()


def test_rejoin_checkpoints_the_peer_rewinds_and_keeps_this_nodes_config(tmp_path: Path) -> None:
    s = settings(tmp_path)
    s.data.mkdir()
    (s.data / "postgresql.conf").write_text("port = 5432  # node a\n")
    (s.data / "postgresql.auto.conf").write_text("primary_conninfo = 'old'\nwork_mem = '8MB'\n")
    cluster = Cluster(local_standby=False)
    tools: list[list[str]] = []

    def run(command: Any) -> str:
        tools.append(list(command))
        if "pg_rewind" in " ".join(command):
            (s.data / "postgresql.conf").write_text("port = 5432  # node b\n")  # as pg_rewind copies the peer's
        return ""

    replication = Replication(s, connect=cluster.connect, run=run)
    assert replication.rejoin() is True
    assert (PEER, "CHECKPOINT", None) in cluster.log
    names = [next(part.rsplit("/", 1)[-1] for part in cmd if part.startswith("/pg/bin/")) for cmd in tools]
    assert names == ["pg_ctl", "pg_rewind", "pg_ctl"] and tools[0][-1] == "stop" and tools[2][-1] == "start"
    assert f"--source-server={PEER}" in tools[1]
    assert (s.data / "postgresql.conf").read_text() == "port = 5432  # node a\n"
    assert (s.data / "standby.signal").exists()
    auto = (s.data / "postgresql.auto.conf").read_text()
    assert auto.endswith(f"primary_conninfo = '{PEER} application_name=''a'''\nsynchronous_standby_names = ''\n")
    assert "work_mem" in auto and "'old'" not in auto


def test_init_standby_refuses_a_data_directory_in_use(tmp_path: Path) -> None:
    s = settings(tmp_path)
    s.data.mkdir()
    (s.data / "PG_VERSION").write_text("15\n")
    with pytest.raises(Exception, match="is not empty"):
        init_standby(s, run=lambda cmd: "")
    (s.data / "PG_VERSION").unlink()
    commands: list[list[str]] = []

    def run(command: Any) -> str:
        commands.append(list(command))
        return ""

    init_standby(s, run=run)
    assert "-R" in commands[0] and f"{PEER} application_name='a'" in commands[0]
