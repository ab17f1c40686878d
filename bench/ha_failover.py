"""HA failover outage, our heartbeat vs keepalived VRRPv3 (advert_int 0.1), in network namespaces. Run as root.

    sudo .venv/bin/python bench/ha_failover.py [--runs 10] [--modes linkdown,kill9,sigstop,switchover]
    sudo .venv/bin/python bench/ha_failover.py jitter [--seconds 30]

Outage = the first reply from B to a client probing the VIP every 10 ms (UDP, connected socket), minus the
failure instant, per run; median and p90 per mode. The failure falls at a random phase of the heartbeat.
keepalived moves the same VIP in the same lab (one unicast VRRPv3 instance on the service LAN, both
BACKUP + nopreempt, like ../shared/peers/ha/ka/*-v3.conf) with an always-on echo on each node; its
"switchover" is a graceful stop (priority-0 advert). Installs keepalived with apt-get if missing.

``jitter`` runs the pair for ``--seconds`` with every core saturated by busy loops and reports the
longest silence each node saw from its peer and any role change: the margin behind the default
50 ms x 4 miss window (``--realtime-priority 0`` shows it without SCHED_RR).
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bridge.ha.lab import ECHO_PORT, Lab, outage_s, replies

MODES = ("linkdown", "kill9", "sigstop", "switchover")
SETTLE_S = 2.6
KEEPALIVED_CONF = """\
global_defs {{
    router_id bha_{node}
    vrrp_version 3
    vrrp_garp_master_repeat 3
    vrrp_garp_master_delay 1
}}
vrrp_instance VI_BRIDGE {{
    state BACKUP
    nopreempt
    interface svc
    virtual_router_id 51
    priority {priority}
    advert_int 0.1
    unicast_src_ip {src}
    unicast_peer {{
        {peer}
    }}
    virtual_ipaddress {{
        {vip}/24 dev svc
    }}
}}
"""


def ensure_keepalived() -> None:
    if shutil.which("keepalived"):
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", "keepalived"], check=True, env=env)


def cleanup(lab: Lab) -> None:
    for process in lab.processes:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGCONT)
            process.kill()
            process.wait(timeout=5)
    lab.processes.clear()
    for pidfile in lab.workdir.glob("*.pid"):
        try:
            os.kill(int(pidfile.read_text().split()[0]), signal.SIGKILL)  # keepalived's VRRP child (ours)
        except (ProcessLookupError, ValueError, IndexError):
            pass
        pidfile.unlink()
    for node in ("a", "b"):
        lab.link(node, True)
        lab.drop_vip(node)


# ---- one run ------------------------------------------------------------------------------------------------
def start_ours(lab: Lab, *extra: str) -> None:
    lab.start_node("a", *extra)
    lab.wait_for(lambda: lab.role("a") == "active", what="A active")
    lab.start_node("b", *extra)
    lab.wait_for(lambda: lab.role("b") == "standby", what="B standby")


def start_keepalived(lab: Lab) -> None:
    for node in ("a", "b"):
        peer = "b" if node == "a" else "a"
        echo = [sys.executable, "-m", "bridge.ha.lab", "echo", "--vip", lab.vip, "--name", node]
        lab.spawn(node, [*echo, "--port", str(ECHO_PORT)], f"echo-{node}.log")
    for node, priority in (("a", 200), ("b", 100)):
        peer = "b" if node == "a" else "a"
        conf = lab.workdir / f"ka-{node}.conf"
        conf.write_text(
            KEEPALIVED_CONF.format(
                node=node, priority=priority, src=lab.address(node, 0), peer=lab.address(peer, 0), vip=lab.vip
            )
        )
        pids = ["-p", str(lab.workdir / f"ka-{node}.main"), "-r", str(lab.workdir / f"ka-{node}.pid")]
        lab.spawn(node, ["keepalived", "-n", "-l", "-D", "-G", "-P", "-R", "-f", str(conf), *pids], f"ka-{node}.log")
        if node == "a":
            lab.wait_for(lambda: lab.vip_holders() == {"a"}, what="keepalived A master")
    time.sleep(1.0)  # B settles as BACKUP
    assert lab.vip_holders() == {"a"}


def fail(lab: Lab, system: str, mode: str) -> None:
    """Inject ``mode`` into node A (its HA daemon: our node, or keepalived's parent and VRRP child)."""
    a = lab.processes[0] if system == "ours" else lab.processes[2]
    pids = [a.pid]
    if system == "keepalived":
        # The VRRP child first: killed second, it would get its parent-death signal and resign (priority 0).
        pids.insert(0, int((lab.workdir / "ka-a.pid").read_text().split()[0]))
    if mode == "linkdown":
        lab.link("a", False)
    elif mode == "kill9":
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
    elif mode == "sigstop":
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
    elif system == "ours":
        os.kill(a.pid, signal.SIGUSR1)  # graceful switchover
    else:
        os.kill(a.pid, signal.SIGTERM)  # keepalived's graceful hand-over: priority-0 advert on stop


def one_run(lab: Lab, system: str, mode: str, index: int) -> float | None:
    active_at = time.time()
    (start_ours if system == "ours" else start_keepalived)(lab)
    out = lab.workdir / f"probe-{system}-{mode}-{index}.out"
    probe = lab.start_probe(6.0, out)
    lab.wait_for(lambda: out.exists() and any(r.node == "a" for r in replies(out)), what="A answers")
    # Linux ignores an ARP update for an entry changed less than neigh locktime (1 s) ago: fail only once
    # A's own gratuitous ARPs (ours: 0, 0.5, 1 s; keepalived: 0 and 1 s) are over, as in production.
    time.sleep(max(0.0, active_at + SETTLE_S - time.time()) + random.random() * 0.5)  # random heartbeat phase
    failed_at = time.time()
    fail(lab, system, mode)
    try:
        lab.wait_for(lambda: any(r.node == "b" and r.at > failed_at for r in replies(out)), 4.0, "B answers")
    except AssertionError:
        pass
    probe.kill()
    result = outage_s(out, failed_at, "b")
    cleanup(lab)
    return result


# ---- reports ------------------------------------------------------------------------------------------------
def p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]


