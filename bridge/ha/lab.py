"""A network-namespace lab for the HA pair, shared by tests/integration/test_ha_netns.py and bench/ha_failover.py.

Topology (all in namespaces created here with a random tag, so runs never collide; the root namespace is
not touched)::

    bha-<tag>-a  svc 10.231.X.1/24  hb 10.232.X.1/24 --.
    bha-<tag>-b  svc 10.231.X.2/24  hb 10.232.X.2/24 ---+-- bha-<tag>-sw: bridges br-svc (10.231.X.254 =
    bha-<tag>-c  svc 10.231.X.10/24 (the client) -------'   the witness) and br-hb
    VIP 10.231.X.100/24, held by the active node on its ``svc``

Path 0 is the service LAN, path 1 the dedicated heartbeat link. Faults: ``link_down`` (the node's own
interface), ``detach`` (the switch port leaves the bridge: the node keeps its carrier but hears nothing).
``python -m bridge.ha.lab probe`` is the client: a UDP request to the VIP every 10 ms on a connected
socket, logging ``wallclock seq node`` per reply; ``python -m bridge.ha.lab echo`` an always-on echo for
the keepalived baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bridge.ha.vip import freebind_socket

NODES = ("a", "b")
ECHO_PORT = 7000


def sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, check=check, capture_output=True, text=True)


@dataclass
class Lab:
    workdir: Path
    tag: str = field(default_factory=lambda: secrets.token_hex(3))
    x: int = field(default_factory=lambda: secrets.randbelow(254) + 1)
    key: str = field(default_factory=lambda: secrets.token_hex(16))
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    created: list[str] = field(default_factory=list)

    # ---- names and addresses -----------------------------------------------------------------------------
    def ns(self, node: str) -> str:
        return f"bha-{self.tag}-{node}"

    @property
    def vip(self) -> str:
        return f"10.231.{self.x}.100"

    @property
    def witness(self) -> str:
        return f"10.231.{self.x}.254"

    def address(self, node: str, path: int) -> str:
        host = {"a": 1, "b": 2, "c": 10}[node]
        return f"10.{231 + path}.{self.x}.{host}"

    # ---- topology -----------------------------------------------------------------------------------------
    def setup(self) -> None:
        sw = self.ns("sw")
        for node in ("sw", "a", "b", "c"):
            sh("ip", "netns", "add", self.ns(node))
            self.created.append(self.ns(node))
            self.exec(node, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
            sh("ip", "-n", self.ns(node), "link", "set", "lo", "up")
        for path, bridge in enumerate(("br-svc", "br-hb")):
            sh("ip", "-n", sw, "link", "add", bridge, "type", "bridge", "stp_state", "0", "forward_delay", "0")
            sh("ip", "-n", sw, "link", "set", bridge, "up")
            for node in ("a", "b", "c") if path == 0 else ("a", "b"):
                inner, port = ("svc", "hb")[path], self.port(node, path)
                peer_end = ("peer", "name", port, "netns", sw)
                sh("ip", "link", "add", inner, "netns", self.ns(node), "type", "veth", *peer_end)
                sh("ip", "-n", sw, "link", "set", port, "master", bridge, "up")
                sh("ip", "-n", self.ns(node), "addr", "add", f"{self.address(node, path)}/24", "dev", inner)
                sh("ip", "-n", self.ns(node), "link", "set", inner, "up")
        sh("ip", "-n", sw, "addr", "add", f"{self.witness}/24", "dev", "br-svc")

    def teardown(self) -> None:
        """Kill what we started, then anything left inside our namespaces (ours alone: the tag is random)."""
        for process in self.processes:
            if process.poll() is None:
                try:
                    os.kill(process.pid, signal.SIGCONT)
                    process.kill()
                except ProcessLookupError:
                    pass
        for process in self.processes:
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        for ns in self.created:
            for pid in sh("ip", "netns", "pids", ns, check=False).stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
        for ns in reversed(self.created):
            sh("ip", "netns", "del", ns, check=False)
        self.created.clear()

    def port(self, node: str, path: int) -> str:
        return f"{node}-{('svc', 'hb')[path]}"

    # ---- processes ---------------------------------------------------------------------------------------
    def exec(self, node: str, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return sh("ip", "netns", "exec", self.ns(node), *cmd, check=check)

    def spawn(self, node: str, cmd: Sequence[str], log_name: str) -> subprocess.Popen[bytes]:
        log = open(self.workdir / log_name, "ab")  # noqa: SIM115 - the child owns it
        process = subprocess.Popen(["ip", "netns", "exec", self.ns(node), *cmd], stdout=log, stderr=log)
        log.close()
        self.processes.append(process)
        return process

    def status_file(self, node: str) -> Path:
        return self.workdir / f"status-{node}.json"

    def start_node(self, node: str, *extra: str) -> subprocess.Popen[bytes]:
        peer = "b" if node == "a" else "a"
        self.status_file(node).unlink(missing_ok=True)
        cmd = [
            sys.executable, "-m", "bridge.ha", "--node-id", node, "--peer-node-id", peer,
            "--local", self.address(node, 0), "--local", self.address(node, 1),
            "--peer", self.address(peer, 0), "--peer", self.address(peer, 1),
            "--interface", "svc", "--vip", self.vip, "--vip-prefix", "24", "--key", self.key,
            "--witness", self.witness, "--echo-port", str(ECHO_PORT),
            "--status-file", str(self.status_file(node)), *extra,
        ]  # fmt: skip
        return self.spawn(node, cmd, f"ha-{node}.log")

    def start_probe(self, duration_s: float, out: Path) -> subprocess.Popen[bytes]:
        cmd = [sys.executable, "-m", "bridge.ha.lab", "probe", "--vip", self.vip, "--duration", str(duration_s)]
        return self.spawn("c", [*cmd, "--out", str(out)], "probe.log")

    # ---- observation -------------------------------------------------------------------------------------
    def role(self, node: str) -> str | None:
        try:
            role: str = json.loads(self.status_file(node).read_text())["role"]
        except (OSError, ValueError, KeyError):
            return None
        return role

    def vip_holders(self) -> set[str]:
        holders = set()
        for node in NODES:
            out = sh("ip", "-n", self.ns(node), "-o", "-4", "addr", "show", "dev", "svc", check=False).stdout
            if f" {self.vip}/" in out:
                holders.add(node)
        return holders

    def wait_for(self, predicate: object, timeout_s: float = 10.0, what: str = "condition") -> None:
        """Poll ``predicate`` (a liveness limit, not a timing assertion)."""
        assert callable(predicate)
        deadline = time.monotonic() + timeout_s
        while not predicate():
            if time.monotonic() > deadline:
                roles = f"a={self.role('a')} b={self.role('b')}"
                raise AssertionError(f"{what} not reached in {timeout_s} s; roles {roles}, logs in {self.workdir}")
            time.sleep(0.01)

    # ---- faults ------------------------------------------------------------------------------------------
    def link(self, node: str, up: bool) -> None:
        sh("ip", "-n", self.ns(node), "link", "set", "svc", "up" if up else "down")

    def detach(self, node: str, paths: Iterable[int], attached: bool = False) -> None:
        for path in paths:
            port = self.port(node, path)
            master = ["master", ("br-svc", "br-hb")[path]] if attached else ["nomaster"]
            sh("ip", "-n", self.ns("sw"), "link", "set", port, *master)

    def drop_vip(self, node: str) -> None:
        self.exec(node, "ip", "addr", "del", f"{self.vip}/24", "dev", "svc", check=False)


@dataclass(frozen=True)
class Reply:
    at: float
    seq: int
    node: str


def replies(path: Path) -> list[Reply]:
    found = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 3:
            found.append(Reply(float(parts[0]), int(parts[1]), parts[2]))
    return found


def outage_s(path: Path, failed_at: float, new: str) -> float | None:
    """First reply from ``new`` after ``failed_at``, minus ``failed_at`` (None: no recovery)."""
    after = [r.at for r in replies(path) if r.node == new and r.at > failed_at]
    return after[0] - failed_at if after else None


def probe(vip: str, port: int, interval_s: float, duration_s: float, out: Path) -> None:
    """Send ``seq`` to the VIP every ``interval_s`` on a connected socket (only the VIP's replies count)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect((vip, port))
    sock.setblocking(False)
    end = time.time() + duration_s
    seq, next_at = 0, time.time()
    with out.open("w", buffering=1) as log:
        while (now := time.time()) < end:
            if now >= next_at:
                seq += 1
                try:
                    sock.send(b"%d" % seq)
                except OSError:
                    pass  # ECONNREFUSED from an earlier ICMP error
                next_at = max(next_at + interval_s, now)
            readable, _, _ = select.select([sock], [], [], max(0.0, next_at - time.time()))
            while readable:
                try:
                    data = sock.recv(2048)
                except OSError:
                    break
                number, _, node = data.partition(b"|")
                log.write(f"{time.time():.6f} {number.decode()} {node.decode()}\n")


def echo(address: str, port: int, name: str) -> None:
    """An always-on UDP echo bound to ``address`` with IP_FREEBIND (the keepalived baseline's service)."""
    sock = freebind_socket(address, port)
    tag = b"|" + name.encode()
    while True:
        data, peer = sock.recvfrom(2048)
        sock.sendto(data[:512] + tag, peer)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bridge.ha.lab")
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("probe", help="UDP probe client for the VIP")
    p.add_argument("--vip", required=True)
    p.add_argument("--port", type=int, default=ECHO_PORT)
    p.add_argument("--interval", type=float, default=0.01)
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--out", type=Path, required=True)
    e = sub.add_parser("echo", help="always-on UDP echo on the VIP")
    e.add_argument("--vip", required=True)
    e.add_argument("--port", type=int, default=ECHO_PORT)
    e.add_argument("--name", required=True)
    args = ap.parse_args(argv)
    if args.command == "probe":
        probe(args.vip, args.port, args.interval, args.duration, args.out)
    else:
        echo(args.vip, args.port, args.name)


if __name__ == "__main__":
    main()
