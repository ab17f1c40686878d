"""The HA pair in network namespaces: two ``python -m bridge.ha`` nodes, a switch, a client probing the VIP.

Each run creates its own namespaces (``bha-<random>-*``, addresses 10.231.X.0/24 and 10.232.X.0/24 with
a random X) and always removes them. Only behaviour is asserted (who holds the VIP, the roles, that the
client is answered again); the outage figures are for ``bench/ha_failover.py``. Needs root.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.ha.lab import Lab, replies

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    if os.geteuid() != 0:
        pytest.fail("tests/integration/test_ha_netns.py needs root (network namespaces, ip addr, raw sockets)")
    lab = Lab(tmp_path_factory.mktemp("ha-lab"))
    try:
        lab.setup()
        yield lab
    finally:
        lab.teardown()


@pytest.fixture
def lab(topology: Lab, tmp_path: Path) -> Iterator[Lab]:
    """A running pair: A active, B standby; afterwards our processes are killed and every fault undone."""
    lab = topology
    lab.workdir = tmp_path
    lab.start_node("a")
    lab.wait_for(lambda: lab.role("a") == "active", what="A active")
    lab.start_node("b")
    lab.wait_for(lambda: lab.role("b") == "standby", what="B standby")
    assert lab.vip_holders() == {"a"}
    try:
        yield lab
    finally:
        for process in lab.processes:
            if process.poll() is None:
                os.kill(process.pid, signal.SIGCONT)
                process.kill()
                process.wait(timeout=5)
        lab.processes.clear()
        for node in ("a", "b"):
            lab.link(node, True)
            lab.detach(node, (0, 1), attached=True)
            lab.drop_vip(node)


def probing(lab: Lab, seconds: float = 8.0) -> Path:
    out = lab.workdir / "probe.out"
    lab.start_probe(seconds, out)
    lab.wait_for(lambda: out.exists() and any(r.node == "a" for r in replies(out)), what="A answers the client")
    return out


def answered_by(out: Path, node: str, after: float) -> bool:
    return any(r.node == node and r.at > after for r in replies(out))


def test_link_down_on_the_active_service_interface(lab: Lab) -> None:
    out = probing(lab)
    failed_at = time.time()
    lab.link("a", False)
    lab.wait_for(lambda: lab.vip_holders() == {"b"} and answered_by(out, "b", failed_at), what="B serves")
    assert lab.role("a") == "failed" and lab.role("b") == "active"


def test_kill_9_of_the_active_then_it_rejoins_as_standby(lab: Lab) -> None:
    out = probing(lab)
    node_a = lab.processes[0]
    failed_at = time.time()
    node_a.kill()
    lab.wait_for(lambda: lab.role("b") == "active" and answered_by(out, "b", failed_at), what="B serves")
    assert lab.vip_holders() == {"a", "b"}  # the crash left a stale VIP behind on A...
    lab.start_node("a")
    lab.wait_for(lambda: lab.role("a") == "standby", what="A back as standby")
    assert lab.vip_holders() == {"b"}  # ...which A removes when it starts


def test_sigstop_of_the_active(lab: Lab) -> None:
    out = probing(lab)
    node_a = lab.processes[0]
    failed_at = time.time()
    os.kill(node_a.pid, signal.SIGSTOP)
    lab.wait_for(lambda: lab.role("b") == "active" and answered_by(out, "b", failed_at), what="B serves")
    os.kill(node_a.pid, signal.SIGCONT)
    lab.wait_for(lambda: lab.role("a") == "standby" and lab.vip_holders() == {"b"}, what="A steps down")


def test_graceful_switchover(lab: Lab) -> None:
    out = probing(lab)
    switched_at = time.time()
    os.kill(lab.processes[0].pid, signal.SIGUSR1)
    lab.wait_for(lambda: lab.vip_holders() == {"b"} and answered_by(out, "b", switched_at), what="B serves")
    assert lab.role("a") == "standby" and lab.role("b") == "active"


def test_heartbeat_loss_on_one_path_does_not_fail_over(lab: Lab) -> None:
    out = probing(lab, seconds=4.0)
    lab.detach("a", [1])  # the dedicated link is gone; the service LAN still carries heartbeats
    time.sleep(2.0)  # ten miss windows
    assert lab.role("a") == "active" and lab.role("b") == "standby" and lab.vip_holders() == {"a"}
    assert not any(r.node == "b" for r in replies(out))


def test_isolated_standby_without_witness_does_not_promote(lab: Lab) -> None:
    lab.detach("b", [0, 1])  # carrier stays up, but B hears neither A nor the witness
    time.sleep(2.5)
    assert lab.role("b") != "active" and lab.vip_holders() == {"a"} and lab.role("a") == "active"
    lab.detach("b", [0, 1], attached=True)
    lab.wait_for(lambda: lab.role("b") == "standby", what="B standby again")
    assert lab.role("a") == "active" and lab.vip_holders() == {"a"}


def test_heal_a_rejoins_as_standby_and_the_vip_is_never_on_both(lab: Lab) -> None:
    lab.link("a", False)
    lab.wait_for(lambda: lab.vip_holders() == {"b"}, what="B holds the VIP")
    samples: list[set[str]] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            samples.append(lab.vip_holders())
            time.sleep(0.01)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        time.sleep(0.1)
        lab.link("a", True)
        lab.wait_for(lambda: lab.role("a") == "standby", what="A standby")
        time.sleep(1.0)  # and A must stay standby: no pre-emption
    finally:
        done.set()
        sampler.join()
    assert len(samples) >= 10  # about one per 10-15 ms; fewer only on a very busy machine
    assert all(holders == {"b"} for holders in samples), [h for h in samples if h != {"b"}][:5]
    assert lab.role("a") == "standby" and lab.role("b") == "active"
