"""The engine: one asyncio process that runs SMPP, SIP/RTP, the 20 ms mixer tick, the conference
service, CDR jobs and feed, the control API and (optionally) the portal subprocess.

Wiring (../shared/DESIGN.md "Data flow"):

* ``SmppService(on_actions=service.on_actions)``: SMS commands launch conferences and SMS blasts.
* ``SipService(on_event=service.on_sip_event)``: call events drive the conference machines and the IVR.
* One tick every 20 ms on absolute time (``bridge.mixer.clock.run_ticks``): the media owner's tick
  (:meth:`bridge.conference.media.MixerMedia.tick`: the previous tick's frames out, the RTP sockets read,
  one frame of every endpoint in, one batched mix; its talker events go to ``service.set_talking``); then
  the service's timers (``service.poll``).
* ``install_jobs`` (hourly CDR push etc.) on a background APScheduler; ``CdrFeed`` gets each new CDR id.
* The control API (``bridge.control``) on ``[control] listen``.

A service the config disables is not started; one that fails to start is logged with the reason and
the engine runs on without it (``/status`` shows it as ``disabled`` or ``failed: ...``), except a listener
that cannot bind (``sip.listen``, ``control.listen``, and ``cdr.feed_listen`` / ``web.listen`` when enabled):
then the start stops with :class:`StartError` naming the key and the address, since an engine without its
control API cannot even say what is wrong. Listeners start before the SMPP client, so a refused start has
not bound to the SMSC. SIGTERM/SIGINT end every conference (BYE to all, legs closed with CDRs), then stop
the services in reverse order.

Every ``ALIVE_INTERVAL_S`` the housekeeping loop stamps the instant the engine is alive (one single-row
UPDATE, off the loop thread); after a crash, :meth:`bridge.conference.records.Records.recover` ends the legs
left open at the last stamp, so at most that interval of a downtime is billed.

The portal is a child process that dies with the engine (``bridge.portal``); ``/status`` polls its real
state.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from typing import Any

from bridge import portal as portal_child
from bridge.api import child as api_child
from bridge.conference import ConferenceError, NotAllowed, UnknownLeg
from bridge.conference.interfaces import MediaEndpoint, SipPort
from bridge.conference.media import MixerMedia
from bridge.conference.service import ConferenceService, UnknownConference
from bridge.config import Config, ConfigError, expand_numbers, parse_host_port
from bridge.control import ApiError, ControlServer, control_token
from bridge.db.models import utcnow
from bridge.db.session import make_engine, make_session_factory
from bridge.dnis.served import ServedNumbers
from bridge.ha.errors import SwitchoverRefused
from bridge.ha.node import HaNode
from bridge.listeners import StartError, bind_error, cannot_bind
from bridge.mixer.clock import LatenessStats, Tick, run_ticks
from bridge.mixer.mixer import Mixer
from bridge.ops.runtime import Operations
from bridge.prompts import load_prompt
from bridge.rtp.poller import RtpPoller
from bridge.rtp.sender import prioritise
from bridge.sip.leg import SipLeg
from bridge.sip.media import batched_media

log = logging.getLogger(__name__)

ACCEPT_REFRESH_S = 10.0
ALIVE_INTERVAL_S = 2.0
"""How often the engine stamps that it is alive: the most of a downtime a crash can bill to an open leg."""


class _NoSip:
    """Stands in for the SIP service when it is disabled or failed: every dial fails at once."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def dial(self, *, called: str, calling: str, trunk_group: str | None = None, display_name: str = "") -> SipLeg:
        raise ConferenceError(f"SIP is {self.reason}")

    def answer(self, leg: SipLeg) -> None:  # pragma: no cover - no inbound calls without SIP
        raise ConferenceError(f"SIP is {self.reason}")

    def reject(self, leg: SipLeg, status: int, reason: str) -> None:  # pragma: no cover
        pass

    def hangup(self, leg: SipLeg, cause: str = "normal") -> None:  # pragma: no cover
        pass

    def media_endpoint(self, leg: SipLeg) -> MediaEndpoint | None:  # pragma: no cover
        return None

    def first_group(self, number: str) -> str | None:
        return None


class _SipSwitch:
    """The SIP port the conference service holds; points at the real service once it has started."""

    def __init__(self) -> None:
        self.target: SipPort = _NoSip("not started")

    def dial(self, *, called: str, calling: str, trunk_group: str | None = None, display_name: str = "") -> SipLeg:
        return self.target.dial(called=called, calling=calling, trunk_group=trunk_group, display_name=display_name)

    def answer(self, leg: SipLeg) -> None:
        self.target.answer(leg)

    def reject(self, leg: SipLeg, status: int, reason: str) -> None:
        self.target.reject(leg, status, reason)

    def hangup(self, leg: SipLeg, cause: str = "normal") -> None:
        self.target.hangup(leg, cause)

    def media_endpoint(self, leg: SipLeg) -> MediaEndpoint | None:
        return self.target.media_endpoint(leg)

    def first_group(self, number: str) -> str | None:
        return self.target.first_group(number)


