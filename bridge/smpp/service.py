"""The SMPP service: smpplib PDUs over blocking sockets in their own threads, glued to the pure pieces
and to the database, handing command actions to the engine's asyncio loop.

Threads:
- one *link* thread per SMPP session (one bind_transceiver, or bind_receiver + bind_transmitter when
  ``smpp.bind_mode = "split"``). It owns its socket, its :class:`~bridge.smpp.bind.BindMachine` and, on
  the transmitting link, the :class:`~bridge.smpp.outbox.Outbox`; on the receiving link the
  :class:`~bridge.smpp.concat.Reassembler`. It waits in ``select`` on the socket and a wake-up socket
  pair, reads every PDU that is ready, and handles them as one batch in one transaction: MOs (and parts)
  are persisted and COMMITTED before their deliver_sm_resp is written, so an acknowledged MO is never lost.
- one *worker* thread runs the command language on persisted MOs, one transaction per MO: the MO
  becomes HANDLED/REFUSED and its reply is queued in the same commit; the actions then go to the
  engine's loop with ``loop.call_soon_threadsafe``.

All our database writes are serialised by one lock, so SQLite never makes our threads wait in its busy
handler. Everything that does not need a socket, a thread or a clock lives in the pure modules.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import logging
import random
import select
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import smpplib.exceptions
import smpplib.smpp
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from bridge.commands.actions import Action
from bridge.config import Config
from bridge.db.models import utcnow
from bridge.smpp import store, wire
from bridge.smpp.bind import BindEvent, BindMachine, BindState
from bridge.smpp.concat import Expired, Reassembler, encode_message
from bridge.smpp.constants import (
    DC_DEFAULT,
    ESME_RINVCMDID,
    ESME_ROK,
    ESME_RSYSERR,
    ESME_RX_T_APPN,
    MAX_PDU_LENGTH,
    NPI_ISDN,
    NPI_UNKNOWN,
    REGISTERED_DELIVERY_RECEIPT,
    TON_INTERNATIONAL,
    TON_UNKNOWN,
    status_name,
)
from bridge.smpp.errors import EncodingError, LinkError
from bridge.smpp.inbound import DeliverSm, Inbound, Mo, Part, Receipt, Undecodable, classify, decode_joined
from bridge.smpp.outbox import (
    MessageFailed,
    MessageRetrying,
    MessageSubmitted,
    Outbox,
    Outcome,
    OutgoingMessage,
    SubmitPart,
)
from bridge.smpp.queue import QueuedMt, add_listener, remove_listener
from bridge.smpp.receipt import DeliveryReceipt
from bridge.smpp.redelivery import AckLedger, MoKey

log = logging.getLogger(__name__)

READ_BATCH = 64
"""PDUs read before handling them as one batch (one transaction, then the responses)."""
RECEIPT_RETRY_S = 10.0
"""How long a receipt whose MT is not known yet (split binds: it can beat the submit_sm_resp) is kept."""
MT_ID_CACHE = 100_000


class _Down(LinkError):
    """The session is lost; ``event`` says which transition of the bind machine that is."""

    def __init__(self, event: BindEvent, reason: str) -> None:
        super().__init__(reason)
        self.event = event


class _Sequence:
    """The "client" smpplib's ``make_pdu`` takes sequence numbers from (SMPP 3.4 §3.2: 1..0x7FFFFFFF)."""

    def __init__(self) -> None:
        self.sequence = 0

    def next_sequence(self) -> int:
        self.sequence = self.sequence % 0x7FFFFFFF + 1
        return self.sequence


class _NoSequence:
    """For responses and parsing, which must not consume our sequence numbers."""

    sequence = 0

    def next_sequence(self) -> int:
        return 0


_NO_SEQUENCE = _NoSequence()
_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)
_RESPONSE_IDS = {
    "deliver_sm_resp": wire.DELIVER_SM_RESP,
    "enquire_link_resp": wire.ENQUIRE_LINK_RESP,
    "generic_nack": wire.GENERIC_NACK,
    "unbind_resp": wire.UNBIND_RESP,
}


@dataclass
class _Request:
    command: str
    sent_at: float
    part: tuple[int, int] | None = None
    ordinal: int = 0
    """Position of the request among the PDUs written on its session (see :mod:`bridge.smpp.redelivery`)."""


class _Db:
    """Sessions with one in-process write lock (see the module docstring), and for the MT hot path (submit
    results and receipts, plain UPDATEs) a long-lived connection per thread: an ORM session per
    transaction costs about three times the transaction itself."""

    def __init__(self, session_factory: sessionmaker[Session]) -> None:
        self._factory = session_factory
        self._lock = threading.Lock()
        self._local = threading.local()

    @contextlib.contextmanager
    def core(self) -> Iterator[Connection]:
        connection: Connection | None = getattr(self._local, "connection", None)
        if connection is None or connection.closed or connection.invalidated:
            engine: Engine = self._factory.kw["bind"]
            connection = self._local.connection = engine.connect()
        with self._lock:
            try:
                with connection.begin():
                    yield connection
            except BaseException:
                with contextlib.suppress(Exception):
                    connection.close()
                self._local.connection = None
                raise

    def close_thread_connection(self) -> None:
        connection: Connection | None = getattr(self._local, "connection", None)
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.close()
            self._local.connection = None

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Session]:
        with self._lock, self._factory() as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value.decode("latin-1") if isinstance(value, bytes) else str(value)