def outage_table(lab: Lab, runs: int, modes: list[str], systems: list[str]) -> None:
    results: dict[tuple[str, str], list[float | None]] = {}
    for mode in modes:
        for system in systems:
            results[system, mode] = []
            for index in range(runs):
                results[system, mode].append(one_run(lab, system, mode, index))
            done = [v for v in results[system, mode] if v is not None]
            print(f"  {system:10s} {mode:10s} " + " ".join(f"{v * 1000:.0f}" for v in done), flush=True)
    print(f"\nfailover outage seen by a client probing the VIP every 10 ms, {runs} runs per cell (ms)")
    print(f"{'mode':12s} {'ours median':>12s} {'ours p90':>9s} {'ka median':>10s} {'ka p90':>8s} {'ka/ours':>8s}")
    if len(systems) < 2:
        return
    for mode in modes:
        ours = [v for v in results["ours", mode] if v is not None]
        ka = [v for v in results["keepalived", mode] if v is not None]
        lost = runs * 2 - len(ours) - len(ka)
        om, km = statistics.median(ours) * 1000, statistics.median(ka) * 1000
        row = f"{mode:12s} {om:12.0f} {p90(ours) * 1000:9.0f} {km:10.0f} {p90(ka) * 1000:8.0f} {km / om:8.1f}"
        print(row + (f"  ({lost} runs without recovery)" if lost else ""))


def jitter(lab: Lab, seconds: float, hogs_count: int, priority: int | None) -> None:
    start_ours(lab, *([] if priority is None else ["--realtime-priority", str(priority)]))
    time.sleep(0.5)
    logs = {node: lab.workdir / f"ha-{node}.log" for node in ("a", "b")}
    offsets = {node: path.stat().st_size for node, path in logs.items()}
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(hogs_count)]
    try:
        time.sleep(seconds)
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    changes = {node: [line for line in path.read_text()[offsets[node] :].splitlines() if "bridge.ha.role" in line]
               for node, path in logs.items()}  # fmt: skip
    for process in lab.processes:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)
    lab.processes.clear()
    scheduling = "default scheduling (SCHED_RR 10)" if priority is None else f"--realtime-priority {priority}"
    print(f"pair under {hogs_count} busy loops on {os.cpu_count()} cores for {seconds:.0f} s, {scheduling}")
    for node, path in logs.items():
        silence = re.findall(r"longest peer silence ([\d.]+) ms", path.read_text())
        print(f"  {node}: longest peer silence {silence[-1] if silence else '?'} ms; role changes under load: "
              f"{len(changes[node])}")  # fmt: skip
        for line in changes[node]:
            print("    " + line.split(": ", 1)[-1])
    cleanup(lab)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("command", nargs="?", default="outage", choices=["outage", "jitter"])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--systems", default="ours,keepalived")
    ap.add_argument("--workdir", type=Path, help="keep logs and probe files here")
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--realtime-priority", type=int, help="jitter: override the nodes' SCHED_RR priority (0: off)")
    ap.add_argument("--hogs", type=int, default=2 * (os.cpu_count() or 2) + 2, help="busy loops for jitter")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/ha_failover.py needs root (network namespaces)")
    ensure_keepalived()
    with tempfile.TemporaryDirectory(prefix="bha-bench-") as workdir:
        lab = Lab(args.workdir or Path(workdir))
        try:
            lab.setup()
            if args.command == "jitter":
                jitter(lab, args.seconds, args.hogs, args.realtime_priority)
            else:
                outage_table(lab, args.runs, args.modes.split(","), args.systems.split(","))
        finally:
            cleanup(lab)
            lab.teardown()


if __name__ == "__main__":
    main()
