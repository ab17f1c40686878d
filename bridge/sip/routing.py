"""Pure routing cores: the dial plan over trunk groups, E1 span/channel allocation, gateway health.

Route advance (operator practice, RFC 3261 §16.7 for the codes): an attempt that gets 408, any 5xx, or no
response at all within ``sip.invite_timeout_s`` moves on to the next gateway of the group, then to the
``alternate`` groups. Other final responses (404, 486, 6xx...) are the callee's answer and end the leg.
Gateways marked down by the OPTIONS keepalive are left out of new plans.

E1 groups: a span/channel is taken for each attempt on the group (lowest free span, then channel, so the
port map on the status page fills predictably) and released when the attempt or the call ends.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bridge.config import TrunkGroupConfig

NO_RESPONSE = 0
"""Pseudo status of an attempt that got no response at all (our INVITE timer fired)."""


@dataclass(frozen=True)
class RouteAttempt:
    group: str
    gateway: str
    """``host:port`` of the gateway."""


def plan_routes(
    groups: Sequence[TrunkGroupConfig], *, first_group: str | None, is_up: Callable[[str], bool]
) -> list[RouteAttempt]:
    """Ordered attempts for one outbound call.

    ``first_group`` (when given) goes first, followed by every ``alternate`` group; without it, every ``main``
    group in config order, then the ``alternate`` ones. Gateways for which ``is_up`` is false are skipped.
    """
    if first_group is not None:
        primary = [g for g in groups if g.name == first_group]
        rest = [g for g in groups if g.role == "alternate" and g.name != first_group]
    else:
        primary = [g for g in groups if g.role == "main"]
        rest = [g for g in groups if g.role == "alternate"]
    return [RouteAttempt(g.name, gw) for g in (*primary, *rest) for gw in g.gateways if is_up(gw)]


def advances(status: int) -> bool:
    """Does this final status (``NO_RESPONSE`` for none) move the call on to the next route?"""
    return status == NO_RESPONSE or status == 408 or 500 <= status <= 599


class PortMap:
    """Span/channel occupancy of one E1 trunk group (spans and channels are numbered from 1)."""

    def __init__(self, group: str, *, spans: int, channels_per_span: int) -> None:
        self.group = group
        self.spans = spans
        self.channels_per_span = channels_per_span
        self._busy: dict[tuple[int, int], str] = {}
        self._by_leg: dict[str, tuple[int, int]] = {}

    @property
    def capacity(self) -> int:
        return self.spans * self.channels_per_span

    @property
    def busy(self) -> int:
        return len(self._busy)

    def allocate(self, leg_id: str) -> tuple[int, int] | None:
        """Take the lowest free span/channel for ``leg_id`` (idempotent), or ``None`` if the group is full."""
        if leg_id in self._by_leg:
            return self._by_leg[leg_id]
        for span in range(1, self.spans + 1):
            for channel in range(1, self.channels_per_span + 1):
                if (span, channel) not in self._busy:
                    self._busy[(span, channel)] = leg_id
                    self._by_leg[leg_id] = (span, channel)
                    return span, channel
        return None

    def release(self, leg_id: str) -> None:
        port = self._by_leg.pop(leg_id, None)
        if port is not None:
            del self._busy[port]

    def snapshot(self, *, down: bool) -> list[dict[str, object]]:
        """Every port as ``{"span", "channel", "state": idle|busy|down, "leg_id"}`` (busy wins over down)."""
        ports: list[dict[str, object]] = []
        for span in range(1, self.spans + 1):
            for channel in range(1, self.channels_per_span + 1):
                leg = self._busy.get((span, channel))
                state = "busy" if leg is not None else ("down" if down else "idle")
                ports.append({"span": span, "channel": channel, "state": state, "leg_id": leg})
        return ports


@dataclass
class _Gateway:
    up: bool = True
    misses: int = 0
    probe: int = 0
    probe_sent: float | None = None
    last_reply: float | None = None


class GatewayHealth:
    """OPTIONS keepalive bookkeeping. Any response (even 404/405) proves the gateway alive; ``down_after``
    probes in a row without one mark it down, the next response marks it up again. Pure: ``now`` is passed in.
    """

    def __init__(self, gateways: Sequence[str], *, timeout_s: float, down_after: int = 2) -> None:
        self.timeout_s = timeout_s
        self.down_after = down_after
        self._gw = {g: _Gateway() for g in gateways}

    def is_up(self, gateway: str) -> bool:
        state = self._gw.get(gateway)
        return state is None or state.up

    def probe_sent(self, gateway: str, now: float) -> int:
        """Record an OPTIONS sent now; returns the probe number to hand back to :meth:`reply`."""
        state = self._gw.setdefault(gateway, _Gateway())
        if state.probe_sent is not None:  # the previous probe never came back
            self._miss(state)
        state.probe += 1
        state.probe_sent = now
        return state.probe

    def reply(self, gateway: str, probe: int, now: float) -> bool:
        """A response to probe ``probe`` arrived; returns True if this brought the gateway back up."""
        state = self._gw.get(gateway)
        if state is None or probe != state.probe:
            return False
        came_up = not state.up
        state.up, state.misses, state.probe_sent, state.last_reply = True, 0, None, now
        return came_up

    def expire(self, now: float) -> list[str]:
        """Count probes older than ``timeout_s`` as missed; returns gateways that just went down."""
        went_down = []
        for name, state in self._gw.items():
            if state.probe_sent is not None and now - state.probe_sent >= self.timeout_s:
                state.probe_sent = None
                if self._miss(state):
                    went_down.append(name)
        return went_down

    def _miss(self, state: _Gateway) -> bool:
        state.probe_sent = None
        state.misses += 1
        if state.up and state.misses >= self.down_after:
            state.up = False
            return True
        return False

    def snapshot(self) -> dict[str, bool]:
        return {name: state.up for name, state in self._gw.items()}
