"""The whole appliance as an HA pair in network namespaces (tests/integration/test_ha_pair.py, bench/ha_appliance.py).

On top of :class:`bridge.ha.lab.Lab` (namespaces ``bha-<tag>-{a,b,c,sw}``): one PostgreSQL 15 cluster per node
(initdb in a temporary directory, its own socket directory, listening on the node's addresses; B made with
``bridge ha init-standby``), one ``bridge run`` per node with ``[ha]`` enabled, and in the client namespace
the SMSC simulator behind a TCP relay (it listens on loopback only). Needs root; everything it starts is
killed and every namespace removed by :meth:`Pair.teardown`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bridge.ha.lab import Lab

PGBIN = Path("/usr/lib/postgresql/15/bin")
PEERS = Path(__file__).resolve().parents[1] / "peers"
AGENT = Path(__file__).with_name("ha_pair_agent.py")
TOKEN = "ha-pair-test-token"
CONTROL_PORT = 8181
SMSC_PORT, SMSC_CTRL, SMSC_RELAY = 2775, 2776, 2775
ROOM = "1001"


def missing_tools() -> list[str]:
    tools = [str(PGBIN / name) for name in ("initdb", "pg_ctl", "pg_rewind", "pg_basebackup")]
    missing = [tool for tool in tools if not os.access(tool, os.X_OK)]
    missing += [name for name in ("node", "sipp", "curl", "runuser") if shutil.which(name) is None]
    if not (PEERS / "node_modules" / "smpp").is_dir():
        missing.append("tests/peers/node_modules (npm ci)")
    return missing


class Pair:
    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="ha-pair-"))
        self.base.chmod(0o755)  # the postgres user reaches its data and socket directories
        self.lab = Lab(self.base)
        self.engines: dict[str, subprocess.Popen[bytes]] = {}
        (self.base / "ha.key").write_text(self.lab.key)
        (self.base / "ha.key").chmod(0o600)

    # ---- set-up -------------------------------------------------------------------------------------------
    def setup(self) -> None:
        self.lab.setup()
        self._postgres_primary("a")
        self._write_config("a")
        self._write_config("b")
        self._migrate()
        out = self.lab.exec("b", *self._bridge_cmd("b"), "ha", "init-standby", check=False)
        assert out.returncode == 0, f"bridge ha init-standby failed: {out.stdout}{out.stderr}"
        with (self.pg_data("b") / "postgresql.conf").open("a") as conf:
            conf.write(f"unix_socket_directories = '{self.sock('b')}'\n")
        self.pg_ctl("b", "start")
        self._start_smsc()

    def sock(self, node: str) -> Path:
        return self.base / f"sock-{node}"

    def pg_data(self, node: str) -> Path:
        return self.base / f"pg-{node}"

    def dsn(self, node: str) -> str:
        return f"host={self.sock(node)} port=5432 user=postgres dbname=postgres"

    def as_postgres(self, node: str, *cmd: str) -> subprocess.CompletedProcess[str]:
        return self.lab.exec(node, "runuser", "-u", "postgres", "--", *cmd)

    def pg_ctl(self, node: str, action: str) -> None:
        log = self.sock(node) / "server.log"
        self.as_postgres(node, str(PGBIN / "pg_ctl"), "-D", str(self.pg_data(node)), "-l", str(log), "-w", action)

    def _postgres_primary(self, node: str) -> None:
        for path in (self.sock("a"), self.sock("b"), self.pg_data("a"), self.pg_data("b")):
            path.mkdir(mode=0o700)
            shutil.chown(path, "postgres")
        self.as_postgres(node, str(PGBIN / "initdb"), "-D", str(self.pg_data(node)), "-U", "postgres",
                         "--auth=trust", "-E", "UTF8", "--no-instructions")  # fmt: skip
        with (self.pg_data(node) / "postgresql.conf").open("a") as conf:
            conf.write(
                f"listen_addresses = '*'\nport = 5432\nunix_socket_directories = '{self.sock(node)}'\n"
                "wal_level = replica\nmax_wal_senders = 5\nhot_standby = on\nwal_log_hints = on\n"
                "wal_keep_size = 256MB\nfsync = off\nsynchronous_commit = on\n"
            )
        with (self.pg_data(node) / "pg_hba.conf").open("a") as hba:
            hba.write("host all all 10.0.0.0/8 trust\nhost replication all 10.0.0.0/8 trust\n")
        self.pg_ctl(node, "start")

    def _migrate(self) -> None:
        from bridge.db import upgrade

        upgrade(self.url("a"))
        self.sql("a", "CREATE TABLE ha_writer (id bigint PRIMARY KEY)")

    def url(self, node: str) -> str:
        return f"postgresql+psycopg2://postgres@/postgres?host={self.sock(node)}"

    def sql(self, node: str, statement: str) -> list[tuple[Any, ...]]:
        import psycopg2  # type: ignore[import-untyped]

        connection = psycopg2.connect(self.dsn(node), connect_timeout=2)
        connection.autocommit = True
        try:
            with connection.cursor() as cursor:
                cursor.execute(statement)
                return list(cursor.fetchall()) if cursor.description else []
        finally:
            connection.close()

    def _write_config(self, node: str) -> None:
        lab, peer = self.lab, "b" if node == "a" else "a"
        root = self.base / f"node-{node}"
        (root / "etc").mkdir(parents=True)
        client = lab.address("c", 0)
        (root / "etc" / "bridge.toml").write_text(f"""
