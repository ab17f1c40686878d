"""PostgreSQL streaming replication for the HA pair (glue: psycopg2 and the PostgreSQL tools; decides nothing).

Each node runs its own cluster; the active node's is the primary, the standby's a hot standby streaming from
it (physical replication, PostgreSQL 15). :class:`~bridge.ha.node.HaNode` calls, always from one worker
thread (every call blocks):

- :meth:`Replication.set_synchronous`: ``synchronous_standby_names`` names the peer while the peer is
  alive *and* streaming, so an acknowledged commit (an MO, a CDR, a provisioning change) is on both disks;
  empty otherwise, so commits never wait for a standby that is dead, rewinding or catching up (a
  synchronous primary whose standby is gone blocks every commit: ``../shared/peers/ha/README.md``).
- :meth:`Replication.promote`: ``SELECT pg_promote()`` on takeover, before any service starts.
- :meth:`Replication.rejoin`: a node that is standby while its cluster is still a primary (it was active
  before a crash, a link loss or a switchover) becomes a replica of the peer: ``CHECKPOINT`` on the new
  primary (a fresh promotion's control file still names the old timeline until then, and ``pg_rewind``
  would wrongly answer "no rewind required"), stop the cluster, ``pg_rewind`` from the peer, write
  ``standby.signal`` and ``primary_conninfo``, start again. Only when the peer's cluster is a primary.
- :func:`init_standby`: ``pg_basebackup -R`` for ``bridge ha init-standby``.

The tools run as ``pg_user`` (``runuser`` when we are root). Rows committed on the old primary after the
peer stopped streaming from it (a partition both sides survived) are discarded by the rewind; with the
witness a partition does not let both nodes promote.
"""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bridge.ha.errors import LocalError, PeerError

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 2
PROMOTE_WAIT_S = 60
TOOL_TIMEOUT_S = 300.0
NODE_FILES = ("postgresql.conf", "pg_hba.conf", "pg_ident.conf")
"""This node's own configuration in the data directory, which pg_rewind would replace with the peer's."""

Runner = Callable[[Sequence[str]], str]
Connect = Callable[[str], Any]


class ReplicationError(LocalError):
    """A replication step failed on this node (a tool's exit status, our cluster refusing a statement)."""


class PeerNotPrimary(PeerError):
    """The peer's cluster cannot be the source of a rejoin yet (unreachable, or still in recovery)."""


@dataclass(frozen=True, kw_only=True)
class ReplicationSettings:
    data: Path
    """This node's data directory."""
    bindir: Path
    """Directory of pg_ctl, pg_rewind, pg_basebackup."""
    os_user: str
    """Owner of ``data``; the tools run as this user."""
    local: str
    """libpq connection string of this node's cluster (superuser)."""
    peer: str
    """libpq connection string of the peer's cluster."""
    node_id: str
    """Our ``application_name`` as the peer's standby (what the peer's synchronous_standby_names names)."""
    peer_node_id: str
    """The peer's ``application_name`` as our standby."""


def _connect(dsn: str) -> Any:
    import psycopg2  # type: ignore[import-untyped]

    connection = psycopg2.connect(dsn, connect_timeout=CONNECT_TIMEOUT_S)
    connection.autocommit = True
    return connection


def _run(command: Sequence[str]) -> str:
    done = subprocess.run(list(command), capture_output=True, text=True, timeout=TOOL_TIMEOUT_S)
    if done.returncode:
        lines = (done.stderr or done.stdout).strip().splitlines()
        tool = Path(command[command.index("--") + 1] if "--" in command else command[0]).name
        raise ReplicationError(f"{tool}: exit {done.returncode}: {lines[-1] if lines else ''}")
    return done.stdout + done.stderr


def conninfo_with(dsn: str, **values: str) -> str:
    """``dsn`` with ``key=value`` pairs appended (later keys win in libpq)."""
    extra = " ".join(f"{key}='{value}'" for key, value in values.items())
    return f"{dsn} {extra}".strip()


