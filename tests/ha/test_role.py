"""The pure role machine: two nodes joined by ``transfer()`` on a fake clock, no sockets."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from bridge.ha.errors import PeerError, SwitchoverRefused, TransitionError
from bridge.ha.role import (
    TRANSITIONS,
    AddVip,
    Cause,
    DropVip,
    HaAction,
    HaEvent,
    LinkChanged,
    PeerHeartbeat,
    ProbeWitness,
    Role,
    RoleMachine,
    SendHeartbeat,
    ShutdownRequested,
    StartServices,
    StopServices,
    SwitchoverRequested,
    Tick,
    WitnessAnswered,
)

INTERVAL = 0.05
MISS = 4
STEP = 0.005
PATHS = (0, 1)  # 0: service LAN (with the witness), 1: dedicated link


@dataclass
class Node:
    """One node: its machine plus what the machine's actions did to the 'host' (VIP, services)."""

    node_id: str
    peer_id: str
    phase: float
    now: float
    machine: RoleMachine = field(init=False)
    vip: bool = False  # the interface state: survives a restart of the process (a stale VIP)
    services: bool = False
    witness_ok: bool = True
    link_up: bool = True
    running: bool = True  # False: killed (kill -9), until restart()
    stopped: bool = False  # SIGSTOP: nothing runs, heartbeats queue in the socket
    next_tick: float = 0.0
    outbox: list[SendHeartbeat] = field(default_factory=list)
    probes: int = 0
    inbox: list[HaEvent] = field(default_factory=list)
    terms: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.restart(self.now)

    def restart(self, now: float) -> None:
        self.machine = RoleMachine(
            node_id=self.node_id,
            peer_id=self.peer_id,
            interval_s=INTERVAL,
            miss_count=MISS,
            witness=True,
            witness_interval_s=0.5,
            witness_timeout_s=1.5,
            now=now,
        )
        self.running, self.stopped, self.services = True, False, False
        self.next_tick = now + self.phase
        self.terms = []
        self.execute(self.machine.start(now))
        if not self.link_up:
            self.feed(LinkChanged(now, False))

    def feed(self, event: HaEvent) -> None:
        if not self.running:
            return
        if self.stopped:
            self.inbox.append(event)
            return
        self.execute(self.machine.handle(event))

    def execute(self, actions: list[HaAction]) -> None:
        for action in actions:
            if isinstance(action, AddVip):
                self.vip = True
            elif isinstance(action, DropVip):
                self.vip = False
            elif isinstance(action, StartServices):
                self.services = True
                self.terms.append(action.term)
            elif isinstance(action, StopServices):
                self.services = False
            elif isinstance(action, SendHeartbeat):
                self.outbox.append(action)
            elif isinstance(action, ProbeWitness):
                self.probes += 1

    @property
    def role(self) -> Role:
        return self.machine.state