[node]
name = "{node}"
data_dir = "{root / "var"}"
[database]
url = "{self.url(node)}"
[smpp]
host = "{client}"
port = {SMSC_RELAY}
password = "secret"
short_codes = ["2663"]
enquire_link_s = 1.0
response_timeout_s = 1.0
reconnect_min_s = 0.05
reconnect_max_s = 0.2
[sip]
listen = "{lab.vip}:5060"
public_address = "{lab.vip}"
rtp_ports = "20000-20200"
options_interval_s = 30.0
[[trunk_group]]
name = "client"
gateways = ["{client}:5060"]
[[room]]
number = "{ROOM}"
name = "Failover room"
[web]
enabled = false
[control]
listen = "127.0.0.1:{CONTROL_PORT}"
token = "{TOKEN}"
[cdr]
push_enabled = false
feed_listen = "127.0.0.1:8282"
[ha]
enabled = true
peer_node_id = "{peer}"
local_addresses = ["{lab.address(node, 0)}", "{lab.address(node, 1)}"]
peer_addresses = ["{lab.address(peer, 0)}", "{lab.address(peer, 1)}"]
key_file = "{self.base / "ha.key"}"
interface = "svc"
vip = "{lab.vip}"
witness = "{lab.witness}"
pg_data = "{self.pg_data(node)}"
pg_bindir = "{PGBIN}"
pg_local = "{self.dsn(node)}"
pg_peer = "host={lab.address(peer, 1)} port=5432 user=postgres dbname=postgres"
""")

    def config_path(self, node: str) -> Path:
        return self.base / f"node-{node}" / "etc" / "bridge.toml"

    def _bridge_cmd(self, node: str) -> list[str]:
        return [str(Path(sys.executable).with_name("bridge")), "--config", str(self.config_path(node))]

    def _start_smsc(self) -> None:
        env = dict(os.environ, SMSC_PORT=str(SMSC_PORT), CTRL_PORT=str(SMSC_CTRL), SMSC_SYSTEM_ID="bridge",
                   SMSC_PASSWORD="secret", SMSC_QUIET="1", NODE_PATH=str(PEERS / "node_modules"))  # fmt: skip
        log = open(self.base / "smsc.log", "ab")  # noqa: SIM115 - the child owns it
        command = ["ip", "netns", "exec", self.lab.ns("c"), "node", str(PEERS / "smsc_sim.js")]
        self.lab.processes.append(subprocess.Popen(command, stdout=log, stderr=log, env=env))
        log.close()
        self.agent("c", "relay", self.lab.address("c", 0), str(SMSC_RELAY), str(SMSC_PORT), log_name="relay.log")
        wait_for(lambda: self.smsc_bound() is not None, 15, "the SMSC simulator")

    # ---- processes ------------------------------------------------------------------------------------------
    def agent(self, node: str, *args: str, log_name: str) -> subprocess.Popen[bytes]:
        return self.lab.spawn(node, [sys.executable, str(AGENT), *args], log_name)

    def start_engine(self, node: str) -> subprocess.Popen[bytes]:
        env_log = f"bridge-{node}.log"
        process = self.lab.spawn(node, [*self._bridge_cmd(node), "run", "--no-web"], env_log)
        self.engines[node] = process
        return process

    def teardown(self) -> None:
        try:
            for node in ("a", "b"):
                if self.pg_data(node).is_dir():
                    self.as_postgres_quiet(node, "immediate")
        finally:
            self.lab.teardown()
            keep = Path(tempfile.gettempdir()) / "ha-pair-last"  # the logs of the last run, for a failure
            shutil.rmtree(keep, ignore_errors=True)
            keep.mkdir()
            for log in [*self.base.glob("*.log"), *self.base.glob("sock-*/server.log")]:
                shutil.copy(log, keep / f"{log.parent.name}-{log.name}")
            shutil.rmtree(self.base, ignore_errors=True)

    def as_postgres_quiet(self, node: str, mode: str) -> None:
        cmd = ["runuser", "-u", "postgres", "--", str(PGBIN / "pg_ctl"), "-D", str(self.pg_data(node)), "-m", mode,
               "stop"]  # fmt: skip
        subprocess.run(cmd, capture_output=True, check=False, timeout=30)

    # ---- observation -----------------------------------------------------------------------------------------
    def control(self, node: str, method: str, path: str) -> tuple[int, dict[str, Any]]:
        """One control API request from inside the node's namespace (curl: quick to start)."""
        cmd = ["curl", "-s", "-o", "-", "-w", "\n%{http_code}", "-X", method, "-H", f"Authorization: Bearer {TOKEN}",
               f"http://127.0.0.1:{CONTROL_PORT}{path}"]  # fmt: skip
        if method == "POST":
            cmd[1:1] = ["-H", "Content-Type: application/json", "--data", "{}"]
        out = self.lab.exec(node, *cmd, check=False).stdout
        body, _, code = out.rpartition("\n")
        try:
            return int(code), json.loads(body or "{}")
        except ValueError:
            return 0, {}

    def ha(self, node: str) -> dict[str, Any]:
        code, body = self.control(node, "GET", "/ha")
        return body if code == 200 else {}

    def role(self, node: str) -> str | None:
        role = self.ha(node).get("role")
        return role if isinstance(role, str) else None

    def smsc_bound(self) -> int | None:
        out = self.lab.exec("c", "curl", "-s", f"http://127.0.0.1:{SMSC_CTRL}/health", check=False).stdout
        try:
            return int(json.loads(out)["bound"])
        except (ValueError, KeyError):
            return None

    def in_recovery(self, node: str) -> bool | None:
        try:
            return bool(self.sql(node, "SELECT pg_is_in_recovery()")[0][0])
        except Exception:
            return None

    def options(self, host: str) -> str:
        return self.lab.exec("c", sys.executable, str(AGENT), "options", host, check=False).stdout.strip()

    def sipp_call(self, host: str) -> subprocess.CompletedProcess[str]:
        """One SIPp call to the room on ``host`` (the default uac scenario: INVITE, ACK, BYE)."""
        return self.lab.exec("c", "sipp", "-sn", "uac", "-s", ROOM, "-m", "1", "-l", "1", "-d", "300",
                             "-i", self.lab.address("c", 0), "-p", "5070", "-timeout", "20s", "-timeout_error",
                             "-nostdin", f"{host}:5060", check=False)  # fmt: skip


def wait_for(predicate: Callable[[], object], timeout_s: float, what: str) -> None:
    """Poll ``predicate`` (a liveness limit, not a timing assertion)."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached within {timeout_s} s")
        time.sleep(0.05)


def lines(path: Path) -> list[int]:
    if not path.exists():
        return []
    return [int(line) for line in path.read_text().split() if line.isdigit()]
