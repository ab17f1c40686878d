"""The HA pair inside ``bridge run``: :class:`HaNode` runs :class:`~bridge.ha.service.HaService` in its own thread
and turns its role into the engine's service starts and stops (glue; the role machine decides).

Threads and loops:

- the **HA thread** runs its own asyncio loop, under SCHED_RR (``ha.realtime_priority``), so neither the 20 ms
  mixer tick nor a busy CPU delays a heartbeat (``bench/ha_failover.py jitter``). It owns the
  :class:`HaService`, publishes a status snapshot every interval, and posts role changes to the engine's
  loop with ``loop.call_soon_threadsafe``;
- the **engine's loop** runs the transitions strictly in order, one at a time: on takeover promote the
  database (``pg_promote()``, :mod:`bridge.ha.replication`) *before* any service starts, then the engine's
  ``serve(term)`` (database seed and recovery of legs the old active left open, SIP, CDR feed, SMPP); on
  step-down ``suspend(reason)`` (every conference ends, each leg with its CDR; SMPP unbinds, SIP and the
  feed close). A graceful switchover suspends first and resigns after, so the last CDRs are committed
  while the peer still replicates synchronously;
- one **database worker** thread runs every blocking replication call in order: promote, the sync/async
  rule (synchronous while this node is active, its cluster a primary, the peer alive by heartbeat *and*
  streaming; asynchronous as soon as the heartbeat declares the peer dead), and the rejoin of a standby
  whose cluster is still a primary (``pg_rewind`` from the active peer, then streaming again).

With ``ha.enabled = false`` the node is active from the start and nothing of this runs.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bridge.config import Config, ConfigError
from bridge.ha.errors import HaError, PeerError, SwitchoverRefused
from bridge.ha.replication import Replication, ReplicationSettings
from bridge.ha.role import HaStatus, Role
from bridge.ha.service import HaService
from bridge.ha.settings import HaSettings

log = logging.getLogger(__name__)

DB_CHECK_S = 0.5
"""Period of the replication checks (sync rule, rejoin); a peer declared dead is acted on at once."""

GIL_SWITCH_S = 0.001

Serve = Callable[[int], Awaitable[None]]
Suspend = Callable[[str], Awaitable[None]]


def ha_key(config: Config) -> bytes:
    """The shared key from ``ha.key_file`` or the environment variable ``ha.key_env`` (read at start only)."""
    ha = config.ha
    if ha.key_file:
        try:
            return config.resolve(ha.key_file).read_bytes().strip()
        except OSError as exc:
            raise ConfigError(f"ha.key_file: cannot read {ha.key_file}: {exc.strerror}") from exc
    key = os.environ.get(ha.key_env, "").encode()
    if not key:
        raise ConfigError(f"ha.key_env: ${ha.key_env} is not set (or set ha.key_file)")
    return key


def ha_settings(config: Config) -> HaSettings:
    ha = config.ha
    try:
        return HaSettings(
            node_id=ha.node_id or config.node.name, peer_node_id=ha.peer_node_id,
            local_addresses=tuple(ha.local_addresses), peer_addresses=tuple(ha.peer_addresses), key=ha_key(config),
            interface=ha.interface, vip=ha.vip, vip_prefix=ha.vip_prefix, port=ha.port, interval_s=ha.interval_s,
            miss_count=ha.miss_count, witness=ha.witness or None, witness_interval_s=ha.witness_interval_s,
            witness_timeout_s=ha.witness_timeout_s, garp_count=ha.garp_count, garp_interval_s=ha.garp_interval_s,
            realtime_priority=ha.realtime_priority,
        )  # fmt: skip
    except HaError as exc:
        raise ConfigError(f"ha: {exc}") from exc


def replication_settings(config: Config) -> ReplicationSettings | None:
    """None when ``ha.pg_data`` is empty (the engine does not drive the database)."""
    ha = config.ha
    if not ha.pg_data:
        return None
    from pathlib import Path

    return ReplicationSettings(
        data=Path(ha.pg_data), bindir=Path(ha.pg_bindir), os_user=ha.pg_user, local=ha.pg_local, peer=ha.pg_peer,
        node_id=ha.node_id or config.node.name, peer_node_id=ha.peer_node_id,
    )  # fmt: skip


def realtime(priority: int) -> None:
    """SCHED_RR for the calling thread only (Linux schedules threads; the mixer thread keeps normal scheduling)."""
    if not priority:
        return
    try:
        os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(priority))
    except OSError as exc:
        log.warning("HA thread: SCHED_RR %d refused (%s): heartbeats may be late on a busy machine", priority, exc)


class HaNode:
    """``await HaNode(config, serve=..., suspend=...).start()`` on the engine's loop; ``await stop()`` at the end."""

    def __init__(
        self,
        config: Config,
        *,
        serve: Serve,
        suspend: Suspend,
        database_restarted: Callable[[], None] = lambda: None,
        service_factory: Callable[..., HaService] = HaService,
        replication: Replication | None = None,
    ) -> None:
        self.enabled = config.ha.enabled
        self.serve, self.suspend, self.database_restarted = serve, suspend, database_restarted
        self.settings = ha_settings(config) if self.enabled else None
        self.vip = config.ha.vip
        if replication is None and self.enabled:
            rs = replication_settings(config)
            replication = Replication(rs) if rs is not None else None
        self.replication = replication
        self._service_factory = service_factory
        self.active = not self.enabled
        """Services are running here (set on the engine's loop); the CDR jobs and the portal ask this."""
        self.term = 0
        self.error: str | None = None
        self.service: HaService | None = None
        self._snapshot: HaStatus | None = None
        self._snapshot_at = 0.0
        self._database: dict[str, Any] = {}
        self._peer_alive = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ha_loop: asyncio.AbstractEventLoop | None = None
        self._ha_stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._queue: asyncio.Queue[tuple[str, int]] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self._db = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="ha-db")
        self._db_busy = threading.Lock()
        self._closing = False

    # ---- life cycle (engine loop) -------------------------------------------------------------------------
    async def start(self) -> None:
        if not self.enabled:
            await self.serve(0)
            return
        # The HA thread shares the GIL with the engine: a takeover's service start (imports, SQL) held it long
        # enough to starve heartbeats (measured: 86 ms sends, a false failover on a busy 2-core machine). A
        # 1 ms switch interval (default 5 ms) hands it over sooner; SCHED_RR cannot help with the GIL.
        sys.setswitchinterval(GIL_SWITCH_S)
        self._loop = asyncio.get_running_loop()
        self._worker = self._loop.create_task(self._transitions(), name="ha-transitions")
        started = threading.Event()
        self._thread = threading.Thread(target=self._thread_main, args=(started,), name="ha", daemon=True)
        self._thread.start()
        await self._loop.run_in_executor(None, started.wait, 10.0)
        if self.error is not None:
            log.error("HA failed to start: %s", self.error)

    def hold(self) -> None:
        """No more transitions: the engine is stopping its services itself."""
        self._closing = True

    async def stop(self) -> None:
        """Resign if active (the peer takes over at once) and stop the HA thread; the engine stopped its services."""
        self.hold()
        if self._ha_loop is not None and self._ha_stop is not None:
            self._ha_loop.call_soon_threadsafe(self._ha_stop.set)
        if self._thread is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._thread.join, 10.0)
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        self._db.shutdown(wait=False, cancel_futures=True)

    def is_active(self) -> bool:
        """Thread-safe: whether this node serves now (single node: always)."""
        return self.active

    # ---- the HA thread ----------------------------------------------------------------------------------
    def _thread_main(self, started: threading.Event) -> None:
        assert self.settings is not None
        realtime(self.settings.realtime_priority)
        loop = self._ha_loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._ha_main(started))
        finally:
            started.set()
            loop.close()

    async def _ha_main(self, started: threading.Event) -> None:
        assert self.settings is not None
        self._ha_stop = asyncio.Event()
        self.service = self._service_factory(
            self.settings, on_active=self._on_active, on_standby=self._on_standby, on_change=self._on_change
        )
        try:
            await self.service.start()
        except (OSError, HaError) as exc:
            self.error = f"cannot start the heartbeat: {exc}"
            return
        started.set()
        checked_at, was_alive = 0.0, False
        while not self._ha_stop.is_set():
            self._publish()
            now = time.monotonic()
            if self._peer_alive != was_alive or now - checked_at >= DB_CHECK_S:  # a dead peer: async at once
                checked_at, was_alive = now, self._peer_alive
                self._check_database()
            try:
                await asyncio.wait_for(self._ha_stop.wait(), self.settings.interval_s)
            except TimeoutError:
                pass
        await self.service.stop()
        self._publish()

    def _publish(self) -> None:
        assert self.service is not None and self.settings is not None
        status = self.service.status()
        ages = status.peer_heard_age_s.values()
        self._peer_alive = bool(ages) and min(ages) < self.settings.miss_window_s
        self._snapshot, self._snapshot_at = status, time.monotonic()

    def _on_active(self, term: int) -> None:
        self._post("active", term)

    def _on_standby(self) -> None:
        self._post("standby", 0)

    def _on_change(self, status: HaStatus) -> None:
        self._snapshot, self._snapshot_at = status, time.monotonic()
        log.info("ha: %s, term %d", status.role.value, status.term)

    def _post(self, kind: str, term: int) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._queue.put_nowait, (kind, term))

    # ---- transitions (engine loop, one at a time) ---------------------------------------------------------
    async def _transitions(self) -> None:
        while True:
            kind, term = await self._queue.get()
            if self._closing:
                continue
            try:
                if kind == "active":
                    await self._take_over(term)
                elif kind == "standby":
                    await self._step_down("this node lost the HA role")
                else:
                    await self._switchover()
            except Exception:
                log.exception("ha: %s transition failed", kind)

    async def _take_over(self, term: int) -> None:
        self.term = term
        if self.replication is not None:
            started = time.monotonic()
            await self._in_db(self.replication.promote)
            log.info("ha: database promoted in %.0f ms", (time.monotonic() - started) * 1000)
        self.active = True
        await self.serve(term)
        self._check_database()

    async def _step_down(self, reason: str) -> None:
        if not self.active:
            return
        self.active = False
        await self.suspend(reason)
        self._check_database()

    async def _switchover(self) -> None:
        await self._step_down("switchover to the peer")
        assert self._ha_loop is not None
        try:
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self._resign(), self._ha_loop))
        except SwitchoverRefused as exc:
            log.warning("ha: switchover refused at the last moment (%s): serving again", exc)
            self.active = True
            await self.serve(self.term)

    async def _resign(self) -> None:
        assert self.service is not None
        self.service.switchover()

    async def _in_db(self, fn: Callable[[], object]) -> object:
        return await asyncio.get_running_loop().run_in_executor(self._db, fn)

    # ---- the database rules (database worker) -----------------------------------------------------------
    def _check_database(self) -> None:
        """Queue one replication check unless one is queued already (any thread)."""
        if self.replication is None or self._closing or not self._db_busy.acquire(blocking=False):
            return
        try:
            self._db.submit(self._database_rules)
        except RuntimeError:  # shut down
            self._db_busy.release()

    def _database_rules(self) -> None:
        replication = self.replication
        assert replication is not None
        try:
            snapshot = self._snapshot
            primary = not replication.in_recovery()
            if primary:  # as a replica there is nothing to set
                replication.set_synchronous(self.active and self._peer_alive and replication.peer_streaming())
            if primary and not self.active and snapshot is not None and snapshot.role is Role.STANDBY:
                if self._peer_is_active() and replication.rejoin() and self._loop is not None:
                    self._loop.call_soon_threadsafe(self.database_restarted)
            self._database = replication.describe()
        except PeerError as exc:
            log.debug("ha: rejoin waits: %s", exc)
        except Exception as exc:
            self._database = {"role": "error", "error": str(exc).strip()}
            log.warning("ha: replication check failed: %s", exc)
        finally:
            self._db_busy.release()

    def _peer_is_active(self) -> bool:
        snapshot = self._snapshot
        return snapshot is not None and self._peer_alive and snapshot.peer_role is Role.ACTIVE

    # ---- status and switchover (engine loop) -------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """The ``ha`` block of ``/status`` (``bridge ha status``)."""
        if not self.enabled:
            return {"enabled": False, "role": "active", "read_only": False}
        assert self.settings is not None
        s, snap = self.settings, self._snapshot
        base: dict[str, Any] = {"enabled": True, "node": s.node_id, "vip": s.vip, "read_only": not self.active,
                                "serving": self.active, "error": self.error, "database": self._database}  # fmt: skip
        if snap is None:
            return {**base, "role": "init", "term": 0, "active_node": None, "peer": {"node": s.peer_node_id}}
        stale = time.monotonic() - self._snapshot_at
        ages = {str(path): round(age + stale, 3) for path, age in snap.peer_heard_age_s.items()}
        active_node = s.node_id if snap.role is Role.ACTIVE else s.peer_node_id if self._peer_is_active() else None
        peer = {
            "node": s.peer_node_id, "role": snap.peer_role.value if snap.peer_role else None, "term": snap.peer_term,
            "healthy": snap.peer_healthy, "alive": self._peer_alive,
            "last_heartbeat_s": min(ages.values()) if ages else None, "paths": ages,
        }  # fmt: skip
        return {
            **base, "role": snap.role.value, "term": snap.term, "healthy": snap.healthy, "active_node": active_node,
            "witness_age_s": None if snap.witness_age_s is None else round(snap.witness_age_s + stale, 3),
            "max_peer_silence_ms": round(snap.max_silence_s * 1000, 1), "peer": peer,
            "peer_silence_s": peer["last_heartbeat_s"],  # what bridge.ops' ha_peer_lost alarm and metrics read
        }  # fmt: skip

    def switchover(self) -> dict[str, Any]:
        """Start a graceful hand-over to the standby; raises :class:`SwitchoverRefused` when it cannot happen."""
        snap = self._snapshot
        if not self.enabled or self.settings is None:
            raise SwitchoverRefused("HA is not enabled on this node (ha.enabled = false)")
        if snap is None or snap.role is not Role.ACTIVE or not self.active:
            raise SwitchoverRefused(f"{self.settings.node_id} is not the active node")
        if not self._peer_alive or snap.peer_role is not Role.STANDBY or not snap.peer_healthy:
            seen = snap.peer_role.value if snap.peer_role else "never heard"
            raise SwitchoverRefused(f"no healthy standby to hand over to (peer: {seen})")
        self._queue.put_nowait(("switchover", 0))
        return {"switchover": "started", "from": self.settings.node_id, "to": self.settings.peer_node_id}
