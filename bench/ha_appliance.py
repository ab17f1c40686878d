"""HA failover of the whole appliance (``bridge run`` + PostgreSQL per node), in network namespaces. Run as root.

    sudo .venv/bin/python bench/ha_appliance.py [--runs 5] [--modes kill9,linkdown,switchover]

The pair of tests/integration/ha_pair_harness.py (A and B, each with its PostgreSQL 15 and ``bridge run``
with ``[ha]``; SMSC simulator in the client namespace). Per run the active node fails (``kill -9`` of its
engine, its service link down, or ``POST /ha/switchover``) while a client sends SIP OPTIONS to the VIP every
10 ms and two writers commit (MOs through the SMSC simulator, counted by ``deliver_sm_resp``; rows straight
into the database on the VIP). Outage = the longest gap between two 200 OK answers from the failure on; the
failed node is then healed (engine restarted / link up) and rejoins as standby before the next run. At the
end: median / p90 per mode and the acknowledged rows missing on the last active node (must be 0). The
heartbeat-only figures (and keepalived's) are ``bench/ha_failover.py``'s.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root, for the tests.* helpers

from tests.integration.ha_pair_harness import SMSC_CTRL, Pair, lines, missing_tools, wait_for  # type: ignore[import-not-found]  # noqa: E402

MODES = ("kill9", "linkdown", "switchover")


def active(pair: Pair) -> str:
    for node in ("a", "b"):
        if pair.role(node) == "active":
            return node
    raise AssertionError("no active node")


def outage(path: Path, failed_at: float) -> float | None:
    """The longest gap between two 200 OK answers from just before the failure on (None: no answer after it).

    Not "first answer after the failure": answers already on their way, or from the old node still serving
    during a switchover, would hide the gap."""
    stamps = [float(line.split()[0]) for line in path.read_text().splitlines() if line.strip()]
    window = [t for t in stamps if failed_at - 0.2 <= t]
    if not any(t > failed_at + 0.05 for t in window):
        return None
    return max(b - a for a, b in zip(window, window[1:], strict=False))


def settle(pair: Pair, failed: str) -> None:
    """The failed node back as a streaming standby of the other."""
    other = "b" if failed == "a" else "a"
    wait_for(lambda: pair.role(failed) == "standby" and pair.in_recovery(failed) is True, 90, f"{failed} rejoined")
    wait_for(lambda: any(r["sync_state"] == "sync" for r in pair.ha(other).get("database", {}).get("replicas", [])),
             60, "synchronous replication")  # fmt: skip


def one_run(pair: Pair, mode: str, index: int) -> float | None:
    node = active(pair)
    probe = pair.base / f"sip-{mode}-{index}.probe.log"  # *.log: kept by the teardown
    pair.agent("c", "sip-probe", pair.lab.vip, str(probe), "9", log_name="sip-probe.log")
    wait_for(lambda: probe.exists() and len(probe.read_text().splitlines()) > 50, 10, "the probe answered")
    time.sleep((index % 5) * 0.011)  # a random-ish phase against the 50 ms heartbeat
    failed_at = time.time()
    if mode == "kill9":
        os.kill(pair.engines[node].pid, signal.SIGKILL)
        pair.engines[node].wait(10)
    elif mode == "linkdown":
        pair.lab.link(node, False)
    else:
        code, body = pair.control(node, "POST", "/ha/switchover")
        assert code == 202, body
    other = "b" if node == "a" else "a"
    wait_for(lambda: pair.role(other) == "active" and pair.smsc_bound() == 1, 30, f"{other} serving")
    time.sleep(7.5)  # the probe ends
    if mode == "kill9":
        pair.start_engine(node)
    elif mode == "linkdown":
        pair.lab.link(node, True)
    settle(pair, node)
    return outage(probe, failed_at)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--modes", default=",".join(MODES))
    args = ap.parse_args()
    if os.geteuid() != 0 or missing_tools():
        raise SystemExit(f"needs root and {missing_tools() or 'nothing else'}")
    pair = Pair()
    try:
        pair.setup()
        pair.start_engine("a")
        wait_for(lambda: pair.role("a") == "active" and pair.smsc_bound() == 1, 30, "A active")
        pair.start_engine("b")
        settle(pair, "b")
        mo, rows = pair.base / "mo.txt", pair.base / "rows.txt"
        dsn = f"host={pair.lab.vip} port=5432 user=postgres dbname=postgres"
        writers = [pair.agent("c", "mo-writer", str(SMSC_CTRL), str(mo), log_name="mo-writer.log"),
                   pair.agent("c", "db-writer", dsn, str(rows), log_name="db-writer.log")]  # fmt: skip
        results: dict[str, list[float]] = {}
        for index in range(args.runs):
            for mode in args.modes.split(","):
                gap = one_run(pair, mode, index)
                results.setdefault(mode, []).append(float("inf") if gap is None else gap)
                print(f"{mode} run {index + 1}: {'no answer' if gap is None else f'{gap * 1000:.0f} ms'}", flush=True)
        for writer in writers:
            writer.kill()
        last = active(pair)
        texts = {int(t.split()[1]) for (t,) in pair.sql(last, "SELECT text FROM sms_message WHERE text LIKE 'ping %'")}
        ids = {i for (i,) in pair.sql(last, "SELECT id FROM ha_writer")}
        print("\n| mode | runs | median ms | p90 ms | max ms |\n|---|---|---|---|---|")
        for mode, values in results.items():
            ms = sorted(v * 1000 for v in values)
            p90 = ms[min(len(ms) - 1, int(round(0.9 * (len(ms) - 1))))]
            print(f"| {mode} | {len(ms)} | {statistics.median(ms):.0f} | {p90:.0f} | {ms[-1]:.0f} |")
        print(f"\nacknowledged MOs {len(lines(mo))}, missing {len(set(lines(mo)) - texts)}; "
              f"acknowledged rows {len(lines(rows))}, missing {len(set(lines(rows)) - ids)}")  # fmt: skip
    finally:
        pair.teardown()


if __name__ == "__main__":
    main()
