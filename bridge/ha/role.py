"""The HA role state machine of one node of a primary/hot-standby pair (pure: ``now`` in, actions out).

Theory of operation. Two nodes exchange signed heartbeats every ``interval_s`` on every path (a dedicated
link and the service LAN), each carrying the sender's role, its term and whether it is *healthy* (its
service link is up and its witness answered lately). A node boots in ``INIT`` and listens for one miss
window (``miss_count * interval_s``) before it may act, so a restarted node always learns of a running
active peer first and rejoins as ``STANDBY``: it never pre-empts (the spec: "when Server A is restored it
continues to serve as Secondary"). A standby that hears its peer in ``INIT`` takes over: the peer
restarted, and it will find us active when its hold-down ends.

A standby becomes ``ACTIVE`` when

- the peer is silent on *every* path for the miss window *and* the witness answered a probe sent in its
  last interval or later (the peer already silent that long: an answer from just after the peer's last
  heartbeat is what an isolated node also has). Silence on one path only is a broken cable, not a dead
  peer; a node that cannot reach the witness either is the isolated one and must not promote (no split
  brain), in the spirit of a quorum device (Pacemaker's qdevice, VRRP's tracked gateway);
- or the peer yields: it says ``FAILED`` (its service link broke) or sets the resign flag (a graceful
  switchover or shutdown): the standby takes over at once, without waiting for a miss window;
- or nobody is active and both are healthy standbys (both came back from ``FAILED``): the node with the
  newest term wins, ties going to the lower node id.

Every takeover takes a new *term*, greater than every term the node has seen. Terms are ballot numbers
as in Paxos (Lamport, "Paxos Made Simple", §2.2): the node whose id sorts first only takes even terms
and the other odd ones, so two nodes never hold the same term even when a partition lets both promote,
and the comparison "newest term wins" is total. When an active node hears an active peer with a newer
term (a partition healed) it steps down at once: drops the VIP, stops its services, becomes standby.
An active node whose own service link or witness fails hands over to a healthy standby by going
``FAILED``; a ``FAILED`` node comes back as ``STANDBY`` once healthy. The VIP is always dropped before
the heartbeat that lets the peer take it is sent, so a hand-over never puts it on both nodes.

The glue (:mod:`bridge.ha.service`) feeds :class:`HaEvent` with ``loop.time()`` and executes the
returned :class:`HaAction` in order.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass

from bridge.ha.errors import PeerError, SwitchoverRefused, TransitionError

log = logging.getLogger(__name__)


class Role(enum.Enum):
    INIT = "init"
    STANDBY = "standby"
    ACTIVE = "active"
    FAILED = "failed"


class Cause(enum.Enum):
    """Why the machine changes role: the key of the transition table."""

    PEER_ACTIVE = "active peer heard"
    HOLD_DOWN_OVER = "hold-down over"
    PEER_LOST = "peer silent on every path, witness answered"
    PEER_YIELDED = "peer failed, resigned or is unhealthy"
    ELECTED = "nobody active, elected"
    NEWER_TERM = "active peer with a newer term"
    RESIGNED = "resigned"
    UNHEALTHY = "unhealthy"
    HEALTHY = "healthy again"


R, C = Role, Cause
TRANSITIONS: dict[Role, dict[Cause, Role]] = {
    R.INIT: {C.PEER_ACTIVE: R.STANDBY, C.HOLD_DOWN_OVER: R.STANDBY},
    R.STANDBY: {C.PEER_LOST: R.ACTIVE, C.PEER_YIELDED: R.ACTIVE, C.ELECTED: R.ACTIVE, C.UNHEALTHY: R.FAILED},
    R.ACTIVE: {C.NEWER_TERM: R.STANDBY, C.RESIGNED: R.STANDBY, C.UNHEALTHY: R.FAILED},
    R.FAILED: {C.HEALTHY: R.STANDBY},
}
del R, C


# ---- events (glue -> machine) ---------------------------------------------------------------------------
@dataclass(frozen=True)
class HaEvent:
    now: float


@dataclass(frozen=True)
class Tick(HaEvent):
    """The periodic timer, every ``interval_s``: send a heartbeat, check the deadlines."""


@dataclass(frozen=True)
class PeerHeartbeat(HaEvent):
    """A verified heartbeat from the peer, received on ``path``."""

    path: int
    node_id: str
    role: Role
    term: int
    healthy: bool
    resign: bool = False


@dataclass(frozen=True)
class LinkChanged(HaEvent):
    """The service interface (the one that carries the VIP) went up or down."""

    up: bool


@dataclass(frozen=True)
class WitnessAnswered(HaEvent):
    """The witness answered a probe, sent at ``probed_at`` (default: ``now``). The promotion rule asks for a
    probe *sent* after the peer went silent: an answer to an earlier probe that is only handled later (a busy
    node) must not count as news of the witness from after the silence."""

    probed_at: float | None = None


@dataclass(frozen=True)
class SwitchoverRequested(HaEvent):
    """The operator asks the active node to hand over to the standby (``bridge ha switchover``)."""


@dataclass(frozen=True)
class ShutdownRequested(HaEvent):
    """The node is stopping: if active, resign so the standby takes over at once."""


# ---- actions (machine -> glue) --------------------------------------------------------------------------
@dataclass(frozen=True)
class HaAction:
    pass


@dataclass(frozen=True)
class SendHeartbeat(HaAction):
    """Send this state to the peer on every path."""

    role: Role
    term: int
    healthy: bool
    resign: bool = False


@dataclass(frozen=True)
class AddVip(HaAction):
    """Add the floating IP to the service interface and announce it (gratuitous ARP)."""


@dataclass(frozen=True)
class DropVip(HaAction):
    """Remove the floating IP (also a stale one left by a crash)."""


@dataclass(frozen=True)
class StartServices(HaAction):
    """This node is active in ``term``: start SIP, SMPP, CDR push... (the engine's ``on_active``)."""

    term: int


@dataclass(frozen=True)
class StopServices(HaAction):
    """This node is no longer active: suspend the services (the engine's ``on_standby``)."""


@dataclass(frozen=True)
class ProbeWitness(HaAction):
    """Send one probe to the witness; answer with :class:`WitnessAnswered`."""


@dataclass
class PeerView:
    """What the node knows of its peer: the last heartbeat and when each path last carried one."""

    node_id: str
    role: Role
    term: int
    healthy: bool
    resign: bool
    heard_at: dict[int, float]


@dataclass(frozen=True)
class HaStatus:
    """A snapshot for ``bridge ha status`` and ``GET /status``."""

    node_id: str
    role: Role
    term: int
    healthy: bool
    since: float
    peer_role: Role | None
    peer_term: int | None
    peer_healthy: bool | None
    peer_heard_age_s: dict[int, float]
    witness_age_s: float | None
    max_silence_s: float


class RoleMachine:
    """One node's role. Construct it, execute :meth:`start`'s actions, then feed it events."""

    def __init__(
        self,
        *,
        node_id: str,
        peer_id: str,
        interval_s: float,
        miss_count: int,
        witness: bool,
        witness_interval_s: float,
        witness_timeout_s: float,
        now: float,
    ) -> None:
        if node_id == peer_id:
            raise TransitionError(f"node id and peer id are both {node_id!r}")
        self.node_id = node_id
        self.peer_id = peer_id
        self.interval_s = interval_s
        self.miss_window_s = miss_count * interval_s
        self.witness = witness
        self.witness_interval_s = witness_interval_s
        self.witness_timeout_s = witness_timeout_s
        self.state = Role.INIT
        self.term = 0
        self.since = now
        # Silence of the peer counts from here: boot (the hold-down) and the return from FAILED, so a node
        # that just became able to act listens for one miss window before it may call its peer dead.
        self.listen_from = now
        self.link_up = True
        self.witness_at: float | None = None
        self.probed_at: float | None = None
        self.peer: PeerView | None = None
        self.max_silence_s = 0.0  # the longest gap between two heartbeats of the peer: the margin left
        self.resigning = False
        # Ballot parity: the node whose id sorts first takes even terms, the other odd ones.
        self._parity = 0 if node_id < peer_id else 1

    # ---- inputs ---------------------------------------------------------------------------------------
    def start(self, now: float) -> list[HaAction]:
        """First actions: a VIP left by a crash (``kill -9``) is never ours at start."""
        self.probed_at = now
        return [DropVip(), ProbeWitness(), self._heartbeat(now)]

    def handle(self, event: HaEvent) -> list[HaAction]:
        """Apply ``event`` and return the actions to execute, in order."""
        now = event.now
        if isinstance(event, Tick):
            actions = self._decide(now)
            if not any(isinstance(action, SendHeartbeat) for action in actions):
                actions.append(self._heartbeat(now))  # after the decision, so it says where we are now
            if self._witness_probe_due(now):
                self.probed_at = now
                actions.append(ProbeWitness())
            return actions
        if isinstance(event, SwitchoverRequested):
            return self._switchover(now)
        if isinstance(event, ShutdownRequested):
            return self._resign(now) if self.state is Role.ACTIVE else []
        if isinstance(event, PeerHeartbeat):
            self._hear(event)
        elif isinstance(event, LinkChanged):
            self.link_up = event.up
        elif isinstance(event, WitnessAnswered):
            sent = now if event.probed_at is None else event.probed_at
            self.witness_at = sent if self.witness_at is None else max(self.witness_at, sent)
        return self._decide(now)

    # ---- queries --------------------------------------------------------------------------------------
    def healthy(self, now: float) -> bool:
        """Service link up and (without a witness, or) the witness answered within ``witness_timeout_s``."""
        if not self.link_up:
            return False
        if not self.witness:
            return True
        return self.witness_at is not None and now - self.witness_at <= self.witness_timeout_s

    def peer_alive(self, now: float) -> bool:
        return self.peer is not None and now - self._last_heard() < self.miss_window_s

    def status(self, now: float) -> HaStatus:
        peer = self.peer
        return HaStatus(
            node_id=self.node_id,
            role=self.state,
            term=self.term,
            healthy=self.healthy(now),
            since=self.since,
            peer_role=peer.role if peer else None,
            peer_term=peer.term if peer else None,
            peer_healthy=peer.healthy if peer else None,
            peer_heard_age_s={path: now - at for path, at in peer.heard_at.items()} if peer else {},
            witness_age_s=None if self.witness_at is None else now - self.witness_at,
            max_silence_s=self.max_silence_s,
        )

    # ---- the rules ------------------------------------------------------------------------------------
    def _hear(self, event: PeerHeartbeat) -> None:
        if event.node_id != self.peer_id:
            raise PeerError(f"heartbeat from node {event.node_id!r}, expected the peer {self.peer_id!r}")
        heard_at = self.peer.heard_at if self.peer else {}
        if heard_at:
            self.max_silence_s = max(self.max_silence_s, event.now - max(heard_at.values()))
        heard_at[event.path] = event.now
        self.peer = PeerView(event.node_id, event.role, event.term, event.healthy, event.resign, heard_at)
        if event.role is Role.ACTIVE:
            self.resigning = False  # the hand-over happened (or someone else is active anyway)
        if self.state is not Role.ACTIVE:
            self.term = max(self.term, event.term)

    def _decide(self, now: float) -> list[HaAction]:
        actions: list[HaAction] = []
        for _ in range(len(Role)):  # INIT -> STANDBY -> ACTIVE can happen on one event
            cause = self._cause(now)
            if cause is None:
                break
            actions.extend(self._set_state(cause, now))
        return actions

    def _cause(self, now: float) -> Cause | None:
        """The reason to leave the current role now, or None to stay."""
        peer, alive, healthy = self.peer, self.peer_alive(now), self.healthy(now)
        if self.state is Role.INIT:
            if peer is not None and alive and peer.role is Role.ACTIVE and healthy:
                return Cause.PEER_ACTIVE  # (not before the first witness answer: no STANDBY -> FAILED blip)
            return Cause.HOLD_DOWN_OVER if now - self.listen_from >= self.miss_window_s else None
        if self.state is Role.FAILED:
            return Cause.HEALTHY if healthy else None
        if self.state is Role.ACTIVE:
            if peer is None or not alive:
                return None  # alone: keep serving, whatever our health (nobody else can)
            if peer.role is Role.ACTIVE and self._outranked_by(peer):
                return Cause.NEWER_TERM
            if not healthy and peer.role is Role.STANDBY and peer.healthy and not peer.resign:
                return Cause.UNHEALTHY
            return None
        # STANDBY
        if not healthy:
            return Cause.UNHEALTHY
        if peer is None or not alive:
            silent_since = self._last_heard()
            if now - silent_since < self.miss_window_s:
                return None
            if self.witness and (self.witness_at is None or self.witness_at < silent_since + self._late_by):
                return None  # cannot tell a dead peer from our own isolation: stay standby
            return Cause.PEER_LOST
        if peer.role is Role.ACTIVE:
            return None
        if peer.role in (Role.FAILED, Role.INIT) or peer.resign or not peer.healthy:
            return Cause.PEER_YIELDED  # an INIT peer is booting: it will find us active and stay standby
        if not self.resigning and self._outranks(peer):
            return Cause.ELECTED
        return None

    def _set_state(self, cause: Cause, now: float) -> list[HaAction]:
        old = self.state
        new = TRANSITIONS[old].get(cause)
        if new is None:
            raise TransitionError(f"{self.node_id}: {cause.value!r} is not allowed in state {old.value}")
        self.state, self.since = new, now
        if old is Role.FAILED:
            self.listen_from = now
        actions: list[HaAction] = []
        if new is Role.ACTIVE:
            self.term = self._next_term()
            self.resigning = False
            actions += [AddVip(), self._heartbeat(now), StartServices(self.term)]
        elif old is Role.ACTIVE:
            # VIP first (never on two nodes), then tell the peer, then the (slower) service stop.
            actions += [DropVip(), self._heartbeat(now), StopServices()]
        else:
            actions.append(self._heartbeat(now))
        log.info("%s: %s -> %s (%s, term %d)", self.node_id, old.value, new.value, cause.value, self.term)
        return actions

    def _switchover(self, now: float) -> list[HaAction]:
        if self.state is not Role.ACTIVE:
            raise SwitchoverRefused(f"{self.node_id} is {self.state.value}, only the active node can hand over")
        peer = self.peer
        if peer is None or not self.peer_alive(now) or peer.role is not Role.STANDBY or not peer.healthy:
            seen = peer.role.value if peer else "never heard"
            raise SwitchoverRefused(f"no healthy standby to hand over to (peer: {seen})")
        return self._resign(now)

    def _resign(self, now: float) -> list[HaAction]:
        self.resigning = True
        return self._set_state(Cause.RESIGNED, now)

    # ---- helpers --------------------------------------------------------------------------------------
    def _heartbeat(self, now: float) -> SendHeartbeat:
        return SendHeartbeat(self.state, self.term, self.healthy(now), self.resigning)

    def _last_heard(self) -> float:
        """When the peer was last heard on any path; ``listen_from`` counts as heard (the hold-down)."""
        if self.peer is None:
            return self.listen_from
        return max(self.listen_from, *self.peer.heard_at.values())

    @property
    def _late_by(self) -> float:
        """How long the peer must have been silent when the witness probe that lets us promote was sent: the
        last tick before the miss deadline. A probe sent just after the peer's last heartbeat and answered
        before our own link went (an isolated node's last answer) proves nothing about the peer."""
        return self.miss_window_s - self.interval_s

    def _witness_probe_due(self, now: float) -> bool:
        if not self.witness:
            return False
        if now - self._last_heard() > self.interval_s:
            return True  # the peer is late: a promotion may need a fresh answer at the deadline
        return self.probed_at is None or now - self.probed_at >= self.witness_interval_s

    def _outranks(self, peer: PeerView) -> bool:
        """Newest term wins; on equal terms the lower node id (deterministic, known to both)."""
        return (self.term, peer.node_id) > (peer.term, self.node_id)

    def _outranked_by(self, peer: PeerView) -> bool:
        return (peer.term, self.node_id) > (self.term, peer.node_id)

    def _next_term(self) -> int:
        known = max(self.term, self.peer.term if self.peer else 0)
        term = known + 1
        return term if term % 2 == self._parity else term + 1
