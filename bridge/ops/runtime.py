"""The engine's operations side: the few hooks :class:`bridge.engine.Engine` calls, and everything behind them.

* ``timed(tick)`` wraps the media tick: its duration and lateness go to the tick histograms, and the systemd
  watchdog is pinged from it (so a tick that hangs stops the pings and systemd restarts the engine).
* ``observe_sip(on_event)`` wraps the SIP events' consumer: call set-ups and failures are counted per trunk group
  (and cause), and every line logged while an event is handled carries its run, leg and Call-ID.
* ``start()`` (the engine is up): the Prometheus exporter on ``[metrics] listen``, then ``READY=1``.
* ``housekeeping()`` (every alive interval): the alarms, from ``status()`` and the database readings.
* ``stop()``: ``STOPPING=1``, the exporter closed.

It reads the engine only through ``status()``, ``conferences()``, ``sip.legs()``/``sip.media_endpoint()`` and
``service.legs``; it never changes it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from sqlalchemy.orm import Session, sessionmaker

from bridge.cdr.alerts import SmtpMailer
from bridge.conference.service import ConferenceService
from bridge.config import Config, parse_host_port
from bridge.db.models import EventLog, utcnow
from bridge.listeners import StartError, cannot_bind
from bridge.mixer.clock import Tick
from bridge.ops import readings as readings_module
from bridge.ops import systemd
from bridge.ops.alarms import AlarmEvaluator, AlarmEvent, AlarmRaised, render_alarm
from bridge.ops.logs import log_context
from bridge.ops.metrics import BridgeCollector, CallCounts, PacketTotals, Snapshot, TickTimes, registry_for
from bridge.ops.readings import Readings


class EngineView(Protocol):
    """What the operations side reads of :class:`bridge.engine.Engine` (a protocol, so ``bridge.ops`` does not
    import the engine that imports it)."""

    config: Config
    states: dict[str, str]
    sip: Any
    service: ConferenceService | None
    session_factory: sessionmaker[Session]

    def status(self) -> dict[str, Any]: ...

    def conferences(self) -> list[dict[str, Any]]: ...

log = logging.getLogger(__name__)

SNAPSHOT_TIMEOUT_S = 2.0
"""A scrape waits this long for the loop thread; an engine stuck longer scrapes as ``bridge_up 0``."""


class Operations:
    def __init__(self, engine: EngineView, *, mailer: Any = None) -> None:
        self.engine = engine
        self.config = engine.config
        self.ticks = TickTimes()
        self.calls = CallCounts()
        self.packets = PacketTotals()
        self.alarms = AlarmEvaluator(self.config.metrics)
        self.mailer = mailer if mailer is not None else SmtpMailer(self.config.alerts)
        self.watchdog = systemd.Watchdog.from_environment()
        self.metrics_port: int | None = None
        self._server: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # --- hooks ---------------------------------------------------------------------------------

    def timed(self, callback: Callable[[Tick], None]) -> Callable[[Tick], None]:
        perf = time.perf_counter

        def tick(t: Tick) -> None:
            started = perf()
            try:
                callback(t)
            finally:
                self.ticks.observe(perf() - started, t.lateness)
                self.watchdog.tick(started)

        return tick

    def observe_sip(self, forward: Callable[[Any], None]) -> Callable[[Any], None]:
        from bridge.sip.events import LegAnswered, LegFailed

        def on_event(event: Any) -> None:
            leg = event.leg
            if leg.direction == "out" and isinstance(event, LegAnswered):
                self.calls.answered(leg.trunk_group or "none")
            elif leg.direction == "out" and isinstance(event, LegFailed):
                self.calls.failure(leg.trunk_group or "none", event.status)
            run, leg_id = self._conference_leg(leg)
            with log_context(run=run, leg=leg_id, call_id=leg.call_id):
                forward(event)

        return on_event

    def start(self) -> None:
        """The exporter, then ``READY=1``; raises the engine's ``StartError`` if ``metrics.listen`` cannot bind."""
        self._loop = asyncio.get_running_loop()
        if self.config.metrics.listen:
            self._start_exporter()
        states = self.engine.states
        systemd.ready(", ".join(f"{k}={v}" for k, v in states.items()))
        if self.watchdog.enabled:
            log.info("systemd watchdog: pinging every %.1f s from the media tick", self.watchdog.interval)

    async def housekeeping(self) -> None:
        """Evaluate the alarms; raise/clear go to the log, the event log and e-mail (off the loop thread)."""
        loop = asyncio.get_running_loop()
        try:
            readings = await loop.run_in_executor(None, self.readings)
            events = self.alarms.evaluate(self.engine.status(), readings, loop.time())
            if events:
                await loop.run_in_executor(None, self._report, events)
        except Exception:
            log.exception("alarm evaluation failed")

    def stop(self) -> None:
        systemd.stopping()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    # --- metrics -------------------------------------------------------------------------------

    def _start_exporter(self) -> None:
        from prometheus_client import start_http_server

        host, port = parse_host_port(self.config.metrics.listen, "metrics.listen")
        registry = registry_for(BridgeCollector(self.snapshot_threadsafe, self.readings))
        try:
            self._server, _thread = start_http_server(port, host, registry)
        except OSError as exc:
            raise StartError(cannot_bind("metrics.listen", (host, port), exc)) from exc
        self.metrics_port = int(self._server.server_address[1])
        self.engine.states["metrics"] = f"http://{host}:{self.metrics_port}/metrics"

    def snapshot(self) -> Snapshot:
        """On the loop thread: copies of everything a scrape shows."""
        engine = self.engine
        return Snapshot(
            status=engine.status(),
            conferences=engine.conferences() if engine.service is not None else [],
            ticks=self.ticks.copy(),
            calls=self.calls.copy(),
            packets=self.packets.update(self._endpoint_stats()),
            alarms=[(a.alarm, a.subject) for a in self.alarms.active()],
            watchdog_pings=self.watchdog.pings,
        )

    def snapshot_threadsafe(self) -> Snapshot | None:
        """From the scrape thread: the snapshot taken on the loop thread, or None if the loop does not answer."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return None
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:  # the scrape thread has no loop of its own
            running = None
        if running is loop:
            return self.snapshot()
        future: concurrent.futures.Future[Snapshot] = concurrent.futures.Future()

        def fill() -> None:
            try:
                future.set_result(self.snapshot())
            except Exception as exc:
                future.set_exception(exc)

        loop.call_soon_threadsafe(fill)
        try:
            return future.result(SNAPSHOT_TIMEOUT_S)
        except concurrent.futures.TimeoutError:
            return None
        except Exception:
            log.exception("metrics snapshot failed")
            return None

    def readings(self) -> Readings:
        now = utcnow()
        with self.engine.session_factory() as session:
            return readings_module.take(session, self.config.cdr.targets, self.config.data_path, now)

    def _endpoint_stats(self) -> dict[str, dict[str, Any]]:
        sip = self.engine.sip
        if sip is None:
            return {}
        out: dict[str, dict[str, Any]] = {}
        for leg in sip.legs():
            endpoint = sip.media_endpoint(leg)
            if endpoint is not None and hasattr(endpoint, "stats"):
                out[leg.leg_id] = endpoint.stats()
        return out

    def _conference_leg(self, sip_leg: Any) -> tuple[int | None, int | None]:
        service = self.engine.service
        if service is None:
            return None, None
        for live in service.legs.values():
            if live.sip is sip_leg:
                return live.run_id, live.leg_id
        return None, None

    # --- alarms --------------------------------------------------------------------------------

    def _report(self, events: list[AlarmEvent]) -> None:
        node = self.config.node.name
        with self.engine.session_factory() as session:
            for event in events:
                verb = "raised" if isinstance(event, AlarmRaised) else "cleared"
                subject = f" {event.subject}" if event.subject else ""
                line = f"alarm {verb}: {event.alarm}{subject}: {event.detail}"
                (log.warning if verb == "raised" else log.info)("%s", line)
                session.add(EventLog(kind=f"alarm_{verb}", detail=line, at=utcnow()))
            session.commit()
        for event in events:
            self.mailer.send(*render_alarm(event, node=node))
