"""The bind state machine of one SMPP session (SMPP 3.4 §2.2-2.4, §4.1, §4.2, §4.11).

Theory of operation: an ESME opens a TCP connection (``CONNECTING``), sends bind_transceiver /
bind_receiver / bind_transmitter and waits for the response (``BINDING``), and is then ``BOUND``: it
exchanges submit_sm / deliver_sm and sends enquire_link every ``enquire_link_s``. Any missing response,
garbage PDU, closed socket or unbind from the SMSC means the link is lost; the session then ``WAITING``
for a back-off delay (capped exponential with jitter, reset once bound) before connecting again. A
refused bind is treated the same way: passwords get fixed, SMSCs come back. ``stop`` from ``BOUND`` goes
through ``UNBINDING`` (unbind -> unbind_resp) so the SMSC does not queue for a dead ESME.

The machine is pure: the glue feeds it :class:`BindEvent` with ``now`` and reads ``retry_at``.
"""

from __future__ import annotations

import enum
import logging
import random

from bridge.ratelimit import Backoff
from bridge.smpp.errors import StateError

log = logging.getLogger(__name__)


class BindState(enum.Enum):
    CLOSED = "closed"
    CONNECTING = "connecting"
    BINDING = "binding"
    BOUND = "bound"
    UNBINDING = "unbinding"
    WAITING = "waiting"
    STOPPED = "stopped"


class BindEvent(enum.Enum):
    START = "start"
    CONNECTED = "connected"
    CONNECT_FAILED = "connect_failed"
    BIND_OK = "bind_ok"
    BIND_REFUSED = "bind_refused"
    LINK_LOST = "link_lost"
    RETRY = "retry"
    STOP = "stop"
    UNBOUND = "unbound"


S, E = BindState, BindEvent
TRANSITIONS: dict[BindState, dict[BindEvent, BindState]] = {
    S.CLOSED: {E.START: S.CONNECTING, E.STOP: S.STOPPED},
    S.CONNECTING: {E.CONNECTED: S.BINDING, E.CONNECT_FAILED: S.WAITING, E.STOP: S.STOPPED},
    S.BINDING: {E.BIND_OK: S.BOUND, E.BIND_REFUSED: S.WAITING, E.LINK_LOST: S.WAITING, E.STOP: S.STOPPED},
    S.BOUND: {E.LINK_LOST: S.WAITING, E.STOP: S.UNBINDING},
    S.UNBINDING: {E.UNBOUND: S.STOPPED, E.LINK_LOST: S.STOPPED, E.STOP: S.UNBINDING},
    S.WAITING: {E.RETRY: S.CONNECTING, E.STOP: S.STOPPED},
    S.STOPPED: {E.STOP: S.STOPPED},
}
del S, E


class BindMachine:
    """One session's bind state, the time it entered it, and when to retry after a failure."""

    def __init__(self, *, name: str, reconnect_min_s: float, reconnect_max_s: float, rng: random.Random) -> None:
        self.name = name
        self.state = BindState.CLOSED
        self.since = 0.0
        self.retry_at: float | None = None
        self.reason = ""
        self.backoff = Backoff(reconnect_min_s, reconnect_max_s, rng)

    def handle(self, event: BindEvent, now: float, reason: str = "") -> BindState:
        """Apply ``event``; raises :class:`StateError` if the table does not allow it here."""
        target = TRANSITIONS[self.state].get(event)
        if target is None:
            raise StateError(f"{self.name}: {event.value} is not allowed in state {self.state.value}")
        if reason:
            self.reason = reason
        if target is BindState.WAITING:
            self.retry_at = now + self.backoff.next_delay()
        elif target is BindState.BOUND:
            self.backoff.reset()
            self.retry_at = None
            self.reason = ""
        self._set_state(target, now, reason)
        return target

    def _set_state(self, state: BindState, now: float, reason: str) -> None:
        if state is self.state:
            return
        if state is BindState.WAITING:
            log.warning(
                "smpp %s: %s -> %s (%s); retry in %.1f s",
                self.name,
                self.state.value,
                state.value,
                reason or "?",
                (self.retry_at or now) - now,
            )
        else:
            log.info("smpp %s: %s -> %s%s", self.name, self.state.value, state.value, f" ({reason})" if reason else "")
        self.state = state
        self.since = now


def address_range(short_codes: list[str]) -> str:
    """The bind's address_range (a regular expression in SMPP 3.4 §5.2.7, at most 40 characters)."""
    if len(short_codes) == 1:
        return short_codes[0][:40]
    pattern = "^(" + "|".join(short_codes) + ")$"
    if len(pattern) > 40:
        log.warning("smpp: %d short codes do not fit in address_range; binding without one", len(short_codes))
        return ""
    return pattern