class Lab:
    """Two nodes, two paths (each direction can be cut), a witness on path 0's LAN, one fake clock."""

    def __init__(self, *, b_phase: float = 0.013) -> None:
        self.now = 0.0
        self.a = Node("a", "b", 0.0, self.now)
        self.b = Node("b", "a", b_phase, self.now)
        self.cut: set[tuple[str, int]] = set()  # (sender, path) whose datagrams are lost
        self.transfer()

    def nodes(self) -> tuple[Node, Node]:
        return self.a, self.b

    def peer(self, node: Node) -> Node:
        return self.b if node is self.a else self.a

    def transfer(self) -> None:
        """Deliver every queued heartbeat and witness probe, until nothing more is sent."""
        while any(n.outbox or n.probes for n in self.nodes()):
            for node in self.nodes():
                out, node.outbox = node.outbox, []
                probes, node.probes = node.probes, 0
                other = self.peer(node)
                for hb in out:
                    for path in PATHS:
                        if self._carries(node, other, path):
                            event = PeerHeartbeat(self.now, path, node.node_id, hb.role, hb.term, hb.healthy, hb.resign)
                            other.feed(event)
                if probes and node.witness_ok and node.link_up:
                    node.feed(WitnessAnswered(self.now))

    def _carries(self, sender: Node, receiver: Node, path: int) -> bool:
        if (sender.node_id, path) in self.cut:
            return False
        return path != 0 or (sender.link_up and receiver.link_up)

    def run(self, seconds: float, check: object = None) -> None:
        end = self.now + seconds
        while self.now < end - 1e-9:
            self.now = round(self.now + STEP, 6)
            for node in self.nodes():
                if node.running and not node.stopped and self.now >= node.next_tick - 1e-9:
                    node.next_tick += INTERVAL
                    node.feed(Tick(self.now))
            self.transfer()
            if callable(check):
                check()

    def run_until(self, predicate: object, limit: float = 5.0) -> float:
        """Run until ``predicate()``; return the simulated time it took."""
        start = self.now
        assert callable(predicate)
        while not predicate():
            assert self.now - start < limit, "condition not reached"
            self.run(STEP)
        return self.now - start

    # ---- faults -----------------------------------------------------------------------------------------
    def cut_path(self, path: int) -> None:
        self.cut |= {("a", path), ("b", path)}

    def heal_paths(self) -> None:
        self.cut.clear()

    def set_link(self, node: Node, up: bool) -> None:
        node.link_up = up
        node.feed(LinkChanged(self.now, up))
        self.transfer()

    def kill(self, node: Node) -> None:
        node.running = False
        node.services = False  # the process is gone; the VIP stays on the interface

    def sigstop(self, node: Node) -> None:
        node.stopped = True

    def sigcont(self, node: Node) -> None:
        node.stopped = False
        queued, node.inbox = node.inbox, []
        for event in queued:  # the socket buffer is read before the overdue timer fires
            node.feed(event)
        node.next_tick = self.now
        self.transfer()

    def roles(self) -> tuple[Role, Role]:
        return self.a.role, self.b.role


def booted() -> Lab:
    lab = Lab()
    lab.run(1.0)
    assert lab.roles() == (Role.ACTIVE, Role.STANDBY)
    return lab


def one_active(lab: Lab) -> Node:
    """The one running node that is ACTIVE, and the only running node with the VIP."""
    active = [n for n in lab.nodes() if n.running and n.role is Role.ACTIVE]
    assert len(active) == 1, lab.roles()
    holders = [n for n in lab.nodes() if n.running and n.vip]
    assert holders == active
    return active[0]


# ---- table -------------------------------------------------------------------------------------------------
def test_table_refuses_what_it_does_not_list() -> None:
    machine = Lab().a.machine
    assert Cause.NEWER_TERM not in TRANSITIONS[Role.INIT]
    with pytest.raises(TransitionError, match="not allowed in state init"):
        machine._set_state(Cause.NEWER_TERM, 0.0)


def test_start_drops_a_stale_vip_and_probes_the_witness() -> None:
    machine = RoleMachine(
        node_id="a", peer_id="b", interval_s=INTERVAL, miss_count=MISS, witness=True,
        witness_interval_s=0.5, witness_timeout_s=1.5, now=0.0,
    )  # fmt: skip
    actions = machine.start(0.0)
    assert actions[:2] == [DropVip(), ProbeWitness()]
    assert isinstance(actions[2], SendHeartbeat) and actions[2].role is Role.INIT


def test_heartbeat_from_a_stranger_is_a_peer_error() -> None:
    machine = Lab().a.machine
    with pytest.raises(PeerError, match="'c', expected the peer 'b'"):
        machine.handle(PeerHeartbeat(0.1, 0, "c", Role.ACTIVE, 3, True))


# ---- boot ----------------------------------------------------------------------------------------------------
def test_cold_start_elects_one_active() -> None:
    lab = booted()
    assert one_active(lab) is lab.a and lab.a.services and not lab.b.services
    assert lab.a.machine.term == 2  # a sorts first: even terms


