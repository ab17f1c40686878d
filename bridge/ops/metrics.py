"""Prometheus metrics on ``[metrics] listen``: a custom collector that reads the engine at scrape time.

Nothing in the services is instrumented: at each scrape :class:`BridgeCollector` asks for a :class:`Snapshot`
(the engine's ``status()`` and live conferences, taken on the loop thread, plus the few counters the engine's
hooks keep: tick times, call set-ups and failures, RTP packet totals, alarms) and for the database
:class:`~bridge.ops.readings.Readings` (taken in the scrape thread), and turns them into metric families.
A scrape never blocks the media tick for more than the time ``status()`` takes.

The accumulators here (:class:`TickTimes`, :class:`CallCounts`, :class:`PacketTotals`) are pure and are fed on
the loop thread only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from bridge.ops.readings import Readings

log = logging.getLogger(__name__)

TICK_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1)
"""Seconds; the media budget of one tick is 20 ms, a healthy tick takes well under 2 ms."""


class Histogram:
    """Cumulative-bucket histogram (Prometheus layout), observed on one thread, copied for a scrape."""

    def __init__(self, buckets: tuple[float, ...] = TICK_BUCKETS) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)  # the last one is +Inf
        self.total = 0.0

    def observe(self, value: float) -> None:
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1
                break
        else:
            self.counts[-1] += 1
        self.total += value

    def cumulative(self) -> list[tuple[str, float]]:
        out, running = [], 0
        for bound, count in zip([*map(str, self.buckets), "+Inf"], self.counts, strict=True):
            running += count
            out.append((bound, float(running)))
        return out

    def copy(self) -> Histogram:
        clone = Histogram(self.buckets)
        clone.counts, clone.total = list(self.counts), self.total
        return clone


@dataclass
class TickTimes:
    duration: Histogram = field(default_factory=Histogram)
    lateness: Histogram = field(default_factory=Histogram)

    def observe(self, duration: float, lateness: float) -> None:
        self.duration.observe(duration)
        self.lateness.observe(lateness)

    def copy(self) -> TickTimes:
        return TickTimes(self.duration.copy(), self.lateness.copy())


@dataclass
class CallCounts:
    """Outbound call set-ups (answered) per trunk group and failures per trunk group and cause."""

    setup: dict[str, int] = field(default_factory=dict)
    failed: dict[tuple[str, str], int] = field(default_factory=dict)

    def answered(self, trunk_group: str) -> None:
        self.setup[trunk_group] = self.setup.get(trunk_group, 0) + 1

    def failure(self, trunk_group: str, status: int) -> None:
        key = (trunk_group, str(status) if status else "no response")
        self.failed[key] = self.failed.get(key, 0) + 1

    def copy(self) -> CallCounts:
        return CallCounts(dict(self.setup), dict(self.failed))


@dataclass
class PacketTotals:
    """Monotonic RTP totals from per-endpoint counters: an endpoint that goes away leaves its last values."""

    closed: dict[str, int] = field(default_factory=lambda: {"packets_in": 0, "packets_out": 0, "lost": 0})
    live: dict[str, dict[str, int]] = field(default_factory=dict)

    def update(self, current: Mapping[str, Mapping[str, Any]]) -> dict[str, int]:
        for key in [k for k in self.live if k not in current]:
            for name, value in self.live.pop(key).items():
                self.closed[name] += value
        for key, stats in current.items():
            self.live[key] = {name: int(stats.get(name, 0) or 0) for name in self.closed}
        return {name: self.closed[name] + sum(s[name] for s in self.live.values()) for name in self.closed}


@dataclass(frozen=True)
class Snapshot:
    """What the loop thread hands the scrape thread (copies, never live objects)."""

    status: Mapping[str, Any]
    conferences: Sequence[Mapping[str, Any]]
    ticks: TickTimes
    calls: CallCounts
    packets: Mapping[str, int]
    alarms: list[tuple[str, str]]
    watchdog_pings: int


class BridgeCollector(Collector):
    """``snapshot()`` returns None when the engine did not answer in time: then only ``bridge_up 0``."""

    def __init__(self, snapshot: Callable[[], Snapshot | None], readings: Callable[[], Readings | None]) -> None:
        self.snapshot = snapshot
        self.readings = readings

    def collect(self) -> Iterator[Metric]:
        snap = self.snapshot()
        yield _gauge("bridge_up", "1 when the engine answered this scrape", 1 if snap is not None else 0)
        if snap is not None:
            yield from engine_families(snap)
        try:
            readings = self.readings()
        except Exception as exc:  # a database that is down must not hide the engine's metrics
            log.warning("metrics: database readings failed: %s", exc)
            readings = None
        if readings is not None:
            yield from reading_families(readings)


def _gauge(name: str, doc: str, value: float, labels: Mapping[str, str] | None = None) -> GaugeMetricFamily:
    if labels is None:
        return GaugeMetricFamily(name, doc, value=value)
    family = GaugeMetricFamily(name, doc, labels=list(labels))
    family.add_metric(list(labels.values()), value)
    return family


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


def engine_families(snap: Snapshot) -> Iterable[Metric]:
    status = snap.status
    mixer = status.get("mixer") or {}
    yield _gauge("bridge_uptime_seconds", "Seconds since the engine started", float(status.get("uptime_s", 0)))
    yield _gauge("bridge_conferences", "Conferences running", float(mixer.get("conferences", 0)))
    legs = GaugeMetricFamily("bridge_legs", "Legs of the running conferences by status", labels=["status"])
    by_status: dict[str, int] = {"connected": 0}
    for conference in snap.conferences:
        for leg in conference.get("legs", []):
            by_status[str(leg.get("status"))] = by_status.get(str(leg.get("status")), 0) + 1
    for leg_status, count in sorted(by_status.items()):
        legs.add_metric([leg_status], count)
    yield legs
    yield _gauge("bridge_legs_talking", "Connected legs talking now", float(sum(
        1 for c in snap.conferences for leg in c.get("legs", []) if leg.get("talking"))))  # fmt: skip
    yield from _tick_families(snap)
    yield from _call_families(snap)
    for name, doc in (("packets_in", "RTP packets received"), ("packets_out", "RTP packets sent"),
                      ("lost", "RTP packets lost (RTCP-style, from sequence numbers)")):  # fmt: skip
        yield _counter(f"bridge_rtp_{name if name != 'lost' else 'packets_lost'}", doc, snap.packets.get(name, 0))
    yield from _smpp_families(status.get("smpp") or {})
    yield from _ha_families(status)
    alarms = GaugeMetricFamily("bridge_alarm_active", "Alarms raised now (1 per alarm and subject)",
                               labels=["alarm", "subject"])  # fmt: skip
    for alarm, subject in snap.alarms:
        alarms.add_metric([alarm, subject], 1)
    yield alarms
    yield _counter("bridge_watchdog_pings", "WATCHDOG=1 notifications sent to systemd", snap.watchdog_pings)


def _tick_families(snap: Snapshot) -> Iterable[Metric]:
    mixer = snap.status.get("mixer") or {}
    for name, hist, doc in (
        ("bridge_tick_duration_seconds", snap.ticks.duration, "Time one media tick took (read, mix, write, timers)"),
        ("bridge_tick_lateness_seconds", snap.ticks.lateness, "How late a media tick started after its deadline"),
    ):
        family = HistogramMetricFamily(name, doc)
        family.add_metric([], hist.cumulative(), sum_value=hist.total)
        yield family
    yield _counter("bridge_ticks_late", "Media ticks that started late", float(mixer.get("late_ticks", 0)))
    yield _counter("bridge_ticks_skipped", "Media ticks skipped to catch up", float(mixer.get("skipped_ticks", 0)))
    yield _gauge("bridge_mixer_participants", "Participants in the mixer", float(mixer.get("mixer_participants", 0)))


def _call_families(snap: Snapshot) -> Iterable[Metric]:
    setup = CounterMetricFamily("bridge_calls_setup", "Outbound calls answered", labels=["trunk_group"])
    for group, count in sorted(snap.calls.setup.items()):
        setup.add_metric([group], count)
    yield setup
    failed = CounterMetricFamily("bridge_calls_failed", "Outbound calls that never connected, by final SIP status",
                                 labels=["trunk_group", "cause"])  # fmt: skip
    for (group, cause), count in sorted(snap.calls.failed.items()):
        failed.add_metric([group, cause], count)
    yield failed
    sip = snap.status.get("sip") or {}
    gateways = GaugeMetricFamily("bridge_trunk_gateway_up", "1 when the gateway answers OPTIONS",
                                 labels=["trunk_group", "gateway"])  # fmt: skip
    for group in sip.get("trunk_groups", []):
        for gateway in group.get("gateways", []):
            gateways.add_metric([str(group.get("name")), str(gateway.get("address"))], 1 if gateway.get("up") else 0)
    yield gateways
    yield _gauge("bridge_sip_legs", "SIP legs alive in the SIP service", float(sip.get("legs", 0) or 0))
    for key in ("dialed", "incoming", "route_advances"):
        yield _counter(f"bridge_sip_{key}", f"SIP service counter {key}", float(sip.get(key, 0) or 0))


def _smpp_families(smpp: Mapping[str, Any]) -> Iterable[Metric]:
    state = str(smpp.get("state", "disabled"))
    yield _gauge("bridge_smpp_bound", "1 when every SMPP session is bound", 1 if state == "bound" else 0)
    yield _gauge("bridge_smpp_state", "The SMPP bind state (value 1)", 1, {"state": state})
    for key, name, doc in (("mo", "mo", "MO messages received"), ("mt", "mt", "MT messages submitted"),
                           ("dlr", "delivery_receipts", "Delivery receipts received"),
                           ("failed", "mt_failed", "MT messages that failed")):  # fmt: skip
        yield _counter(f"bridge_smpp_{name}", doc, float(smpp.get(key, 0) or 0))
    yield _gauge("bridge_smpp_queue_depth", "MT parts waiting to be submitted", float(smpp.get("outbox", 0) or 0))
    yield _gauge("bridge_smpp_in_flight", "submit_sm awaiting a response", float(smpp.get("in_flight", 0) or 0))


def _ha_families(status: Mapping[str, Any]) -> Iterable[Metric]:
    ha = status.get("ha") or {}
    yield _gauge("bridge_ha_role", "This node's HA role (value 1)", 1, {"role": str(status.get("role", "active"))})
    silence = ha.get("peer_silence_s")
    yield _gauge("bridge_ha_heartbeat_age_seconds", "Seconds since the HA peer's last heartbeat (0 without HA)",
                 float(silence) if isinstance(silence, int | float) else 0.0)  # fmt: skip


def reading_families(readings: Readings) -> Iterable[Metric]:
    pending = GaugeMetricFamily("bridge_cdr_files_pending", "CDR files not yet delivered", labels=["target"])
    oldest = GaugeMetricFamily("bridge_cdr_oldest_pending_age_seconds", "Age of the oldest undelivered CDR file",
                               labels=["target"])  # fmt: skip
    for backlog in readings.cdr:
        pending.add_metric([backlog.target], backlog.pending)
        oldest.add_metric([backlog.target], backlog.oldest_age_s)
    yield pending
    yield oldest
    yield _counter("bridge_portal_lockouts", "Portal account lockouts (event log)", readings.portal.lockouts)
    yield _gauge("bridge_portal_accounts_locked", "Portal accounts locked now", readings.portal.locked_accounts)
    yield _gauge("bridge_portal_failed_logins", "Failed portal sign-ins not yet reset", readings.portal.failed_logins)
    if readings.disk is not None:
        yield _gauge("bridge_disk_used_percent", "Use of the data directory's file system", readings.disk.used_percent)
        yield _gauge("bridge_disk_free_bytes", "Free bytes on the data directory's disk", readings.disk.free_bytes)


def registry_for(collector: Collector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


def metric_names(registry: CollectorRegistry) -> set[str]:
    """Every sample name the registry exposes (with ``_total``/``_bucket``... suffixes), for the dashboard test."""
    return {sample.name for family in registry.collect() for sample in family.samples}