def _address(number: str) -> tuple[int, int, str]:
    """``+447700900001`` -> international ISDN ``447700900001``; anything else as given, TON unknown."""
    if number.startswith("+") and number[1:].isdigit():
        return TON_INTERNATIONAL, NPI_ISDN, number[1:]
    return TON_UNKNOWN, NPI_ISDN if number.isdigit() else NPI_UNKNOWN, number


def address_range(short_codes: list[str]) -> str:
    """The bind's address_range (a regular expression in SMPP 3.4 §5.2.7, at most 40 characters)."""
    if len(short_codes) == 1:
        return short_codes[0][:40]
    pattern = "^(" + "|".join(short_codes) + ")$"
    if len(pattern) > 40:
        log.warning("smpp: %d short codes do not fit in address_range; binding without one", len(short_codes))
        return ""
    return pattern


class SmppService:
    """The appliance's ESME. ``start``/``stop`` from the engine's loop; ``status()`` from anywhere."""

    def __init__(
        self,
        config: Config,
        session_factory: sessionmaker[Session],
        *,
        on_actions: Callable[[tuple[Action, ...]], None] = lambda a: None,
        execute: store.Execute | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.settings = config.smpp
        self._db = _Db(session_factory)
        self._on_actions = on_actions
        self._execute = execute
        self._rng = rng or random.Random()
        self.clock = clock
        self._loop: asyncio.AbstractEventLoop | None = None
        self.stopping = threading.Event()
        self._worker: ThreadPoolExecutor | None = None
        s = self.settings
        self.outbox = Outbox(
            window=s.window,
            tps=s.tps,
            retry_min_s=s.retry_min_s,
            retry_max_s=s.retry_max_s,
            max_attempts=s.max_attempts,
            rng=self._rng,
            now=clock(),
        )
        self.reassembler = Reassembler(s.reassembly_timeout_s)
        self.acks = AckLedger(window_s=s.dedup_window_s)  # used by the receiving link's thread only
        self._mt_ids: collections.OrderedDict[str, tuple[int, int]] = collections.OrderedDict()  # id -> MT, parts
        self._mt_ids_lock = threading.Lock()
        self.delivered_parts: dict[int, set[str]] = {}
        self.counters: collections.Counter[str] = collections.Counter()
        if s.bind_mode == "split":
            self.links = [
                _Link(self, name="receiver", bind_command="bind_receiver", rx=True, tx=False),
                _Link(self, name="transmitter", bind_command="bind_transmitter", rx=False, tx=True),
            ]
        else:
            self.links = [_Link(self, name="transceiver", bind_command="bind_transceiver", rx=True, tx=True)]

    # --- lifecycle (engine loop) -----------------------------------------------------------------------

    async def start(self) -> None:
        """Recover unfinished work from the database, then bind in the background (does not wait for it)."""
        self._loop = asyncio.get_running_loop()
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="smpp-mo")
        await asyncio.to_thread(self._recover)
        add_listener(self.wake_transmitter)
        for link in self.links:
            link.start()

    async def stop(self) -> None:
        """Drain submits in flight, unbind cleanly, stop the threads."""
        self.stopping.set()
        remove_listener(self.wake_transmitter)
        for link in self.links:
            link.wake()
        timeout = 2 * self.settings.response_timeout_s + 5
        for link in self.links:
            if link.ident is None:  # never started
                link.close_wake()
                continue
            await asyncio.to_thread(link.join, timeout)
            if link.is_alive():
                log.error("smpp %s: thread did not stop within %.0f s", link.name, timeout)
        if self._worker is not None:
            await asyncio.to_thread(self._worker.shutdown, True)

    def status(self) -> dict[str, Any]:
        """Bind state (``bound`` only when every session is), since when, and counters; for the status page."""
        links = [link.describe() for link in self.links]
        worst = next((link for link in links if link["state"] != BindState.BOUND.value), links[0])
        return {
            "state": worst["state"],
            "since": worst["since"],
            "reason": worst["reason"],
            "bind_mode": self.settings.bind_mode,
            "links": links,
            "mo": self.counters["mo"],
            "mt": self.counters["mt"],
            "dlr": self.counters["dlr"],
            "failed": self.counters["failed"],
            "invalid": self.counters["invalid"],
            "duplicates": self.counters["duplicates"],
            "ambiguous": self.counters["ambiguous"],
            "throttled": self.counters["throttled"],
            "outbox": self.outbox.backlog,
            "in_flight": self.outbox.in_flight,
        }

    def wake_transmitter(self, rows: Sequence[QueuedMt]) -> None:
        """MTs were queued (and committed) in this process: hand them to the sender, no database read."""
        for link in self.links:
            if link.tx:
                link.offer(rows)

    # --- recovery and MO handling (worker thread) ------------------------------------------------------

    def _recover(self) -> None:
        now = self.clock()
        with self._db.transaction() as session:
            store.purge_parts(session, utcnow() - dt.timedelta(seconds=self.settings.reassembly_timeout_s))
            parts = store.load_parts(session)
            pending = store.received_mo_ids(session)
            ambiguous = store.ambiguous_mts(session)
        for mt_id, note in ambiguous:
            # SMPP 3.4 has no way to ask the SMSC about a submit whose response we never read (query_sm
            # needs the message id that response carried): submit again, a rare duplicate before a loss.
            log.warning(
                "smpp: MT %d was %s when the process stopped; the SMSC may have it: submitting again", mt_id, note
            )
        self.counters["ambiguous"] += len(ambiguous)
        for segment in parts:
            self.reassembler.add(segment, now)  # waiting parts get a fresh timeout
        if parts or pending:
            log.info("smpp: recovered %d waiting MO parts and %d unhandled MOs", len(parts), len(pending))
        for mo_id in pending:
            self.submit_mo(mo_id)

    def submit_mo(self, mo_id: int) -> None:
        if self._worker is not None:
            self._worker.submit(self._handle_mo, mo_id)

    def _resolve_execute(self) -> store.Execute:
        if self._execute is None:
            from bridge.commands import execute  # the command language (CONTRACTS §1)

            self._execute = execute
        return self._execute

    def _handle_mo(self, mo_id: int) -> None:
        execute = self._resolve_execute()
        for attempt in range(5):
            try:
                with self._db.transaction() as session:
                    actions = store.handle_mo(session, mo_id, execute=execute, config=self.config, now=utcnow())
                break
            except SQLAlchemyError:
                log.warning("smpp: database error handling MO %d (attempt %d)", mo_id, attempt + 1, exc_info=True)
                if self.stopping.wait(0.05 * 2**attempt):
                    return
            except Exception as exc:  # the command language must not take the service down
                log.exception("smpp: command language failed on MO %d", mo_id)
                with self._db.transaction() as session:
                    store.fail_mo(
                        session, mo_id, error=f"{type(exc).__name__}: {exc}", config=self.config, now=utcnow()
                    )
                return
        else:
            log.error("smpp: MO %d left RECEIVED after repeated database errors; handled at next start", mo_id)
            return
        if actions and self._loop is not None:
            self._loop.call_soon_threadsafe(self._on_actions, actions)

    # --- shared by the link threads --------------------------------------------------------------------

    def remember_ids(self, mt_id: int, message_ids: tuple[str, ...]) -> None:
        with self._mt_ids_lock:
            for message_id in message_ids:
                self._mt_ids[message_id] = (mt_id, len(message_ids))
            while len(self._mt_ids) > MT_ID_CACHE:
                self._mt_ids.popitem(last=False)

    def known_mt(self, message_id: str) -> tuple[int, int] | None:
        """``(MT id, number of parts)`` of a message id submitted by this process (recent ones)."""
        with self._mt_ids_lock:
            return self._mt_ids.get(message_id)

    def transaction(self) -> contextlib.AbstractContextManager[Session]:
        return self._db.transaction()

    def core(self) -> contextlib.AbstractContextManager[Connection]:
        return self._db.core()