def test_lone_node_becomes_active_after_the_hold_down() -> None:
    lab = Lab()
    lab.kill(lab.b)
    took = lab.run_until(lambda: lab.a.role is Role.ACTIVE)
    assert MISS * INTERVAL <= took <= MISS * INTERVAL + INTERVAL


# ---- failover ------------------------------------------------------------------------------------------------
def test_standby_takes_over_when_the_active_dies() -> None:
    lab = booted()
    lab.kill(lab.a)
    took = lab.run_until(lambda: lab.b.role is Role.ACTIVE)
    assert MISS * INTERVAL - INTERVAL <= took <= MISS * INTERVAL + INTERVAL
    assert lab.b.vip and lab.b.services and lab.b.machine.term == 3


def test_both_paths_lost_and_witness_unreachable_does_not_promote() -> None:
    lab = booted()
    lab.cut_path(0)
    lab.cut_path(1)
    lab.b.witness_ok = False
    lab.run(3.0)
    assert lab.a.role is Role.ACTIVE and lab.b.role is not Role.ACTIVE and not lab.b.vip
    lab.heal_paths()
    lab.b.witness_ok = True
    lab.run(2.0)
    assert lab.roles() == (Role.ACTIVE, Role.STANDBY)


def test_witness_answer_must_come_after_the_peer_went_silent() -> None:
    """A witness that answered a second ago says nothing about who is isolated now."""
    lab = booted()
    lab.cut_path(0)
    lab.cut_path(1)
    lab.b.witness_ok = False  # b still has a fresh answer from before the cut
    lab.run(MISS * INTERVAL * 3)
    assert lab.b.role is Role.STANDBY and lab.b.machine.healthy(lab.now)


def test_an_answer_from_just_after_the_last_heartbeat_does_not_promote() -> None:
    """Isolated right after a probe was answered: that answer is newer than the peer's last heartbeat, but
    it is what any isolated node has; only a probe from near the miss deadline tells a dead peer."""
    lab = booted()
    lab.cut_path(0)
    lab.cut_path(1)
    lab.b.witness_ok = False
    lab.b.feed(WitnessAnswered(lab.now + STEP, probed_at=lab.now + STEP))
    lab.run(MISS * INTERVAL * 3)
    assert lab.b.role is Role.STANDBY and not lab.b.vip


def test_a_late_answer_to_a_probe_sent_before_the_silence_does_not_promote() -> None:
    """A busy node may handle an answer long after it came: what counts is when its probe was sent."""
    lab = booted()
    before = lab.now - INTERVAL  # a probe sent while the peer was still heard
    lab.cut_path(0)
    lab.cut_path(1)
    lab.b.witness_ok = False
    lab.run(MISS * INTERVAL * 3, check=lambda: lab.b.feed(WitnessAnswered(lab.now, probed_at=before)))
    assert lab.b.role is Role.STANDBY and not lab.b.vip


@pytest.mark.parametrize("path", PATHS)
def test_heartbeat_loss_on_one_path_does_not_fail_over(path: int) -> None:
    lab = booted()
    term = lab.a.machine.term
    lab.cut_path(path)
    lab.run(5.0)
    assert lab.roles() == (Role.ACTIVE, Role.STANDBY) and lab.a.machine.term == term


def test_service_link_down_on_the_active_hands_over_at_once() -> None:
    lab = booted()
    lab.set_link(lab.a, False)
    assert lab.roles() == (Role.FAILED, Role.ACTIVE)  # no miss window: a said FAILED on path 1
    assert one_active(lab) is lab.b
    lab.set_link(lab.a, True)
    lab.run(2.0)
    assert lab.roles() == (Role.STANDBY, Role.ACTIVE)


def test_standby_with_its_link_down_never_promotes() -> None:
    lab = booted()
    lab.set_link(lab.b, False)
    lab.kill(lab.a)
    lab.run(3.0)
    assert lab.b.role is Role.FAILED and not lab.b.vip


