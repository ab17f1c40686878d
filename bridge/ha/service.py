"""The HA service: asyncio glue that feeds the role machine and runs its actions. It decides nothing.

- one UDP socket per heartbeat path, bound to our address on it (``IP_FREEBIND``: the address may not be
  up yet), sending to the peer's; every datagram is verified (HMAC, replay guard, source address, path)
  before it becomes a :class:`~bridge.ha.role.PeerHeartbeat`;
- a timer every ``interval_s``: polls the service interface's carrier, then ticks the machine;
- the witness (:class:`~bridge.ha.witness.IcmpWitness`);
- one worker task that runs the actions strictly in order (the VIP is removed before the heartbeat that
  lets the peer take it leaves), calling the injected ``on_active(term)`` / ``on_standby()`` so the
  engine can start and stop SIP, SMPP and the CDR jobs. A callback may return an awaitable; it then runs
  as its own task, so a slow service start never delays a heartbeat.

Run it on a loop that is never blocked for a large part of the miss window (200 ms at the defaults): its
own thread or process, not behind the mixer's tick.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from bridge.ha.errors import HaError
from bridge.ha.heartbeat import Heartbeat, ReplayGuard, seal, unseal
from bridge.ha.role import (
    AddVip,
    DropVip,
    HaAction,
    HaEvent,
    HaStatus,
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
from bridge.ha.settings import HaSettings
from bridge.ha.vip import FloatingIp, freebind_socket, link_is_up
from bridge.ha.witness import IcmpWitness

log = logging.getLogger(__name__)

Callback = Callable[..., object]


class Vip(Protocol):
    async def add(self) -> None: ...
    async def remove(self) -> None: ...


class Witness(Protocol):
    def start(self) -> None: ...
    def probe(self) -> None: ...
    def close(self) -> None: ...


class _PathProtocol(asyncio.DatagramProtocol):
    def __init__(self, service: HaService, path: int) -> None:
        self.service = service
        self.path = path

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.max_size = 2048  # type: ignore[attr-defined]  # stock asyncio reads into 256 KiB

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.service._received(self.path, data, addr[0])

    def error_received(self, exc: Exception) -> None:
        log.debug("heartbeat path %d: %s", self.path, exc)  # ENETUNREACH while a link is down


class HaService:
    """One node's HA service. ``await start()``, later ``await stop()`` (resigns if active)."""

    def __init__(
        self,
        settings: HaSettings,
        *,
        on_active: Callback,
        on_standby: Callback,
        vip: Vip | None = None,
        witness: Callable[[Callable[[], None]], Witness] | None = None,
        link_state: Callable[[str], bool] = link_is_up,
        on_change: Callable[[HaStatus], None] | None = None,
    ) -> None:
        self.settings = settings
        self.on_active = on_active
        self.on_standby = on_standby
        self.on_change = on_change
        self.vip: Vip = vip or FloatingIp(
            interface=settings.interface,
            address=settings.vip,
            prefix=settings.vip_prefix,
            garp_count=settings.garp_count,
            garp_interval_s=settings.garp_interval_s,
        )
        self._witness_factory = witness
        self._link_state = link_state
        self.boot = time.time_ns()  # the replay nonce: grows across restarts of this node
        self.guard = ReplayGuard(forget_after_s=settings.replay_forget_s)
        self.machine: RoleMachine | None = None
        self.witness: Witness | None = None
        self._transports: list[asyncio.DatagramTransport] = []
        self._seq = [0] * len(settings.local_addresses)
        self._actions: asyncio.Queue[HaAction | None] = asyncio.Queue()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._worker: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._link_up = True
        self._reported: tuple[Role, int] | None = None
        self._errors = 0
        self._error_logged_at = -1e9

    # ---- lifecycle ------------------------------------------------------------------------------------
    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        s = self.settings
        now = loop.time()
        self.machine = RoleMachine(
            node_id=s.node_id,
            peer_id=s.peer_node_id,
            interval_s=s.interval_s,
            miss_count=s.miss_count,
            witness=s.witness is not None,
            witness_interval_s=s.witness_interval_s,
            witness_timeout_s=s.witness_timeout_s,
            now=now,
        )
        for path, address in enumerate(s.local_addresses):
            sock = freebind_socket(address, s.port)
            transport, _ = await loop.create_datagram_endpoint(functools.partial(_PathProtocol, self, path), sock=sock)
            self._transports.append(transport)
        if s.witness is not None:
            witness_address = s.witness

            def answered(probed_at: float | None = None) -> None:
                self._feed(WitnessAnswered(loop.time(), probed_at))

            factory = self._witness_factory
            self.witness = factory(answered) if factory else IcmpWitness(witness_address, answered)
            self.witness.start()
        self._worker = loop.create_task(self._run_actions())
        self._link_up = self._link_state(s.interface)
        self._submit(self.machine.start(now))
        if not self._link_up:
            self._feed(LinkChanged(now, False))
        self._next_tick = now + s.interval_s
        self._timer = loop.call_at(self._next_tick, self._tick)
        log.info("ha %s: started (paths %s -> %s)", s.node_id, s.local_addresses, s.peer_addresses)

    async def stop(self) -> None:
        """Resign if active (the standby takes over at once), run the remaining actions, close."""
        if self._timer is not None:
            self._timer.cancel()
        if self.machine is not None:
            self._feed(ShutdownRequested(asyncio.get_running_loop().time()))
        self._actions.put_nowait(None)
        if self._worker is not None:
            await self._worker
        for transport in self._transports:
            transport.close()
        if self.witness is not None:
            self.witness.close()
        for task in list(self._tasks):
            await asyncio.wait([task], timeout=5)

    def switchover(self) -> None:
        """Hand over to the standby now; raises :class:`~bridge.ha.errors.SwitchoverRefused`."""
        assert self.machine is not None, "start() first"
        self._submit(self.machine.handle(SwitchoverRequested(asyncio.get_running_loop().time())))

    def status(self) -> HaStatus:
        assert self.machine is not None, "start() first"
        return self.machine.status(asyncio.get_running_loop().time())

    # ---- inputs -------------------------------------------------------------------------------------
    def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        s = self.settings
        self._next_tick += s.interval_s
        if self._next_tick < now:  # we were not scheduled for a while: do not fire a burst
            self._next_tick = now + s.interval_s
        self._timer = loop.call_at(self._next_tick, self._tick)
        up = self._link_state(s.interface)
        if up != self._link_up:
            self._link_up = up
            log.warning("ha %s: %s is %s", s.node_id, s.interface, "up" if up else "DOWN")
            self._feed(LinkChanged(now, up))
        self._feed(Tick(now))

    def _received(self, path: int, data: bytes, source: str) -> None:
        now = asyncio.get_running_loop().time()
        try:
            if source != self.settings.peer_addresses[path]:
                expected = self.settings.peer_addresses[path]
                raise HaError(f"heartbeat on path {path} from {source}, the peer is {expected}")
            heartbeat = unseal(data, self.settings.key)
            if heartbeat.path != path:
                raise HaError(f"heartbeat for path {heartbeat.path} arrived on path {path}")
            self.guard.check(heartbeat, now)
        except HaError as exc:
            self._count_error(exc)
            return
        hb = heartbeat
        self._feed(PeerHeartbeat(now, path, hb.node_id, hb.role, hb.term, hb.healthy, hb.resign))

    def _feed(self, event: HaEvent) -> None:
        assert self.machine is not None
        try:
            actions = self.machine.handle(event)
        except HaError as exc:
            self._count_error(exc)
            return
        self._submit(actions)

    def _submit(self, actions: list[HaAction]) -> None:
        for action in actions:
            self._actions.put_nowait(action)
        self._changed()

    def _count_error(self, exc: Exception) -> None:
        """Refused heartbeats are logged at most once a second (a flood must not become a log flood)."""
        self._errors += 1
        now = time.monotonic()
        if now - self._error_logged_at >= 1.0:
            self._error_logged_at = now
            log.warning("ha %s: %s (%d refused so far)", self.settings.node_id, exc, self._errors)

    # ---- actions ------------------------------------------------------------------------------------
    async def _run_actions(self) -> None:
        loop = asyncio.get_running_loop()
        while (action := await self._actions.get()) is not None:
            started = loop.time()
            try:
                await self._execute(action)
            except Exception:
                log.exception("ha %s: %s failed", self.settings.node_id, type(action).__name__)
            took = loop.time() - started
            if took > self.settings.interval_s:  # it held up the heartbeats queued behind it
                log.warning("ha %s: %s took %.0f ms", self.settings.node_id, type(action).__name__, took * 1000)

    async def _execute(self, action: HaAction) -> None:
        if isinstance(action, SendHeartbeat):
            self._send(action)
        elif isinstance(action, AddVip):
            await self.vip.add()
        elif isinstance(action, DropVip):
            await self.vip.remove()
        elif isinstance(action, ProbeWitness):
            if self.witness is not None:
                self.witness.probe()
        elif isinstance(action, StartServices):
            self._call(self.on_active, action.term)
        elif isinstance(action, StopServices):
            self._call(self.on_standby)

    def _send(self, action: SendHeartbeat) -> None:
        s = self.settings
        for path, transport in enumerate(self._transports):
            self._seq[path] += 1
            heartbeat = Heartbeat(
                s.node_id, action.role, action.term, self.boot, self._seq[path], path, action.healthy, action.resign
            )
            transport.sendto(seal(heartbeat, s.key), (s.peer_addresses[path], s.port))

    def _call(self, callback: Callback, *args: object) -> None:
        result = callback(*args)
        if inspect.isawaitable(result):
            task = asyncio.ensure_future(_awaited(result))
            self._tasks.add(task)
            task.add_done_callback(self._callback_done)

    def _callback_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("ha %s: service callback failed", self.settings.node_id, exc_info=task.exception())

    def _changed(self) -> None:
        """Report a new role or term (for a status file, ``bridge ha status``, a log line)."""
        if self.machine is None or (self.machine.state, self.machine.term) == self._reported:
            return
        self._reported = (self.machine.state, self.machine.term)
        if self.on_change is not None:
            self.on_change(self.status())


async def _awaited(result: Awaitable[object]) -> object:
    return await result