class Engine:
    """``await Engine(config).start()`` ... ``await engine.stop()``; or ``await engine.run()`` until a signal."""

    def __init__(
        self, config: Config, *, portal_args: Sequence[str] | None = None, api_args: Sequence[str] | None = None,
        utc: Callable[[], dt.datetime] = utcnow, alive_interval_s: float = ALIVE_INTERVAL_S,
    ) -> None:  # fmt: skip
        """``portal_args``/``api_args``: the ``bridge`` command-line arguments that run the portal / the CRM XML API
        as child processes (the CLI that starts the engine knows them; the engine does not import the CLI);
        ``None``: no such child (the API also needs ``api.enabled``)."""
        self.config = config
        self.utc = utc
        """The wall clock of database stamps (naive UTC): alive stamps, leg and run times."""
        self.alive_interval_s = alive_interval_s
        self.portal_args = list(portal_args) if portal_args is not None and config.web.enabled else None
        self.db = make_engine(config.database_url)
        self.session_factory = make_session_factory(self.db)
        self.mixer = Mixer(hold_music=load_prompt("music"))  # music for a participant who is alone
        self.poller = RtpPoller()
        """Reads every leg's RTP socket at the start of each tick (no asyncio callback per datagram)."""
        self.batched = batched_media(config)
        """The shared-socket RTP path (``sip.media_path = "batched"``), else None: a socket per leg."""
        self.media = MixerMedia(self.mixer, poller=self.poller, batched=self.batched)
        """The one owner of media: participants <-> endpoints, and each tick's read / mix / write."""
        self.lateness = LatenessStats()
        self.sip_switch = _SipSwitch()
        self.service: ConferenceService | None = None
        self.sip: Any = None
        self.smpp: Any = None
        self.feed: Any = None
        self.scheduler: Any = None
        self.control: ControlServer | None = None
        self.ha: HaNode | None = None
        """The HA pair (``bridge.ha.node``): starts and stops the services below on takeover and step-down."""
        self.portal: subprocess.Popen[bytes] | None = None
        self.api_args = list(api_args) if api_args is not None else None
        """The CRM XML API child (``bridge.api.child``, when ``api.enabled``), independent of the portal's."""
        self.api: subprocess.Popen[bytes] | None = None
        self.states: dict[str, str] = {}
        self.started_at = time.monotonic()
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self._served = ServedNumbers()
        self.ops = Operations(self)
        """Watchdog, metrics, alarms, log context (``bridge.ops.runtime``): the engine only calls its hooks."""

    # --- life cycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Start every service; raises :class:`StartError` (after undoing what started) if a listener cannot bind."""
        try:
            await self._start()
        except StartError:
            await self.stop()
            raise

    async def _start(self) -> None:
        loop = asyncio.get_running_loop()
        self._check_portal_address()
        self.media.warm()
        self.service = ConferenceService(
            self.config, self.session_factory, sip=self.sip_switch, media=self.media, clock=loop.time,
            on_cdr=self._on_cdr, utc=self.utc,
        )  # fmt: skip
        self.media.on_talking = self.service.set_talking
        await self._start_control()
        try:
            self.ha = HaNode(self.config, serve=self._serve, suspend=self._suspend, database_restarted=self.db.dispose)
        except ConfigError as exc:  # the HA key could not be read
            raise StartError(str(exc)) from exc
        await self.ha.start()  # a single node serves now; one of an HA pair on takeover
        prioritise(self.config.sip.media_priority, "the engine's event loop")  # this thread runs the tick
        ticks = run_ticks(self.ops.timed(self._tick), stats=self.lateness, stop=self._stop)  # timed: watchdog, metrics
        self._tasks.append(loop.create_task(ticks, name="tick"))
        self._tasks.append(loop.create_task(self._housekeeping(), name="housekeeping"))
        self._start_portal()
        api = self.config.api
        self.api = api_child.start_if_enabled(api.enabled, api.listen, self.config.data_path, self.api_args)
        self.ops.start()  # the metrics exporter, then READY=1 to systemd
        log.info("engine running: %s", ", ".join(f"{k}={v}" for k, v in self.states.items()))

    async def _serve(self, term: int) -> None:
        """Start the active node's services: at start, or when this node takes over the HA role in ``term``."""
        assert self.service is not None
        self._seed()
        self._refresh_served()
        closed = self.service.records.recover()  # before the first stamp of this run: it reads the previous run's
        if closed:
            log.warning("closed %d legs left open by the previous run (cause: system restart)", closed)
        self.service.records.stamp_alive(self.utc())
        await self._start_sip()
        await self._start_cdr()
        await self._start_smpp()
        if term:
            log.info("serving as the active node (term %d): %s", term, self.states)

    async def _suspend(self, reason: str) -> None:
        """Stop the active node's services (HA step-down): every conference ends, each leg with its CDR."""
        if self.service is not None:
            self.service.end_all(reason)
        await asyncio.sleep(0.2)  # let BYE/CANCEL leave before the stack closes
        await self._stop_services()
        self.sip_switch.target = _NoSip("on the standby node")
        self.states.update(sip="standby", smpp="standby", cdr_jobs="standby", cdr_feed="standby")

    async def _stop_services(self) -> None:
        for name, component in (("smpp", self.smpp), ("sip", self.sip), ("cdr_feed", self.feed)):
            if component is not None:
                try:
                    await component.stop()
                except Exception:
                    log.exception("stopping %s failed", name)
        self.smpp = self.sip = self.feed = None
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
            self.scheduler = None

    async def run(self) -> None:
        """Start, wait for SIGTERM/SIGINT, stop gracefully."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        await self.start()
        await self._stop.wait()
        log.info("signal received: ending conferences and stopping")
        await self.stop()

    async def stop(self) -> None:
        self.ops.stop()
        if self.ha is not None:
            self.ha.hold()  # no takeover while stopping
        if self.service is not None:
            self.service.end_all("system shutdown")
        await asyncio.sleep(0.2)  # let BYE/CANCEL leave before the stack closes
        self._stop.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self.portal is not None:
            portal_child.stop(self.portal, self.config.data_path)
            self.portal = None
        if self.api is not None:
            api_child.stop(self.api, self.config.data_path)
            self.api = None
        if self.control is not None:
            await self.control.stop()
        await self._stop_services()
        if self.ha is not None:
            await self.ha.stop()  # after the services: the last CDRs are replicated before the peer takes over
        self.mixer.close()
        self.poller.close()
        if self.batched is not None:
            self.batched.close()
        self.db.dispose()
        log.info("engine stopped")

    # --- components ----------------------------------------------------------------------------

    def _seed(self) -> None:
        """Config ``[dnis]`` and ``[[room]]`` into the database (idempotent)."""
        try:
            from bridge.provisioning import load_dnis, load_rooms
        except ImportError:  # pragma: no cover
            return
        with self.session_factory() as session:
            load_dnis(session, common=self.config.dnis.common, pool=expand_numbers(self.config.dnis.pool, "dnis.pool"))
            load_rooms(session, self.config.room)
            session.commit()

    async def _start_sip(self) -> None:
        if not self.config.sip.enabled:
            self.states["sip"] = "disabled"
            self.sip_switch.target = _NoSip("disabled")
            return
        try:
            from bridge.sip.media import open_rtp_media
            from bridge.sip.service import SipService

            assert self.service is not None
            self.sip = SipService(
                self.config,
                on_event=self.ops.observe_sip(self.service.on_sip_event),
                accept_number=self._accept,
                media=open_rtp_media(self.config, poller=self.poller, batched=self.batched),
            )
            await self.sip.start()
        except Exception as exc:
            if isinstance(exc.__cause__, OSError):  # the socket could not bind
                self.sip = None
                address = parse_host_port(self.config.sip.listen, "sip.listen")
                raise StartError(cannot_bind("sip.listen", address, exc.__cause__)) from exc
            log.error("SIP failed to start: %s", exc)
            self.states["sip"] = f"failed: {exc}"
            self.sip_switch.target = _NoSip(f"failed: {exc}")
            self.sip = None
            return
        self.sip_switch.target = self.sip
        self.states["sip"] = "running"

    async def _start_smpp(self) -> None:
        if not self.config.smpp.enabled:
            self.states["smpp"] = "disabled"
            return
        try:
            from bridge.smpp.service import SmppService

            assert self.service is not None
            self.smpp = SmppService(self.config, self.session_factory, on_actions=self.service.on_actions)
            await self.smpp.start()
        except Exception as exc:
            log.error("SMPP failed to start: %s", exc)
            self.states["smpp"] = f"failed: {exc}"
            self.smpp = None
            return
        self.states["smpp"] = "running"

    async def _start_cdr(self) -> None:
        try:
            from apscheduler.schedulers.background import BackgroundScheduler

            from bridge.cdr.jobs import install_jobs

            self.scheduler = BackgroundScheduler(timezone="UTC")
            install_jobs(self.scheduler, self.config, self.session_factory, is_active=self._is_active)
            self.scheduler.start()
            self.states["cdr_jobs"] = "running"
        except Exception as exc:
            log.error("CDR jobs failed to start: %s", exc)
            self.states["cdr_jobs"] = f"failed: {exc}"
            self.scheduler = None
        if not self.config.cdr.feed_listen:
            self.states["cdr_feed"] = "disabled"
            return
        try:
            from bridge.cdr.feed import CdrFeed

            host, port = parse_host_port(self.config.cdr.feed_listen, "cdr.feed_listen")
            self.feed = CdrFeed.from_config(self.config, self.session_factory)
            try:
                await self.feed.start(host, port)
            except OSError as exc:
                self.feed = None
                raise StartError(cannot_bind("cdr.feed_listen", (host, port), exc)) from exc
            self.states["cdr_feed"] = "running"
        except StartError:
            raise
        except Exception as exc:
            log.error("CDR feed failed to start: %s", exc)
            self.states["cdr_feed"] = f"failed: {exc}"
            self.feed = None

    async def _start_control(self) -> None:
        host, port = ControlServer.listen_address(self.config)
        self.control = ControlServer(self, control_token(self.config), _error_status)
        try:
            await self.control.start(host, port)
        except OSError as exc:
            self.control = None
            raise StartError(cannot_bind("control.listen", (host, port), exc)) from exc
        self.states["control"] = f"http://{host}:{self.control.port}"

    def _check_portal_address(self) -> None:
        """Before anything starts: stop a portal a killed engine left behind, then make sure ``web.listen`` is free
        (the portal is a child process: its own bind error would only reach its log)."""
        if self.portal_args is None:
            return
        stale = portal_child.stop_stale(self.config.data_path)
        if stale is not None:
            log.warning("stopped the portal (pid %d) left running by a previous engine", stale)
        error = bind_error("web.listen", parse_host_port(self.config.web.listen, "web.listen"))
        if error is not None:
            raise StartError(error)

    def _start_portal(self) -> None:
        if self.portal_args is None:
            self.states["web"] = "disabled"
            return
        try:
            self.portal = portal_child.start(self.config.data_path, self.portal_args)
            self.states["web"] = self._portal_state()
        except OSError as exc:
            log.error("portal failed to start: %s", exc)
            self.states["web"] = f"failed: {exc}"

    # --- media tick ----------------------------------------------------------------------------

    def _tick(self, tick: Tick) -> None:
        service = self.service
        if service is None:
            return
        now = asyncio.get_running_loop().time()
        try:
            self.media.tick(now)
            service.poll(now)
        except Exception:
            log.exception("tick %d failed", tick.index)

    async def _housekeeping(self) -> None:
        loop = asyncio.get_running_loop()
        refresh_at = loop.time() + ACCEPT_REFRESH_S
        while True:
            await asyncio.sleep(self.alive_interval_s)
            await self._stamp_alive()
            await self.ops.housekeeping()
            if loop.time() >= refresh_at:
                refresh_at = loop.time() + ACCEPT_REFRESH_S
                try:
                    self._refresh_served()
                except Exception:
                    log.exception("refreshing served numbers failed")

    async def _stamp_alive(self) -> None:
        """One UPDATE in a worker thread: a busy database (SQLite lock, a synchronous standby) must not hold
        up the 20 ms tick. Awaited, so a slow write delays the next stamp instead of piling up."""
        if self.service is None or not self._is_active():  # a standby's database is a read-only replica
            return
        try:
            await asyncio.get_running_loop().run_in_executor(None, self.service.records.stamp_alive, self.utc())
        except Exception as exc:
            log.warning("stamping the engine's alive time failed: %s", exc)

    def _refresh_served(self) -> None:
        with self.session_factory() as session:
            self._served = ServedNumbers.load(self.config, session)

    def _is_active(self) -> bool:
        """Any thread: this node serves (a single node always; one of an HA pair while it holds the role)."""
        return self.ha is None or self.ha.is_active()

    def _accept(self, number: str) -> bool:
        """Called from the SIP thread: a set lookup only."""
        return number in self._served

    def _on_cdr(self, cdr_id: int) -> None:
        if self.feed is not None:
            try:
                self.feed.notify(cdr_id)
            except Exception:
                log.exception("CDR feed notify failed")

    # --- control API target --------------------------------------------------------------------

    def _portal_state(self) -> str:
        assert self.portal is not None
        return portal_child.describe(self.portal, "web.listen", parse_host_port(self.config.web.listen, "web.listen"))

    def status(self) -> dict[str, Any]:
        if self.portal is not None:  # polled: it may have exited since
            self.states["web"] = self._portal_state()
        smpp: dict[str, Any] = {"state": self.states.get("smpp", "disabled"), "since": None}
        if self.smpp is not None:
            try:
                smpp = self.smpp.status()
            except Exception as exc:
                smpp = {"state": f"error: {exc}", "since": None}
        sip: dict[str, Any] = {"state": self.states.get("sip", "disabled"), "trunk_groups": []}
        if self.sip is not None:
            try:
                sip = {"state": "running", **self.sip.status()}
            except Exception as exc:
                sip = {"state": f"error: {exc}", "trunk_groups": []}
        counts = self.service.status() if self.service is not None else {"conferences": 0, "participants": 0}
        summary = self.lateness.summary()
        return {
            "node": self.config.node.name,
            "role": self.ha_status()["role"],
            "ha": self.ha_status(),
            "uptime_s": round(time.monotonic() - self.started_at, 3),
            "services": dict(self.states),
            "smpp": smpp,
            "sip": sip,
            "mixer": {
                "conferences": counts["conferences"],
                "participants": counts["participants"],
                "mixer_participants": len(self.mixer),
                "ticks": summary["ticks"],
                "lateness_p99_ms": summary["lateness_p99_ms"],
                "late_ticks": summary["late_ticks"],
                "skipped_ticks": summary["skipped"],
            },
        }

    def ha_status(self) -> dict[str, Any]:
        return self.ha.status() if self.ha is not None else {"enabled": self.config.ha.enabled, "role": "init"}

    def ha_switchover(self) -> dict[str, Any]:
        try:
            return self._service_ha().switchover()
        except SwitchoverRefused as exc:
            raise ApiError(409, str(exc)) from exc

    def _service_ha(self) -> HaNode:
        if self.ha is None:
            raise ApiError(409, "engine is starting")
        return self.ha

    def conferences(self) -> list[dict[str, Any]]:
        service = self._service()
        return [service.describe(run_id) for run_id in service.conference_ids()]

    def conference(self, run_id: int) -> dict[str, Any]:
        return self._service().describe(run_id)

    def launch(self, body: dict[str, Any]) -> dict[str, Any]:
        service = self._service()
        if "ic_id" in body:
            ic_id = body["ic_id"]
            if not isinstance(ic_id, int) or isinstance(ic_id, bool):
                raise ApiError(400, "'ic_id' must be an integer")
            run_id = service.launch_ic(ic_id, launched_by="portal")
        else:
            subscriber_id, numbers = body.get("subscriber_id"), body.get("numbers")
            if not isinstance(subscriber_id, int) or isinstance(subscriber_id, bool):
                raise ApiError(400, "body needs 'ic_id', or 'subscriber_id' and 'numbers'")
            if not isinstance(numbers, list) or not all(isinstance(n, str) for n in numbers):
                raise ApiError(400, "'numbers' must be a list of strings")
            run_id = service.launch(subscriber_id=subscriber_id, numbers=self._e164(numbers), launched_by="portal")
        return service.describe(run_id)

    def end(self, run_id: int) -> None:
        self._service().end(run_id, "ended from the portal")

    def set_recording(self, run_id: int, on: bool) -> None:
        self._service().set_recording(run_id, on)

    def set_locked(self, run_id: int, locked: bool) -> None:
        self._service().set_locked(run_id, locked)

    def dial(self, run_id: int, number: str) -> None:
        self._service().dial(run_id, number)

    def set_muted(self, run_id: int, leg_id: int, muted: bool) -> None:
        self._service().set_muted(run_id, leg_id, muted)

    def kick(self, run_id: int, leg_id: int) -> None:
        self._service().kick(run_id, leg_id)

    def _service(self) -> ConferenceService:
        if self.service is None:
            raise NotAllowed("engine is starting")
        return self.service

    def _e164(self, numbers: list[str]) -> list[str]:
        from bridge.phone import PhoneError, to_e164

        out = []
        for number in numbers:
            try:
                out.append(to_e164(number, self.config.numbering.default_country))
            except PhoneError as exc:
                raise ApiError(400, f"bad number {number!r}: {exc}") from exc
        return out


def _error_status(exc: Exception) -> int | None:
    if isinstance(exc, UnknownConference | UnknownLeg):
        return 404
    if isinstance(exc, ConferenceError):
        return 409
    if isinstance(exc, ValueError | TypeError | KeyError):
        return 400
    return None
