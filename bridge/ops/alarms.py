"""Alarms the operator cares about, evaluated from the engine's status and the readings. Pure: ``now`` is passed in.

Theory of operation. Every evaluation turns the inputs into a set of *conditions*, each keyed by
``(alarm, subject)`` (``("trunk_gateway_down", "sip-main/10.0.0.1:5060")``) with a hold time: the condition must
stay true for that long before the alarm is raised (``smpp_unbound`` waits ``smpp_unbound_alarm_s``; a gateway the
OPTIONS probe marks down is raised at once, the probe has its own hysteresis). Per key:

    CLEAR   --condition true-->   PENDING (since = now)
    PENDING --true, held long enough-->  RAISED + AlarmRaised
    PENDING --false-->            CLEAR
    RAISED  --false-->            CLEAR + AlarmCleared

Tick overruns are counted over a sliding minute of the engine's ``late_ticks + skipped_ticks`` counters.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bridge.config import MetricsConfig
from bridge.ops.readings import Readings

OVERRUN_WINDOW_S = 60.0


class AlarmState(enum.Enum):
    CLEAR = "clear"
    PENDING = "pending"
    RAISED = "raised"


@dataclass(frozen=True)
class AlarmEvent:
    alarm: str
    subject: str
    detail: str


@dataclass(frozen=True)
class AlarmRaised(AlarmEvent):
    since: float
    """When the condition was first seen (the evaluator's clock)."""


@dataclass(frozen=True)
class AlarmCleared(AlarmEvent):
    lasted_s: float


@dataclass(frozen=True)
class Condition:
    alarm: str
    subject: str
    detail: str
    hold_s: float = 0.0


class AlarmEvaluator:
    """Keeps each alarm's state between evaluations; :meth:`evaluate` returns what was raised or cleared."""

    def __init__(self, settings: MetricsConfig) -> None:
        self.settings = settings
        self._since: dict[tuple[str, str], float] = {}
        self._raised: dict[tuple[str, str], AlarmRaised] = {}
        self._overruns: deque[tuple[float, int]] = deque()

    def active(self) -> list[AlarmRaised]:
        return list(self._raised.values())

    def state(self, alarm: str, subject: str = "") -> AlarmState:
        key = (alarm, subject)
        if key in self._raised:
            return AlarmState.RAISED
        return AlarmState.PENDING if key in self._since else AlarmState.CLEAR

    def evaluate(self, status: Mapping[str, Any], readings: Readings, now: float) -> list[AlarmEvent]:
        conditions = {(c.alarm, c.subject): c for c in self.conditions(status, readings, now)}
        events: list[AlarmEvent] = []
        for key, condition in conditions.items():
            since = self._since.setdefault(key, now)
            if key not in self._raised and now - since >= condition.hold_s:
                raised = AlarmRaised(condition.alarm, condition.subject, condition.detail, since)
                self._raised[key] = raised
                events.append(raised)
        for key in [k for k in self._since if k not in conditions]:
            since = self._since.pop(key)
            raised_event = self._raised.pop(key, None)
            if raised_event is not None:
                events.append(AlarmCleared(key[0], key[1], f"{key[0]} cleared", now - since))
        return events

    def conditions(self, status: Mapping[str, Any], readings: Readings, now: float) -> list[Condition]:
        """Everything that is wrong right now, with how long it must last before it is an alarm."""
        s = self.settings
        out: list[Condition] = []
        smpp = status.get("smpp") or {}
        state = str(smpp.get("state", "disabled"))
        if state not in ("bound", "disabled"):
            reason = smpp.get("reason") or ""
            out.append(Condition("smpp_unbound", "", f"SMPP link {state}{f': {reason}' if reason else ''}",
                                 s.smpp_unbound_alarm_s))  # fmt: skip
        for group in (status.get("sip") or {}).get("trunk_groups", []):
            for gateway in group.get("gateways", []):
                if not gateway.get("up", True):
                    subject = f"{group.get('name')}/{gateway.get('address')}"
                    out.append(Condition("trunk_gateway_down", subject, f"gateway {subject} does not answer OPTIONS"))
        for backlog in readings.cdr:
            if backlog.pending and backlog.oldest_age_s >= s.cdr_behind_alarm_s:
                detail = f"{backlog.pending} CDR file(s) for {backlog.target}, oldest {backlog.oldest_age_s:.0f} s"
                out.append(Condition("cdr_delivery_behind", backlog.target, detail))
        if readings.disk is not None and readings.disk.used_percent >= s.disk_alarm_percent:
            disk = readings.disk
            out.append(Condition("disk_filling", disk.path, f"{disk.path} {disk.used_percent:.1f}% full"))
        overruns = self._overruns_last_minute(status.get("mixer") or {}, now)
        if overruns > s.tick_overrun_alarm:
            out.append(Condition("tick_overruns", "", f"{overruns} late or skipped media ticks in the last minute"))
        ha = status.get("ha") or {}
        silence = ha.get("peer_silence_s")
        if isinstance(silence, int | float) and silence >= s.ha_peer_lost_alarm_s:
            out.append(Condition("ha_peer_lost", str(ha.get("peer", "")), f"HA peer silent for {silence:.1f} s"))
        return out

    def _overruns_last_minute(self, mixer: Mapping[str, Any], now: float) -> int:
        total = int(mixer.get("late_ticks", 0) or 0) + int(mixer.get("skipped_ticks", 0) or 0)
        self._overruns.append((now, total))
        while len(self._overruns) > 1 and self._overruns[1][0] <= now - OVERRUN_WINDOW_S:
            self._overruns.popleft()
        return total - self._overruns[0][1]


def render_alarm(event: AlarmEvent, *, node: str) -> tuple[str, str]:
    """Subject and body of the alarm mail (pure)."""
    what = f"{event.alarm}{f' {event.subject}' if event.subject else ''}"
    if isinstance(event, AlarmCleared):
        return f"[bridge {node}] CLEARED {what}", f"{what} cleared after {event.lasted_s:.0f} s.\n"
    return f"[bridge {node}] ALARM {what}", f"{event.detail}\n"
