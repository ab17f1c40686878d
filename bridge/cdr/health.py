"""Health of one delivery target: retry backoff and when to send the down / recovered mails. Pure.

Theory of operation. Each push attempt to a target ends in :class:`Delivered` or :class:`Failed`;
:meth:`TargetHealth.handle` moves the target between three states and returns the mails to send:

    UP       --Failed-->     FAILING  (failing_since = now; retry after backoff)
    FAILING  --Failed-->     FAILING, or DOWN + AlertDown once now - failing_since >= alert_after_s
    FAILING  --Delivered-->  UP       (a short blip: nobody was alerted, nobody needs a recovery mail)
    DOWN     --Failed-->     DOWN
    DOWN     --Delivered-->  UP + AlertRecovered
    UP       --Delivered-->  UP

A refused host key is not a blip but a possible attack (or a re-installed server): it goes to DOWN and
alerts at once. :meth:`TargetHealth.tick` applies the threshold between attempts too (:class:`Tick`), so
an alert does not wait for the next attempt. Backoff doubles from ``retry_min_s`` up to ``retry_max_s``.
"""

from __future__ import annotations

import datetime as dt
import enum
import logging
from dataclasses import dataclass

from bridge.cdr import CdrError
from bridge.ratelimit import backoff_ceiling

log = logging.getLogger(__name__)


class TargetState(enum.Enum):
    UP = "up"
    FAILING = "failing"
    DOWN = "down"


@dataclass(frozen=True)
class HealthEvent:
    now: dt.datetime


@dataclass(frozen=True)
class Delivered(HealthEvent):
    pass


@dataclass(frozen=True)
class Failed(HealthEvent):
    error: str
    security: bool = False
    """The host key was refused: alert at once."""


@dataclass(frozen=True)
class Tick(HealthEvent):
    pass


@dataclass(frozen=True)
class Alert:
    target: str
    since: dt.datetime


@dataclass(frozen=True)
class AlertDown(Alert):
    error: str


@dataclass(frozen=True)
class AlertRecovered(Alert):
    now: dt.datetime


# (state, event type) -> allowed next states; anything else is a bug and raises.
TRANSITIONS: dict[tuple[TargetState, type[HealthEvent]], frozenset[TargetState]] = {
    (TargetState.UP, Delivered): frozenset({TargetState.UP}),
    (TargetState.UP, Failed): frozenset({TargetState.FAILING, TargetState.DOWN}),
    (TargetState.UP, Tick): frozenset({TargetState.UP}),
    (TargetState.FAILING, Delivered): frozenset({TargetState.UP}),
    (TargetState.FAILING, Failed): frozenset({TargetState.FAILING, TargetState.DOWN}),
    (TargetState.FAILING, Tick): frozenset({TargetState.FAILING, TargetState.DOWN}),
    (TargetState.DOWN, Delivered): frozenset({TargetState.UP}),
    (TargetState.DOWN, Failed): frozenset({TargetState.DOWN}),
    (TargetState.DOWN, Tick): frozenset({TargetState.DOWN}),
}


@dataclass(frozen=True)
class HealthSnapshot:
    """Everything :class:`TargetHealth` knows, to keep it across restarts (``CdrTargetHealth`` rows)."""

    state: TargetState
    failing_since: dt.datetime | None
    failures: int
    next_attempt_at: dt.datetime | None
    last_error: str


class HealthError(CdrError):
    """An event the transition table does not allow (a bug in the caller)."""


class TargetHealth:
    """Backoff and alert state of one target."""

    def __init__(self, name: str, *, alert_after_s: float, retry_min_s: float = 60.0, retry_max_s: float = 900.0):
        self.name = name
        self.alert_after = dt.timedelta(seconds=alert_after_s)
        self.retry_min_s = retry_min_s
        self.retry_max_s = retry_max_s
        self.state = TargetState.UP
        self.failing_since: dt.datetime | None = None
        self.failures = 0
        self.next_attempt_at: dt.datetime | None = None
        self.last_error = ""

    def snapshot(self) -> HealthSnapshot:
        return HealthSnapshot(self.state, self.failing_since, self.failures, self.next_attempt_at, self.last_error)

    def restore(self, snapshot: HealthSnapshot) -> None:
        """Continue from a snapshot (after a restart): an outage already alerted is not alerted again."""
        self.state = snapshot.state
        self.failing_since = snapshot.failing_since if snapshot.state is not TargetState.UP else None
        self.failures = max(0, snapshot.failures)
        self.next_attempt_at = snapshot.next_attempt_at
        self.last_error = snapshot.last_error

    def due(self, now: dt.datetime) -> bool:
        """May we try this target now (not inside a backoff delay)?"""
        return self.next_attempt_at is None or now >= self.next_attempt_at

    def tick(self, now: dt.datetime) -> list[Alert]:
        return self.handle(Tick(now))

    def handle(self, event: HealthEvent) -> list[Alert]:
        """Apply one event; returns the mails to send."""
        alerts: list[Alert] = []
        new = self.state
        if isinstance(event, Delivered):
            if self.state is TargetState.DOWN and self.failing_since is not None:
                alerts.append(AlertRecovered(self.name, self.failing_since, event.now))
            new = TargetState.UP
            self.failing_since, self.failures, self.next_attempt_at, self.last_error = None, 0, None, ""
        elif isinstance(event, Failed):
            self.failures += 1
            self.last_error = event.error
            if self.failing_since is None:
                self.failing_since = event.now
            delay = backoff_ceiling(self.failures, self.retry_min_s, self.retry_max_s)
            self.next_attempt_at = event.now + dt.timedelta(seconds=delay)
            new = TargetState.FAILING if self.state is TargetState.UP else self.state
            if new is TargetState.FAILING and (event.security or event.now - self.failing_since >= self.alert_after):
                new = TargetState.DOWN
                alerts.append(AlertDown(self.name, self.failing_since, self.last_error))
        elif isinstance(event, Tick):
            if (
                self.state is TargetState.FAILING
                and self.failing_since is not None
                and event.now - self.failing_since >= self.alert_after
            ):
                new = TargetState.DOWN
                alerts.append(AlertDown(self.name, self.failing_since, self.last_error))
        self._set_state(event, new)
        return alerts

    def _set_state(self, event: HealthEvent, new: TargetState) -> None:
        allowed = TRANSITIONS.get((self.state, type(event)), frozenset())
        if new not in allowed:
            raise HealthError(f"{self.name}: {self.state.value} -> {new.value} on {type(event).__name__} not allowed")
        if new is not self.state:
            log.info("CDR target %s: %s -> %s", self.name, self.state.value, new.value)
        self.state = new