def test_sigstop_of_the_active_then_resume_leaves_one_active() -> None:
    lab = booted()
    lab.sigstop(lab.a)
    lab.run_until(lambda: lab.b.role is Role.ACTIVE)
    lab.run(1.0)
    lab.sigcont(lab.a)  # a reads b's newer term before its own overdue tick
    assert lab.roles() == (Role.STANDBY, Role.ACTIVE) and one_active(lab) is lab.b


# ---- heal and rejoin -------------------------------------------------------------------------------------------
def test_partition_heal_keeps_the_newest_term() -> None:
    lab = booted()
    lab.cut_path(0)
    lab.cut_path(1)
    lab.run(1.0)  # both reach the witness: b promotes (the partition is invisible to it)
    assert lab.roles() == (Role.ACTIVE, Role.ACTIVE) and lab.b.machine.term > lab.a.machine.term
    lab.heal_paths()
    lab.run(INTERVAL * 2)
    assert one_active(lab) is lab.b and lab.a.role is Role.STANDBY and not lab.a.services


def test_both_booting_into_a_partition_take_different_terms_and_heal_to_one() -> None:
    lab = Lab()
    lab.cut_path(0)
    lab.cut_path(1)
    lab.a.restart(lab.now)
    lab.b.restart(lab.now)
    lab.run(1.0)
    assert lab.roles() == (Role.ACTIVE, Role.ACTIVE)
    assert (lab.a.machine.term, lab.b.machine.term) == (2, 1)  # ballot parity: never the same term
    lab.heal_paths()
    lab.run(INTERVAL * 2)
    assert one_active(lab) is lab.a and lab.b.role is Role.STANDBY


def test_restored_primary_rejoins_as_standby() -> None:
    lab = booted()
    lab.kill(lab.a)
    lab.run(1.0)
    assert lab.a.vip  # kill -9 left the VIP behind
    lab.a.restart(lab.now)
    assert not lab.a.vip  # removed at start
    lab.run(3.0)
    assert lab.roles() == (Role.STANDBY, Role.ACTIVE) and one_active(lab) is lab.b


def test_fast_restart_of_the_active_inside_the_miss_window() -> None:
    """The standby hears its peer booting (INIT) and takes over; the booted node then finds it active."""
    lab = booted()
    lab.kill(lab.a)
    lab.run(INTERVAL)
    lab.a.restart(lab.now)
    lab.run(2.0)
    assert lab.roles() == (Role.STANDBY, Role.ACTIVE)


# ---- switchover and shutdown ---------------------------------------------------------------------------------
def test_switchover_hands_over_at_once() -> None:
    lab = booted()
    lab.a.feed(SwitchoverRequested(lab.now))
    lab.transfer()
    assert lab.roles() == (Role.STANDBY, Role.ACTIVE) and one_active(lab) is lab.b
    assert lab.b.machine.term > lab.a.terms[-1]
    lab.run(3.0)
    assert lab.roles() == (Role.STANDBY, Role.ACTIVE)


def test_switchover_survives_a_lost_resign() -> None:
    lab = booted()
    lab.cut_path(0)
    lab.cut_path(1)
    lab.a.feed(SwitchoverRequested(lab.now))
    lab.transfer()
    lab.heal_paths()
    lab.run(INTERVAL * 2)  # the resign flag rides on every heartbeat until an active peer is heard
    assert lab.roles() == (Role.STANDBY, Role.ACTIVE)


def test_switchover_refused_without_a_healthy_standby() -> None:
    lab = booted()
    with pytest.raises(SwitchoverRefused, match="only the active node"):
        lab.b.machine.handle(SwitchoverRequested(lab.now))
    lab.b.witness_ok = False
    lab.run(2.0)
    with pytest.raises(SwitchoverRefused, match="no healthy standby"):
        lab.a.machine.handle(SwitchoverRequested(lab.now))