class _Link(threading.Thread):
    """One SMPP session: connect, bind, serve, reconnect with back-off; unbind on stop."""

    def __init__(self, service: SmppService, *, name: str, bind_command: str, rx: bool, tx: bool) -> None:
        super().__init__(name=f"smpp-{name}", daemon=True)
        self.service = service
        self.settings = service.settings
        self.link_name = name
        self.bind_command = bind_command
        self.rx = rx
        self.tx = tx
        s = self.settings
        self.machine = BindMachine(
            name=name, reconnect_min_s=s.reconnect_min_s, reconnect_max_s=s.reconnect_max_s, rng=service._rng
        )
        self._since_wall = utcnow()
        self._sock: socket.socket | None = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._seq = _Sequence()
        self._pending: dict[int, _Request] = {}
        self._offered: collections.deque[QueuedMt] = collections.deque()
        self._settled: collections.OrderedDict[int, None] = collections.OrderedDict()
        self._more_queued = False
        self._next_poll = 0.0
        self._orphans: list[tuple[float, DeliveryReceipt]] = []
        self._delivered: list[int] = []
        self._out: list[bytes] = []
        self._ordinal = 0  # PDUs queued on this session, for the redelivery ledger
        self._session = 0  # the ledger's id of the current session (receiving links)
        self._undeliverable: list[tuple[int, str]] = []

    # --- called from other threads ---------------------------------------------------------------------

    def wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            self._wake_w.send(b"\0")

    def close_wake(self) -> None:
        self._wake_r.close()
        self._wake_w.close()

    def offer(self, rows: Sequence[QueuedMt]) -> None:
        self._offered.extend(rows)
        self.wake()

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.link_name,
            "state": self.machine.state.value,
            "since": self._since_wall.replace(tzinfo=dt.UTC).isoformat(),
            "reason": self.machine.reason,
        }

    # --- the thread ------------------------------------------------------------------------------------

    def run(self) -> None:
        try:
            self._run()
        except Exception:  # last resort: log loudly; the engine sees the state in status()
            log.exception("smpp %s: link thread crashed", self.link_name)
        finally:
            self._close()
            self.close_wake()
            self.service._db.close_thread_connection()

    def _event(self, event: BindEvent, reason: str = "") -> None:
        before = self.machine.state
        self.machine.handle(event, self.service.clock(), reason)
        if self.machine.state is not before:
            self._since_wall = utcnow()

    def _run(self) -> None:
        stopping = self.service.stopping
        self._event(BindEvent.START)
        while not stopping.is_set():
            try:
                try:
                    self._connect_and_bind()
                    self._serve()
                    return
                except _Down:
                    raise
                except Exception as bug:  # ours or smpplib's: never a dead thread, reconnect instead
                    log.exception("smpp %s: unexpected error; reconnecting", self.link_name)
                    connecting = self.machine.state is BindState.CONNECTING
                    event = BindEvent.CONNECT_FAILED if connecting else BindEvent.LINK_LOST
                    raise _Down(event, f"internal error: {bug!r}") from bug
            except _Down as exc:
                self._close()
                if self.tx:
                    self.service.outbox.on_link_lost()
                self._pending.clear()
                if self.machine.state is BindState.UNBINDING:
                    self._event(BindEvent.LINK_LOST, str(exc))
                    return
                self._event(exc.event, str(exc))
                delay = max(0.0, (self.machine.retry_at or 0.0) - self.service.clock())
                if stopping.wait(delay):
                    break
                self._event(BindEvent.RETRY)
        self._event(BindEvent.STOP)

    def _connect_and_bind(self) -> None:
        s = self.settings
        try:
            sock = socket.create_connection((s.host, s.port), timeout=s.response_timeout_s)
        except OSError as exc:
            raise _Down(BindEvent.CONNECT_FAILED, f"cannot connect to {s.host}:{s.port}: {exc}") from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(s.response_timeout_s)
        self._sock = sock
        self._ordinal = 0
        self._event(BindEvent.CONNECTED)
        bind = smpplib.smpp.make_pdu(
            self.bind_command,
            client=self._seq,
            system_id=s.system_id,
            password=s.password,
            system_type=s.system_type,
            addr_ton=TON_UNKNOWN,
            addr_npi=NPI_UNKNOWN,
            address_range=address_range(s.short_codes),
        )
        self._send(bind)
        self._write()
        deadline = self.service.clock() + s.response_timeout_s
        while True:
            if self.service.clock() > deadline:
                raise _Down(BindEvent.LINK_LOST, f"no {self.bind_command}_resp within {s.response_timeout_s:g} s")
            try:
                pdu = self._read_pdu()
            except _Down as exc:
                raise _Down(BindEvent.LINK_LOST, f"{exc} while binding") from None
            if pdu is None:
                continue
            if pdu.command == f"{self.bind_command}_resp" and pdu.sequence == bind.sequence:
                break
            if pdu.command == "generic_nack" and pdu.sequence == bind.sequence:
                break
            log.warning("smpp %s: ignoring %s while binding", self.link_name, pdu.command)
        if pdu.status != ESME_ROK:
            reason = f"bind refused by the SMSC: {status_name(pdu.status)}; check smpp.system_id and smpp.password"
            log.error("smpp %s: %s", self.link_name, reason)
            raise _Down(BindEvent.BIND_REFUSED, reason)
        self._event(BindEvent.BIND_OK, f"SMSC {_text(getattr(pdu, 'system_id', ''))}")
        if self.rx:
            self._session = self.service.acks.new_session()

    def _serve(self) -> None:
        s = self.settings
        service = self.service
        clock = service.clock
        next_enquire = clock() + s.enquire_link_s
        self._next_poll = 0.0
        drain_deadline: float | None = None
        while True:
            now = clock()
            if service.stopping.is_set():
                if drain_deadline is None:
                    drain_deadline = now + s.response_timeout_s
                if not any(r.part for r in self._pending.values()) or now >= drain_deadline:
                    self._unbind()
                    return
            elif self.tx:
                self._guarded(self._refill_outbox, now)
                self._submit_due(now)
            if self.rx:
                self._guarded(self._expire_parts, now)
            if now >= next_enquire:
                self._request(smpplib.smpp.make_pdu("enquire_link", client=self._seq), now)
                next_enquire = now + s.enquire_link_s
            oldest = min((r.sent_at for r in self._pending.values()), default=None)
            if oldest is not None and now - oldest > s.response_timeout_s and not self._readable():
                # Late only if nothing is waiting in our socket: a long batch of ours is not the SMSC's fault.
                late = min(self._pending.values(), key=lambda r: r.sent_at)
                raise _Down(BindEvent.LINK_LOST, f"no response to {late.command} within {s.response_timeout_s:g} s")
            deadlines = [next_enquire]
            if oldest is not None:
                deadlines.append(oldest + s.response_timeout_s)
            if drain_deadline is not None:
                deadlines.append(drain_deadline)
            if self.tx and not service.stopping.is_set():
                wakeup = service.outbox.next_wakeup(now)
                if wakeup is not None:
                    deadlines.append(wakeup)
                deadlines.append(self._next_poll)
            if self.rx:
                expiry = service.reassembler.next_deadline()
                if expiry is not None:
                    deadlines.append(expiry)
                if self._orphans:
                    deadlines.append(now + 0.2)
            self._write()
            timeout = max(0.0, min(deadlines) - clock())
            assert self._sock is not None
            readable, _, _ = select.select([self._sock, self._wake_r], [], [], timeout)
            if self._wake_r in readable:
                with contextlib.suppress(BlockingIOError):
                    self._wake_r.recv(4096)
            if self._sock in readable:
                self._read_batch()

    def _guarded(self, step: Callable[[float], None], now: float) -> None:
        """Database trouble must not kill the link: log it and try again at the next poll."""
        try:
            step(now)
        except Exception:
            log.exception("smpp %s: %s failed; retrying later", self.link_name, step.__name__)
            self._next_poll = now + self.settings.queue_poll_s

    def _unbind(self) -> None:
        self._event(BindEvent.STOP)
        unbind = smpplib.smpp.make_pdu("unbind", client=self._seq)
        try:
            self._send(unbind)
            self._write()
            deadline = self.service.clock() + self.settings.response_timeout_s
            while self.service.clock() < deadline:
                pdu = self._read_pdu()
                if pdu is None:
                    continue
                if pdu.command in ("unbind_resp", "generic_nack") and pdu.sequence == unbind.sequence:
                    self._event(BindEvent.UNBOUND, "unbound")
                    return
                if pdu.command == "deliver_sm":  # still ours to persist and acknowledge
                    self._handle_batch([pdu])
                    self._write()
                elif pdu.command.endswith("_resp"):
                    outcomes: list[Outcome] = []
                    self._dispatch_response(pdu, outcomes)
                    self._flush(outcomes, [])
        except _Down as exc:
            log.warning("smpp %s: unbind did not complete: %s", self.link_name, exc)
            self._event(BindEvent.LINK_LOST, str(exc))
            return
        self._event(BindEvent.LINK_LOST, "no unbind_resp")

    # --- wire ------------------------------------------------------------------------------------------

    def _close(self) -> None:
        self._out = []
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None

    def _send(self, pdu: Any) -> int:
        """Queue a PDU; :meth:`_write` sends everything queued in one system call per loop turn."""
        return self._queue(pdu.generate())

    def _queue(self, data: bytes) -> int:
        """Queue encoded PDU bytes; returns their position among the PDUs of this session."""
        self._out.append(data)
        self._ordinal += 1
        return self._ordinal

    def _write(self) -> None:
        if not self._out:
            return
        assert self._sock is not None
        data, self._out = b"".join(self._out), []
        try:
            self._sock.sendall(data)
        except OSError as exc:
            raise _Down(BindEvent.LINK_LOST, f"send failed: {exc}") from None

    def _request(self, pdu: Any, now: float) -> None:
        self._pending[pdu.sequence] = _Request(pdu.command, now, ordinal=self._send(pdu))

    def _respond(self, command: str, sequence: int, status: int = ESME_ROK) -> int:
        return self._queue(wire.response(_RESPONSE_IDS[command], sequence, status))

    def _recv_exact(self, size: int) -> bytes:
        assert self._sock is not None
        chunks: list[bytes] = []
        got = 0
        while got < size:
            try:
                chunk = self._sock.recv(size - got)
            except TimeoutError:
                raise _Down(BindEvent.LINK_LOST, "timed out in the middle of a PDU") from None
            except OSError as exc:
                raise _Down(BindEvent.LINK_LOST, f"receive failed: {exc}") from None
            if not chunk:
                raise _Down(BindEvent.LINK_LOST, "the SMSC closed the connection")
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)

    def _read_pdu(self) -> Any:
        """One PDU from the socket; ``None`` for an unknown command (answered with generic_nack)."""
        header = self._recv_exact(16)
        length, command_id, _status, sequence = struct.unpack(">LLLL", header)
        if not 16 <= length <= MAX_PDU_LENGTH:
            raise _Down(BindEvent.LINK_LOST, f"garbage from the SMSC: command_length {length} ({header.hex()})")
        raw = header + self._recv_exact(length - 16)
        if command_id == wire.SUBMIT_SM_RESP:  # the hot path: parsed without smpplib's descriptors
            return wire.parse_submit_sm_resp(raw)
        try:
            pdu = smpplib.smpp.parse_pdu(raw, client=_NO_SEQUENCE, allow_unknown_opt_params=True)
        except smpplib.exceptions.UnknownCommandError:
            log.warning("smpp %s: unknown command_id 0x%08X from the SMSC", self.link_name, command_id)
            if not command_id & 0x80000000:
                self._respond("generic_nack", sequence, ESME_RINVCMDID)
            return None
        except Exception as exc:
            raise _Down(BindEvent.LINK_LOST, f"garbage from the SMSC: {exc!r} in {raw[:48].hex()}") from None
        return pdu

    def _readable(self) -> bool:
        assert self._sock is not None
        return bool(select.select([self._sock], [], [], 0)[0])

    def _read_batch(self) -> None:
        assert self._sock is not None
        pdus = [self._read_pdu()]
        while len(pdus) < READ_BATCH and select.select([self._sock], [], [], 0)[0]:
            pdus.append(self._read_pdu())
        if _QUICKACK is not None:
            # Acknowledge at once: an SMSC with Nagle on holds its next PDU (the receipt after a
            # submit_sm_resp, the next MO) until our ACK, which Linux would otherwise delay by up to 40 ms.
            with contextlib.suppress(OSError):
                self._sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
        self._handle_batch([p for p in pdus if p is not None])

    # --- PDU handling ----------------------------------------------------------------------------------

    def _handle_batch(self, pdus: list[Any]) -> None:
        outcomes: list[Outcome] = []
        deliveries: list[Any] = []
        for pdu in pdus:
            command = pdu.command
            if command == "deliver_sm":
                deliveries.append(pdu)
            elif command == "enquire_link":
                self._respond("enquire_link_resp", pdu.sequence)
            elif command == "unbind":
                self._respond("unbind_resp", pdu.sequence)
                self._flush(outcomes, deliveries)
                with contextlib.suppress(_Down):
                    self._write()
                raise _Down(BindEvent.LINK_LOST, "the SMSC unbound")
            elif command.endswith("_resp") or command == "generic_nack":
                self._dispatch_response(pdu, outcomes)
            elif command == "alert_notification":
                log.info("smpp %s: alert_notification for %s", self.link_name, _text(pdu.source_addr))
            else:
                log.warning("smpp %s: unexpected %s from the SMSC", self.link_name, command)
                self._respond("generic_nack", pdu.sequence, ESME_RINVCMDID)
        self._flush(outcomes, deliveries)

    def _dispatch_response(self, pdu: Any, outcomes: list[Outcome]) -> None:
        request = self._pending.pop(pdu.sequence, None)
        if request is None:
            log.warning("smpp %s: %s for unknown sequence %d", self.link_name, pdu.command, pdu.sequence)
            return
        if self.rx:  # the SMSC has read everything we wrote up to this request (our deliver_sm_resp too)
            self.service.acks.confirmed(self._session, request.ordinal)
        if request.part is None:
            if pdu.status != ESME_ROK:
                log.warning("smpp %s: %s answered %s", self.link_name, request.command, status_name(pdu.status))
            return
        status = pdu.status if pdu.command != "generic_nack" or pdu.status else ESME_RSYSERR
        message_id = _text(getattr(pdu, "message_id", "")) if status == ESME_ROK else ""
        outcome = self.service.outbox.on_response(request.part, status, message_id, self.service.clock())
        if outcome is not None:
            outcomes.append(outcome)

    def _flush(self, outcomes: list[Outcome], deliveries: list[Any]) -> None:
        """Record the batch: submit outcomes first, then the deliver_sm, whose deliver_sm_resp only go out
        after their transaction committed.

        A submit_sm_resp is the SMSC's word that it has the MT; until its message id is committed, a crash
        sends the MT again (issue 13 item 4). So outcomes never wait behind MO persistence: with MOs in the
        batch they commit on their own first; on the MT hot path (outcomes and receipts matched in memory)
        they are the first statement of the one short transaction.
        """
        if not outcomes and not deliveries and not self._orphans:
            return
        service = self.service
        mono, wall = service.clock(), utcnow()

        def retry_at(at: float) -> dt.datetime:
            return wall + dt.timedelta(seconds=max(0.0, at - mono))

        items = [(pdu, self._classify(pdu)) for pdu in deliveries]
        if outcomes and (items or self._orphans):
            try:
                with service.core() as connection:
                    store.settle(connection, outcomes, wall, retry_at)
            except Exception:  # the rows stay "submitting": submitted again at the next start
                log.exception("smpp %s: could not record %d submit outcomes", self.link_name, len(outcomes))
            recorded, outcomes = outcomes, []
        else:
            recorded = outcomes
        for outcome in recorded:
            if isinstance(outcome, MessageSubmitted):
                service.remember_ids(outcome.mt_id, outcome.message_ids)
                service.counters["mt"] += 1
                self._settle_id(outcome.mt_id)
            elif isinstance(outcome, MessageFailed):
                service.counters["failed"] += 1
                self._settle_id(outcome.mt_id)
                log.warning("smpp: MT %d failed: %s", outcome.mt_id, outcome.error)
            elif isinstance(outcome, MessageRetrying):
                service.counters["throttled"] += 1
        self._delivered, self._undeliverable = [], []
        rest: list[tuple[Any, Inbound]] = []
        for pdu, item in items:  # receipts for MTs of this process are settled in memory first
            if isinstance(item, Receipt) and self._match_receipt(item.receipt):
                service.counters["dlr"] += 1
            else:
                rest.append((pdu, item))
        new_mos: list[int] = []
        keys: dict[int, MoKey] = {}  # deliver_sm sequence -> the MO identity it carried (for the ledger)
        try:
            if not rest and not self._orphans:  # the MT hot path: plain UPDATEs on a kept connection
                with service.core() as connection:
                    store.settle(connection, outcomes, wall, retry_at)
                    store.mark_delivered(connection, self._delivered, wall)
                    for mt_id, error in self._undeliverable:
                        store.mark_undeliverable(connection, mt_id, error, wall)
            else:
                with service.transaction() as session:
                    for pdu, item in rest:
                        key = self._persist(session, item, mono, wall, new_mos, set(keys.values()))
                        if key is not None:
                            keys[pdu.sequence] = key
                    self._retry_orphans(session, mono, wall)
                    store.mark_delivered(session, self._delivered, wall)
                    for mt_id, error in self._undeliverable:
                        store.mark_undeliverable(session, mt_id, error, wall)
            status = ESME_ROK
        except Exception:
            log.exception(
                "smpp %s: could not persist %d deliver_sm; asking the SMSC to retry", self.link_name, len(items)
            )
            status = ESME_RX_T_APPN
            new_mos.clear()
            keys.clear()
            self._reload_parts()
        for pdu, _item in items:
            ordinal = self._respond("deliver_sm_resp", pdu.sequence, status)
            key = keys.get(pdu.sequence)
            if key is not None:
                service.acks.acknowledged(key, self._session, received_at=mono, ordinal=ordinal, now=service.clock())
        for mo_id in new_mos:
            service.submit_mo(mo_id)

    def _classify(self, pdu: Any) -> Inbound:
        def opt_int(name: str) -> int | None:
            value = getattr(pdu, name, None)
            return value if isinstance(value, int) else None

        receipted = getattr(pdu, "receipted_message_id", None)
        payload = getattr(pdu, "message_payload", None)
        return classify(
            DeliverSm(
                source=_text(pdu.source_addr),
                source_ton=pdu.source_addr_ton or 0,
                destination=_text(pdu.destination_addr),
                esm_class=pdu.esm_class or 0,
                data_coding=pdu.data_coding or DC_DEFAULT,
                short_message=pdu.short_message or b"",
                message_payload=payload if isinstance(payload, bytes) else None,
                sar_msg_ref_num=opt_int("sar_msg_ref_num"),
                sar_total_segments=opt_int("sar_total_segments"),
                sar_segment_seqnum=opt_int("sar_segment_seqnum"),
                receipted_message_id=_text(receipted).rstrip("\0") if receipted else None,
                message_state=opt_int("message_state"),
            )
        )

    def _persist(
        self, session: Session, item: Inbound, mono: float, wall: dt.datetime, new_mos: list[int], batch: set[MoKey]
    ) -> MoKey | None:
        """Persist one deliver_sm; returns the MO identity it carried (``batch``: those earlier in the batch,
        not answered yet, so a repeat among them is the SMSC's)."""
        service = self.service
        window = self.settings.dedup_window_s

        def judge(key: MoKey) -> Callable[[], bool]:
            return lambda: key in batch or service.acks.is_redelivery(key, self._session, mono)

        if isinstance(item, Mo):
            key = (item.source, item.destination, item.text)
            mo = store.record_mo(
                session,
                source=item.source,
                destination=item.destination,
                text=item.text,
                now=wall,
                window_s=window,
                is_redelivery=judge(key),
            )
            if mo is None:
                service.counters["duplicates"] += 1
                log.info("smpp: MO from %s is a redelivery; acknowledged, not run again", item.source)
            else:
                service.counters["mo"] += 1
                new_mos.append(mo.id)
            return key
        elif isinstance(item, Part):
            if not store.save_part(session, item.segment, wall):
                service.counters["duplicates"] += 1
                return None
            assembled = service.reassembler.add(item.segment, mono)
            if assembled is not None:
                store.finish_parts(session, assembled.key)
                return self._persist(session, decode_joined(assembled), mono, wall, new_mos, batch)
        elif isinstance(item, Receipt):  # not one of ours in memory: look it up
            service.counters["dlr"] += 1
            if not self._apply_receipt(session, item.receipt, wall):
                self._orphans.append((mono + RECEIPT_RETRY_S, item.receipt))
        elif isinstance(item, Undecodable):
            service.counters["invalid"] += 1
            if item.is_receipt:
                log.warning("smpp: unreadable delivery receipt from %s: %s", item.source, item.reason)
                return None
            log.warning("smpp: undecodable MO from %s: %s", item.source, item.reason)
            identity = "undecodable:" + item.raw.hex()
            store.record_invalid_mo(
                session,
                source=item.source,
                destination=item.destination,
                text="",
                error=item.reason,
                reply=store.UNREADABLE_REPLY,
                reply_from=self._reply_from(item.destination),
                now=wall,
                window_s=window,
                identity=identity,
                is_redelivery=judge((item.source, item.destination, identity)),
            )
            return (item.source, item.destination, identity)
        return None

    def _reply_from(self, destination: str) -> str:
        codes = self.settings.short_codes
        return destination if destination in codes else codes[0]

    def _match_receipt(self, receipt: DeliveryReceipt) -> bool:
        """Fast path: a receipt for an MT this process submitted; written in bulk by :meth:`_flush`."""
        service = self.service
        known = service.known_mt(receipt.message_id)
        if known is None:
            return False
        mt_id, parts = known
        if not receipt.final:
            return True
        if receipt.delivered:
            delivered = service.delivered_parts.setdefault(mt_id, set())
            delivered.add(receipt.message_id)
            if len(delivered) >= parts:
                self._delivered.append(mt_id)
                service.delivered_parts.pop(mt_id, None)
        else:
            self._undeliverable.append((mt_id, f"{receipt.stat} err:{receipt.err}"))
            service.delivered_parts.pop(mt_id, None)
        return True

    def _apply_receipt(self, session: Session, receipt: DeliveryReceipt, wall: dt.datetime) -> bool:
        """Slow path: look the message id up in the database (e.g. an MT submitted before a restart)."""
        service = self.service
        mt = store.find_mt(session, receipt.message_id)
        if mt is None:
            return False
        parts = service.delivered_parts.setdefault(mt.id, set())
        store.apply_receipt(session, receipt, mt_id=mt.id, delivered_parts=parts, now=wall)
        if receipt.final and mt.status.value not in ("submitted", "queued"):
            service.delivered_parts.pop(mt.id, None)
        return True

    def _retry_orphans(self, session: Session, mono: float, wall: dt.datetime) -> None:
        orphans, self._orphans = self._orphans, []
        for deadline, receipt in orphans:
            if self._match_receipt(receipt) or self._apply_receipt(session, receipt, wall):
                continue
            if mono < deadline:
                self._orphans.append((deadline, receipt))
            else:
                log.warning("smpp: delivery receipt for unknown message id %s (%s)", receipt.message_id, receipt.stat)

    def _expire_parts(self, now: float) -> None:
        service = self.service
        if self._orphans:
            self._flush([], [])
        expired = service.reassembler.expire(now)
        if expired:
            with service.transaction() as session:
                for message in expired:
                    self._expire_one(session, message)

    def _expire_one(self, session: Session, message: Expired) -> None:
        source, destination, _ref, total = message.key
        decoded = decode_joined(message)
        text = decoded.text if isinstance(decoded, Mo) else ""
        error = f"incomplete concatenated MO: parts {','.join(map(str, message.received))} of {total} arrived"
        log.warning("smpp: %s from %s", error, source)
        store.finish_parts(session, message.key)
        self.service.counters["invalid"] += 1
        store.record_invalid_mo(
            session,
            source=source,
            destination=destination,
            text=text,
            error=error,
            reply=store.INCOMPLETE_REPLY,
            reply_from=self._reply_from(destination),
            now=utcnow(),
            window_s=self.settings.dedup_window_s,
            identity=f"incomplete:{message.key[2]}:{total}:{message.payload.hex()}",
        )

    def _reload_parts(self) -> None:
        """After a failed transaction the reassembler may hold parts the database does not: rebuild it."""
        service = self.service
        try:
            with service.transaction() as session:
                parts = store.load_parts(session)
        except Exception:
            log.exception("smpp: could not reload MO parts")
            return
        service.reassembler = Reassembler(self.settings.reassembly_timeout_s)
        now = service.clock()
        for segment in parts:
            service.reassembler.add(segment, now)

    # --- MT --------------------------------------------------------------------------------------------

    def _refill_outbox(self, now: float) -> None:
        """Fill the outbox: first MTs handed over in-process, then (when due) QUEUED rows from the table."""
        outbox = self.service.outbox
        cap = max(4 * self.settings.window, 200)
        failures: list[tuple[int, str]] = []
        done: list[Outcome] = []
        while self._offered and outbox.backlog < cap:
            row = self._offered.popleft()
            if row.id not in outbox and row.id not in self._settled:  # the poll may have been first
                self._add(row, failures, done)
        due = now >= self._next_poll or (self._more_queued and outbox.backlog < cap // 2)
        if outbox.backlog >= cap or not (due or failures or done):
            return
        wall = utcnow()
        with self.service.transaction() as session:
            for mt_id, error in failures:
                store.fail_mt(session, mt_id, error, wall)
            if due:
                self._next_poll = now + self.settings.queue_poll_s
                limit = cap - outbox.backlog
                rows = store.claim_queued(session, exclude=outbox.ids(), limit=limit, now=wall)
                failures = []
                for row in rows:
                    if row.id not in self._settled:
                        self._add(row, failures, done)
                for mt_id, error in failures:
                    store.fail_mt(session, mt_id, error, wall)
                self._more_queued = len(rows) == limit
            store.settle(session, done, wall, lambda at: wall)

    def _add(self, row: QueuedMt, failures: list[tuple[int, str]], done: list[Outcome]) -> None:
        try:
            # The UDH reference comes from the MT id, not a counter: parts submitted again after a restart
            # must carry the reference of the parts the SMSC accepted before it.
            encoded = encode_message(row.text, ref=row.id % 256)
        except EncodingError as exc:
            failures.append((row.id, str(exc)))
            self._settle_id(row.id)
            return
        outcome = self.service.outbox.add(
            OutgoingMessage(row.id, row.source, row.destination, encoded), row.message_ids
        )
        if outcome is not None:  # every part was accepted before a restart: only the status was missing
            done.append(outcome)
            self._settle_id(row.id)

    def _settle_id(self, mt_id: int) -> None:
        self._settled[mt_id] = None
        while len(self._settled) > MT_ID_CACHE:
            self._settled.popitem(last=False)

    def _submit_due(self, now: float) -> None:
        """Mark the due parts "submitting" (committed), then queue their submit_sm: a crash after the
        write can then never pass for "never sent" (see :mod:`bridge.smpp.store`)."""
        outbox = self.service.outbox
        parts = outbox.due(now)
        if not parts:
            return
        submits = [(part, self._seq.next_sequence()) for part in parts]
        try:
            with self.service.core() as connection:
                store.mark_submitting(connection, submits, utcnow())
        except Exception:
            log.exception("smpp %s: could not mark %d submits; retrying later", self.link_name, len(parts))
            outbox.retract([part.key for part in parts])
            self._next_poll = now + self.settings.queue_poll_s
            return
        for part, sequence in submits:
            self._submit(part, sequence, now)

    def _submit(self, part: SubmitPart, sequence: int, now: float) -> None:
        src_ton, src_npi, source = _address(part.source)
        dst_ton, dst_npi, destination = _address(part.destination)
        if src_ton == TON_UNKNOWN:
            src_npi = NPI_UNKNOWN
        request = self._pending[sequence] = _Request("submit_sm", now, part.key)
        request.ordinal = self._queue(
            wire.submit_sm(
                sequence,
                source_ton=src_ton,
                source_npi=src_npi,
                source=source,
                dest_ton=dst_ton,
                dest_npi=dst_npi,
                destination=destination,
                esm_class=part.esm_class,
                registered_delivery=REGISTERED_DELIVERY_RECEIPT if self.settings.registered_delivery else 0,
                data_coding=part.data_coding,
                short_message=part.short_message,
            )
        )
