"""The appliance as an HA pair: two ``bridge run`` nodes in their own namespaces, each with its own PostgreSQL 15.

One pair for the module (set-up ~10 s): A primary and active, B a streaming replica made with ``bridge ha
init-standby`` and standby. The client namespace holds the SMSC simulator, SIPp and the writers. Checked:

- the standby refuses service: no SIP socket (the switch routes to the active node), no SMPP bind, the control
  API's switchover refused, the portal read-only with a banner naming the active node;
- ``kill -9`` of A's engine while MOs (through the engine, counted by ``deliver_sm_resp``) and rows (straight
  into the database on the VIP, as ``../shared/peers/ha/pg/writer.py``) are committed: B takes the VIP,
  promotes its database, binds SMPP, answers SIP OPTIONS and a SIPp call on the VIP; 0 acknowledged rows are
  missing on B;
- A comes back, rejoins as standby and its database follows B again (``pg_rewind``), replication synchronous;
- a graceful ``bridge ha switchover`` hands the role back to A.

Only behaviour is asserted; the outage figures are ``bench/ha_appliance.py``'s. Needs root and PostgreSQL 15.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.ha_pair_harness import Pair, lines, missing_tools, wait_for  # noqa: E402

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    if os.geteuid() != 0:
        pytest.fail("tests/integration/test_ha_pair.py needs root (network namespaces, PostgreSQL as postgres)")
    missing = missing_tools()
    if missing:
        pytest.fail(f"missing for the HA pair test: {', '.join(missing)} (run tests/peers/install.sh)")
    pair = Pair()
    try:
        pair.setup()
        pair.start_engine("a")
        wait_for(lambda: pair.role("a") == "active" and pair.smsc_bound() == 1, 30, "A active and bound")
        pair.start_engine("b")
        wait_for(lambda: pair.role("b") == "standby", 30, "B standby")
        wait_for(lambda: _sync(pair, "a"), 15, "A replicating synchronously to B")
        yield pair
    finally:
        for node in ("a", "b"):
            print(f"--- bridge-{node}.log ---\n" + _tail(pair.base / f"bridge-{node}.log"))
        pair.teardown()


def _tail(path: Path) -> str:
    if not path.exists():
        return "(none)"
    kept = [line for line in path.read_text(errors="replace").splitlines() if "refused SMS" not in line]
    return "\n".join(kept[-60:])


def _sync(pair: Pair, primary: str) -> bool:
    replicas = pair.ha(primary).get("database", {}).get("replicas", [])
    return any(r["state"] == "streaming" and r["sync_state"] == "sync" for r in replicas)


def test_the_standby_refuses_service(pair: Pair) -> None:
    ha = pair.ha("b")
    assert ha["role"] == "standby" and ha["read_only"] and ha["active_node"] == "a"
    assert ha["peer"]["alive"] and ha["peer"]["role"] == "active" and ha["peer"]["last_heartbeat_s"] < 1
    assert ha["database"]["role"] == "replica"
    assert pair.lab.vip_holders() == {"a"}
    assert pair.smsc_bound() == 1  # A only
    assert pair.options(pair.lab.address("b", 0)) == "none"  # no SIP socket on the standby
    assert pair.options(pair.lab.vip).startswith("SIP/2.0 200")  # A answers on the VIP
    code, body = pair.control("b", "POST", "/ha/switchover")
    assert code == 409 and "not the active node" in body["error"]
    code, status = pair.control("b", "GET", "/status")
    assert code == 200 and status["role"] == "standby" and status["ha"]["term"] == ha["term"]
    made = pair.lab.exec("a", *pair._bridge_cmd("a"), "api", "token", "create", "probe", "--scope", "operator")
    token = made.stdout.strip().rsplit(" ", 1)[-1]  # made on the active node, replicated to the standby
    portal = pair.lab.exec("b", sys.executable, str(Path(__file__).with_name("ha_portal_probe.py")),
                           str(pair.config_path("b")), token, check=False)  # fmt: skip
    assert portal.returncode == 0, portal.stdout + portal.stderr
    assert "GET 200 banner names a" in portal.stdout and "POST 503 read-only" in portal.stdout
    assert "REST GET 200" in portal.stdout  # reads served, nothing written to the replica
    assert "REST POST 503 application/problem+json active_node a" in portal.stdout
    assert "CRM 503 NOT_ACTIVE activeNode a" in portal.stdout


def test_kill_9_of_the_active_engine_loses_no_acknowledged_row(pair: Pair) -> None:
    base = pair.base
    mo_acked, db_acked = base / "mo-acked.txt", base / "db-acked.txt"
    dsn = f"host={pair.lab.vip} port=5432 user=postgres dbname=postgres"
    writers = [
        pair.agent("c", "mo-writer", "2776", str(mo_acked), log_name="mo-writer.log"),
        pair.agent("c", "db-writer", dsn, str(db_acked), log_name="db-writer.log"),
    ]
    wait_for(lambda: len(lines(mo_acked)) >= 20 and len(lines(db_acked)) >= 200, 30, "writers under way")
    os.kill(pair.engines["a"].pid, signal.SIGKILL)
    pair.engines["a"].wait(10)
    wait_for(lambda: pair.role("b") == "active" and "b" in pair.lab.vip_holders(), 15, "B takes over")
    assert pair.lab.vip_holders() == {"a", "b"}  # the crash left a stale VIP on A (gratuitous ARP sent B's way)
    wait_for(lambda: pair.in_recovery("b") is False, 15, "B's database promoted")
    wait_for(lambda: pair.smsc_bound() == 1, 15, "B bound to the SMSC")
    acked_before = len(lines(mo_acked))
    wait_for(lambda: len(lines(mo_acked)) > acked_before + 10, 20, "MOs acknowledged by B")
    time.sleep(0.5)
    for writer in writers:
        writer.kill()
        writer.wait(5)
    assert pair.options(pair.lab.vip).startswith("SIP/2.0 200")
    call = pair.sipp_call(pair.lab.vip)
    assert call.returncode == 0, call.stdout[-2000:] + call.stderr[-2000:]
    mos = {int(text.split()[1]) for (text,) in pair.sql("b", "SELECT text FROM sms_message WHERE text LIKE 'ping %'")}
    rows = {id_ for (id_,) in pair.sql("b", "SELECT id FROM ha_writer")}
    assert set(lines(mo_acked)) - mos == set(), "acknowledged MOs missing on B"
    assert set(lines(db_acked)) - rows == set(), "acknowledged rows missing on B"
    wait_for(lambda: pair.sql("b", "SELECT count(*) FROM cdr WHERE dnis LIKE '%1001'")[0][0] >= 1, 10, "the call's CDR")
    assert pair.ha("b")["term"] > 0


def test_a_restarted_rejoins_as_standby_with_its_database_rewound(pair: Pair) -> None:
    pair.start_engine("a")
    wait_for(lambda: pair.role("a") == "standby", 30, "A standby")
    assert pair.lab.vip_holders() == {"b"}  # A removed the stale VIP when it started
    wait_for(lambda: pair.in_recovery("a") is True, 60, "A's database a replica again (pg_rewind)")
    wait_for(lambda: _sync(pair, "b"), 30, "B replicating synchronously to A")
    pair.sql("b", "INSERT INTO ha_writer (id) VALUES (-1)")
    assert pair.sql("a", "SELECT count(*) FROM ha_writer WHERE id = -1") == [(1,)]  # synchronous: there at once
    assert pair.lab.vip_holders() == {"b"} and pair.smsc_bound() == 1
    assert pair.options(pair.lab.address("a", 0)) == "none"


def test_graceful_switchover_hands_the_role_back(pair: Pair) -> None:
    code, body = pair.control("b", "POST", "/ha/switchover")
    assert code == 202 and body == {"switchover": "started", "from": "b", "to": "a"}
    wait_for(lambda: pair.role("a") == "active" and pair.lab.vip_holders() == {"a"}, 15, "A takes over")
    wait_for(lambda: pair.in_recovery("a") is False and pair.smsc_bound() == 1, 15, "A promoted and bound")
    wait_for(lambda: pair.role("b") == "standby" and pair.in_recovery("b") is True, 60, "B rejoins as a replica")
    assert pair.options(pair.lab.vip).startswith("SIP/2.0 200")