class Replication:
    """The replication control of one node; every method blocks (call it from a worker thread)."""

    def __init__(self, settings: ReplicationSettings, *, run: Runner = _run, connect: Connect = _connect) -> None:
        self.settings = settings
        self._run_tool = run
        self._connect = connect
        self.synchronous: bool | None = None
        """What we last set ``synchronous_standby_names`` to (None: not yet)."""

    # ---- queries ------------------------------------------------------------------------------------------
    def _query(self, dsn: str, sql: str, *args: object) -> list[tuple[Any, ...]]:
        connection = self._connect(dsn)
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql, args or None)
                return list(cursor.fetchall()) if cursor.description else []
        finally:
            connection.close()

    def in_recovery(self, dsn: str | None = None) -> bool:
        """Whether the cluster (ours by default) is a standby."""
        return bool(self._query(dsn or self.settings.local, "SELECT pg_is_in_recovery()")[0][0])

    def peer_streaming(self) -> bool:
        """Whether the peer is streaming from our cluster right now (``pg_stat_replication``)."""
        rows = self._query(
            self.settings.local,
            "SELECT state FROM pg_stat_replication WHERE application_name = %s",
            self.settings.peer_node_id,
        )
        return any(state == "streaming" for (state,) in rows)

    def describe(self) -> dict[str, Any]:
        """For ``/status``: our cluster's role, and the peer's replication state as seen from the primary."""
        try:
            standby = self.in_recovery()
            replicas = [] if standby else self._query(
                self.settings.local, "SELECT application_name, state, sync_state FROM pg_stat_replication"
            )  # fmt: skip
        except Exception as exc:
            return {"role": "unreachable", "error": str(exc).strip()}
        return {
            "role": "replica" if standby else "primary",
            "synchronous": self.synchronous,
            "replicas": [{"name": name, "state": state, "sync_state": sync} for name, state, sync in replicas],
        }

    # ---- actions ------------------------------------------------------------------------------------------
    def set_synchronous(self, on: bool) -> None:
        """Name the peer in ``synchronous_standby_names`` (on) or clear it (off); reload. No-op if unchanged."""
        if self.synchronous is on:
            return
        names = f'"{self.settings.peer_node_id}"' if on else ""
        connection = self._connect(self.settings.local)
        try:
            with connection.cursor() as cursor:
                cursor.execute("ALTER SYSTEM SET synchronous_standby_names = %s", (names,))
                cursor.execute("SELECT pg_reload_conf()")
        finally:
            connection.close()
        self.synchronous = on
        log.info("replication: %s commit (synchronous_standby_names = %r)", "synchronous" if on else "asynchronous",
                 names)  # fmt: skip

    def promote(self) -> bool:
        """``pg_promote()`` if our cluster is a standby; returns whether it promoted. Waits for the promotion."""
        if not self.in_recovery():
            return False
        rows = self._query(self.settings.local, "SELECT pg_promote(true, %s)", PROMOTE_WAIT_S)
        if not rows or not rows[0][0]:
            raise ReplicationError(f"pg_promote() did not finish within {PROMOTE_WAIT_S} s")
        self.synchronous = None  # a new primary: set it again
        log.info("replication: promoted to primary")
        return True

    def rejoin(self) -> bool:
        """Make our cluster a replica of the peer's (primary) cluster; False if it already is a replica.

        Raises :class:`PeerNotPrimary` while the peer cannot be the source (try again later)."""
        if self.in_recovery():
            return False
        s = self.settings
        try:
            peer_standby = self.in_recovery(s.peer)
        except Exception as exc:
            raise PeerNotPrimary(f"peer cluster unreachable: {str(exc).strip()}") from exc
        if peer_standby:
            raise PeerNotPrimary("the peer's cluster is still in recovery (not promoted yet)")
        self._query(s.peer, "CHECKPOINT")  # the new timeline into the peer's control file, before pg_rewind
        log.warning("replication: rejoining as a replica of %s (pg_rewind)", s.peer_node_id)
        self._tool("pg_ctl", "-D", str(s.data), "-m", "fast", "-w", "stop")
        kept = {name: (s.data / name).read_bytes() for name in NODE_FILES if (s.data / name).is_file()}
        try:
            self._tool("pg_rewind", "-D", str(s.data), f"--source-server={s.peer}")
        finally:
            for name, content in kept.items():  # pg_rewind copied the peer's: keep this node's own settings
                self._write_as_owner(s.data / name, content)
            self.write_standby_config()
            self._tool("pg_ctl", "-D", str(s.data), "-l", str(s.data / "postmaster.log"), "-w", "start")
        self.synchronous = None
        log.info("replication: streaming from %s again", s.peer_node_id)
        return True

    def write_standby_config(self) -> None:
        """``standby.signal`` and ``primary_conninfo`` (with our application_name) in ``postgresql.auto.conf``."""
        s = self.settings
        conninfo = conninfo_with(s.peer, application_name=s.node_id).replace("'", "''")
        lines = [f"primary_conninfo = '{conninfo}'", "synchronous_standby_names = ''"]
        auto = s.data / "postgresql.auto.conf"
        kept = [line for line in _read_lines(auto) if not line.startswith(("primary_conninfo", "synchronous_standby"))]
        self._write_as_owner(auto, ("\n".join([*kept, *lines]) + "\n").encode())
        self._write_as_owner(s.data / "standby.signal", b"")

    # ---- helpers ------------------------------------------------------------------------------------------
    def _tool(self, name: str, *args: str) -> str:
        return self._run_tool(as_user(self.settings.os_user, [str(self.settings.bindir / name), *args]))

    def _write_as_owner(self, path: Path, content: bytes) -> None:
        path.write_bytes(content)
        if os.geteuid() == 0:
            import shutil

            shutil.chown(path, self.settings.os_user)


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []


def as_user(user: str, command: list[str]) -> list[str]:
    """``command`` run as ``user``: through ``runuser`` when we are root and someone else."""
    if os.geteuid() == 0 and user != "root":
        return ["runuser", "-u", user, "--", *command]
    return command


def init_standby(settings: ReplicationSettings, *, run: Runner = _run) -> str:
    """``pg_basebackup -R`` of the peer's cluster into the (empty or missing) data directory."""
    data = settings.data
    if data.exists() and any(data.iterdir()):
        raise ReplicationError(f"{data} is not empty: stop the cluster and move its data away first")
    data.mkdir(mode=0o700, parents=True, exist_ok=True)
    if os.geteuid() == 0:
        import shutil

        shutil.chown(data, settings.os_user)
    source = conninfo_with(settings.peer, application_name=settings.node_id)
    command = [str(settings.bindir / "pg_basebackup"), "-d", source, "-D", str(data), "-R", "-X", "stream", "-c",
               "fast"]  # fmt: skip
    return run(as_user(settings.os_user, command))