def test_shutdown_of_the_active_resigns() -> None:
    lab = booted()
    lab.a.feed(ShutdownRequested(lab.now))
    lab.transfer()
    lab.kill(lab.a)
    assert lab.b.role is Role.ACTIVE and not lab.a.vip


def test_terms_grow_on_every_takeover_and_never_collide() -> None:
    lab = booted()
    seen = [lab.a.machine.term]
    for _ in range(3):
        active = one_active(lab)
        active.feed(SwitchoverRequested(lab.now))
        lab.transfer()
        lab.run(0.5)
        seen.append(one_active(lab).machine.term)
    lab.kill(lab.a if lab.a.role is Role.ACTIVE else lab.b)
    lab.run(1.0)
    seen.append(one_active(lab).machine.term)
    assert seen == sorted(set(seen)) and len(seen) == 5
    assert all(t % 2 == 0 for t in lab.a.terms) and all(t % 2 == 1 for t in lab.b.terms)


# ---- property: random loss, partitions, crashes --------------------------------------------------------------
class PairUnderFaults(RuleBasedStateMachine):
    """Random faults at any instant; at most one ACTIVE per term always, exactly one ACTIVE after healing."""

    def __init__(self) -> None:
        super().__init__()
        self.lab = Lab()
        self.lab.run(0.5)

    def _check(self) -> None:
        active = [n for n in self.lab.nodes() if n.role is Role.ACTIVE]
        assert len({n.machine.term for n in active}) == len(active), "two nodes ACTIVE in one term"
        for node in self.lab.nodes():
            assert node.terms == sorted(set(node.terms)), "a node reused or lowered its term"

    @rule(seconds=st.floats(0.005, 0.6))
    def advance(self, seconds: float) -> None:
        self.lab.run(seconds, check=self._check)

    @rule(sender=st.sampled_from("ab"), path=st.sampled_from(PATHS))
    def toggle_loss(self, sender: str, path: int) -> None:
        self.lab.cut ^= {(sender, path)}

    @rule(node=st.sampled_from("ab"), ok=st.booleans())
    def witness(self, node: str, ok: bool) -> None:
        getattr(self.lab, node).witness_ok = ok

    @rule(node=st.sampled_from("ab"), up=st.booleans())
    def link(self, node: str, up: bool) -> None:
        self.lab.set_link(getattr(self.lab, node), up)

    @rule(node=st.sampled_from("ab"))
    def crash_or_restart(self, node: str) -> None:
        target: Node = getattr(self.lab, node)
        if target.running:
            self.lab.kill(target)
        else:
            target.restart(self.lab.now)
            self.lab.transfer()

    @rule(node=st.sampled_from("ab"))
    def stop_or_continue(self, node: str) -> None:
        target: Node = getattr(self.lab, node)
        if target.stopped:
            self.lab.sigcont(target)
        elif target.running:
            self.lab.sigstop(target)

    @rule(node=st.sampled_from("ab"))
    def switchover(self, node: str) -> None:
        target: Node = getattr(self.lab, node)
        if target.running and not target.stopped:
            try:
                target.execute(target.machine.handle(SwitchoverRequested(self.lab.now)))
            except SwitchoverRefused:
                pass
            self.lab.transfer()

    @invariant()
    def one_term_one_active(self) -> None:
        self._check()

    def teardown(self) -> None:
        lab = self.lab
        lab.heal_paths()
        for node in lab.nodes():
            node.witness_ok = True
            if not node.link_up:
                lab.set_link(node, True)
            if node.stopped:
                lab.sigcont(node)
            if not node.running:
                node.restart(lab.now)
        lab.transfer()
        lab.run(3.0, check=self._check)
        active = one_active(lab)
        assert lab.peer(active).role is Role.STANDBY
        assert active.services and not lab.peer(active).services


PairUnderFaults.TestCase.settings = settings(
    max_examples=150, stateful_step_count=30, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
test_pair_under_faults = PairUnderFaults.TestCase
