"""One SMPP session over a blocking socket in its own thread (glue): connect, bind, serve, reconnect with
back-off, unbind on stop (SMPP 3.4 §2.2-2.4, §4.1, §4.2, §4.11).

The thread waits in ``select`` on the socket and a wake-up socket pair, reads every PDU that is ready, and
handles them as one batch: responses settle requests, deliver_sm go to the :class:`~bridge.smpp.intake.Intake`
(persisted and COMMITTED before their deliver_sm_resp is written), and on a transmitting link the
:class:`~bridge.smpp.sender.Sender` fills the outbox and hands out the submit_sm to write. The bind state
lives in the pure :class:`~bridge.smpp.bind.BindMachine`, sequence numbers, pending requests and session
timers in :mod:`bridge.smpp.session`; smpplib encodes and parses the PDUs off the MT hot path.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import select
import socket
import struct
import threading
from collections.abc import Callable, Sequence
from typing import Any

import smpplib.exceptions
import smpplib.smpp

from bridge.db.models import utcnow
from bridge.smpp import wire
from bridge.smpp.bind import BindEvent, BindMachine, BindState, address_range
from bridge.smpp.constants import (
    ESME_RINVCMDID,
    ESME_ROK,
    ESME_RSYSERR,
    MAX_PDU_LENGTH,
    NPI_UNKNOWN,
    TON_UNKNOWN,
    status_name,
)
from bridge.smpp.context import LinkContext
from bridge.smpp.errors import LinkError
from bridge.smpp.feed import encode_submit
from bridge.smpp.intake import Intake
from bridge.smpp.outbox import Outcome
from bridge.smpp.queue import QueuedMt
from bridge.smpp.sender import Sender, wall_clock
from bridge.smpp.session import NO_SEQUENCE, Pending, Request, Timers
from bridge.smpp.session import Sequence as SequenceNumbers

log = logging.getLogger(__name__)

READ_BATCH = 64
"""PDUs read before handling them as one batch (one transaction, then the responses)."""

_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)
_RESPONSE_IDS = {
    "deliver_sm_resp": wire.DELIVER_SM_RESP,
    "enquire_link_resp": wire.ENQUIRE_LINK_RESP,
    "generic_nack": wire.GENERIC_NACK,
    "unbind_resp": wire.UNBIND_RESP,
}


class Down(LinkError):
    """The session is lost; ``event`` says which transition of the bind machine that is."""

    def __init__(self, event: BindEvent, reason: str) -> None:
        super().__init__(reason)
        self.event = event


class Link(threading.Thread):
    """One SMPP session: connect, bind, serve, reconnect with back-off; unbind on stop."""

    def __init__(self, context: LinkContext, *, name: str, bind_command: str, rx: bool, tx: bool) -> None:
        super().__init__(name=f"smpp-{name}", daemon=True)
        self.context = context
        self.settings = s = context.settings
        self.link_name = name
        self.bind_command = bind_command
        self.rx = rx
        self.tx = tx
        self.machine = BindMachine(
            name=name, reconnect_min_s=s.reconnect_min_s, reconnect_max_s=s.reconnect_max_s, rng=context.rng
        )
        self.intake = Intake(context, link_name=name)
        self.sender = Sender(context, link_name=name)
        self._since_wall = utcnow()
        self._sock: socket.socket | None = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._seq = SequenceNumbers()
        self._pending = Pending()
        self._out: list[bytes] = []
        self._ordinal = 0  # PDUs queued on this session, for the redelivery ledger

    # --- called from other threads ---------------------------------------------------------------------

    def wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            self._wake_w.send(b"\0")

    def close_wake(self) -> None:
        self._wake_r.close()
        self._wake_w.close()

    def offer(self, rows: Sequence[QueuedMt]) -> None:
        self.sender.offer(rows)
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
            self.context.db.close_thread_connection()

    def _event(self, event: BindEvent, reason: str = "") -> None:
        before = self.machine.state
        self.machine.handle(event, self.context.clock(), reason)
        if self.machine.state is not before:
            self._since_wall = utcnow()

    def _run(self) -> None:
        stopping = self.context.stopping
        self._event(BindEvent.START)
        while not stopping.is_set():
            try:
                try:
                    self._connect_and_bind()
                    self._serve()
                    return
                except Down:
                    raise
                except Exception as bug:  # ours or smpplib's: never a dead thread, reconnect instead
                    log.exception("smpp %s: unexpected error; reconnecting", self.link_name)
                    connecting = self.machine.state is BindState.CONNECTING
                    event = BindEvent.CONNECT_FAILED if connecting else BindEvent.LINK_LOST
                    raise Down(event, f"internal error: {bug!r}") from bug
            except Down as exc:
                self._close()
                if self.tx:
                    self.context.outbox.on_link_lost()
                self._pending.clear()
                if self.machine.state is BindState.UNBINDING:
                    self._event(BindEvent.LINK_LOST, str(exc))
                    return
                self._event(exc.event, str(exc))
                delay = max(0.0, (self.machine.retry_at or 0.0) - self.context.clock())
                if stopping.wait(delay):
                    break
                self._event(BindEvent.RETRY)
        self._event(BindEvent.STOP)

    def _connect_and_bind(self) -> None:
        s = self.settings
        try:
            sock = socket.create_connection((s.host, s.port), timeout=s.response_timeout_s)
        except OSError as exc:
            raise Down(BindEvent.CONNECT_FAILED, f"cannot connect to {s.host}:{s.port}: {exc}") from None
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
        pdu = self._await_bind_resp(bind.sequence)
        if pdu.status != ESME_ROK:
            reason = f"bind refused by the SMSC: {status_name(pdu.status)}; check smpp.system_id and smpp.password"
            log.error("smpp %s: %s", self.link_name, reason)
            raise Down(BindEvent.BIND_REFUSED, reason)
        self._event(BindEvent.BIND_OK, f"SMSC {wire.text(getattr(pdu, 'system_id', ''))}")
        if self.rx:
            self.intake.session = self.context.acks.new_session()

    def _await_bind_resp(self, sequence: int) -> Any:
        """The response (or generic_nack) to our bind; anything else the SMSC sends first is ignored."""
        timeout = self.settings.response_timeout_s
        deadline = self.context.clock() + timeout
        while True:
            if self.context.clock() > deadline:
                raise Down(BindEvent.LINK_LOST, f"no {self.bind_command}_resp within {timeout:g} s")
            try:
                pdu = self._read_pdu()
            except Down as exc:
                raise Down(BindEvent.LINK_LOST, f"{exc} while binding") from None
            if pdu is None:
                continue
            if pdu.command in (f"{self.bind_command}_resp", "generic_nack") and pdu.sequence == sequence:
                return pdu
            log.warning("smpp %s: ignoring %s while binding", self.link_name, pdu.command)

    def _serve(self) -> None:
        s = self.settings
        context = self.context
        clock = context.clock
        timers = Timers(enquire_link_s=s.enquire_link_s, response_timeout_s=s.response_timeout_s, now=clock())
        self.sender.feed.next_poll = 0.0
        while True:
            now = clock()
            if context.stopping.is_set():
                if timers.drained(now, self._pending):
                    self._unbind()
                    return
            elif self.tx:
                self._guarded(self._refill_outbox, now)
                self._submit_due(now)
            if self.rx:
                self._guarded(self._expire_parts, now)
            if timers.enquire_due(now):
                self._request(smpplib.smpp.make_pdu("enquire_link", client=self._seq), now)
            late = timers.overdue(now, self._pending)
            if late is not None and not self._readable():
                # Late only if nothing is waiting in our socket: a long batch of ours is not the SMSC's fault.
                raise Down(BindEvent.LINK_LOST, f"no response to {late.command} within {s.response_timeout_s:g} s")
            deadline = self._next_deadline(now, timers)
            self._write()
            timeout = max(0.0, deadline - clock())
            assert self._sock is not None
            readable, _, _ = select.select([self._sock, self._wake_r], [], [], timeout)
            if self._wake_r in readable:
                with contextlib.suppress(BlockingIOError):
                    self._wake_r.recv(4096)
            if self._sock in readable:
                self._read_batch()

    def _next_deadline(self, now: float, timers: Timers) -> float:
        """When the serve loop must look again if nothing arrives."""
        context = self.context
        deadlines = timers.deadlines(self._pending)
        if self.tx and not context.stopping.is_set():
            wakeup = context.outbox.next_wakeup(now)
            if wakeup is not None:
                deadlines.append(wakeup)
            deadlines.append(self.sender.feed.next_poll)
        if self.rx:
            for at in (context.reassembler.next_deadline(), self.intake.orphans.next_check(now)):
                if at is not None:
                    deadlines.append(at)
        return min(deadlines)

    def _guarded(self, step: Callable[[float], None], now: float) -> None:
        """Database trouble must not kill the link: log it and try again at the next poll."""
        try:
            step(now)
        except Exception:
            log.exception("smpp %s: %s failed; retrying later", self.link_name, step.__name__)
            self.sender.feed.postpone(now)

    def _unbind(self) -> None:
        self._event(BindEvent.STOP)
        unbind = smpplib.smpp.make_pdu("unbind", client=self._seq)
        try:
            self._send(unbind)
            self._write()
            deadline = self.context.clock() + self.settings.response_timeout_s
            while self.context.clock() < deadline:
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
        except Down as exc:
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
            raise Down(BindEvent.LINK_LOST, f"send failed: {exc}") from None

    def _request(self, pdu: Any, now: float) -> None:
        self._pending.add(pdu.sequence, Request(pdu.command, now, ordinal=self._send(pdu)))

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
                raise Down(BindEvent.LINK_LOST, "timed out in the middle of a PDU") from None
            except OSError as exc:
                raise Down(BindEvent.LINK_LOST, f"receive failed: {exc}") from None
            if not chunk:
                raise Down(BindEvent.LINK_LOST, "the SMSC closed the connection")
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)

    def _read_pdu(self) -> Any:
        """One PDU from the socket; ``None`` for an unknown command (answered with generic_nack)."""
        header = self._recv_exact(16)
        length, command_id, _status, sequence = struct.unpack(">LLLL", header)
        if not 16 <= length <= MAX_PDU_LENGTH:
            raise Down(BindEvent.LINK_LOST, f"garbage from the SMSC: command_length {length} ({header.hex()})")
        raw = header + self._recv_exact(length - 16)
        if command_id == wire.SUBMIT_SM_RESP:  # the hot path: parsed without smpplib's descriptors
            return wire.parse_submit_sm_resp(raw)
        try:
            pdu = smpplib.smpp.parse_pdu(raw, client=NO_SEQUENCE, allow_unknown_opt_params=True)
        except smpplib.exceptions.UnknownCommandError:
            log.warning("smpp %s: unknown command_id 0x%08X from the SMSC", self.link_name, command_id)
            if not command_id & 0x80000000:
                self._respond("generic_nack", sequence, ESME_RINVCMDID)
            return None
        except Exception as exc:
            raise Down(BindEvent.LINK_LOST, f"garbage from the SMSC: {exc!r} in {raw[:48].hex()}") from None
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
                with contextlib.suppress(Down):
                    self._write()
                raise Down(BindEvent.LINK_LOST, "the SMSC unbound")
            elif command.endswith("_resp") or command == "generic_nack":
                self._dispatch_response(pdu, outcomes)
            elif command == "alert_notification":
                log.info("smpp %s: alert_notification for %s", self.link_name, wire.text(pdu.source_addr))
            else:
                log.warning("smpp %s: unexpected %s from the SMSC", self.link_name, command)
                self._respond("generic_nack", pdu.sequence, ESME_RINVCMDID)
        self._flush(outcomes, deliveries)

    def _dispatch_response(self, pdu: Any, outcomes: list[Outcome]) -> None:
        request = self._pending.pop(pdu.sequence)
        if request is None:
            log.warning("smpp %s: %s for unknown sequence %d", self.link_name, pdu.command, pdu.sequence)
            return
        if self.rx:  # the SMSC has read everything we wrote up to this request (our deliver_sm_resp too)
            self.context.acks.confirmed(self.intake.session, request.ordinal)
        if request.part is None:
            if pdu.status != ESME_ROK:
                log.warning("smpp %s: %s answered %s", self.link_name, request.command, status_name(pdu.status))
            return
        status = pdu.status if pdu.command != "generic_nack" or pdu.status else ESME_RSYSERR
        message_id = wire.text(getattr(pdu, "message_id", "")) if status == ESME_ROK else ""
        outcome = self.context.outbox.on_response(request.part, status, message_id, self.context.clock())
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
        intake, sender, context = self.intake, self.sender, self.context
        if not outcomes and not deliveries and not intake.orphans:
            return
        mono, wall = context.clock(), utcnow()
        retry_at = wall_clock(mono, wall)
        items = [(pdu, intake.classify(pdu)) for pdu in deliveries]
        if outcomes and (items or intake.orphans):
            sender.commit(outcomes, wall, retry_at)
            recorded, outcomes = outcomes, []
        else:
            recorded = outcomes
        sender.count(recorded)
        result = intake.record(items, outcomes, mono, wall, retry_at)
        for pdu, _item in items:
            ordinal = self._respond("deliver_sm_resp", pdu.sequence, result.status)
            key = result.keys.get(pdu.sequence)
            if key is not None:
                context.acks.acknowledged(key, intake.session, received_at=mono, ordinal=ordinal, now=context.clock())
        for mo_id in result.new_mos:
            context.submit_mo(mo_id)

    # --- the steps of the serve loop -------------------------------------------------------------------

    def _refill_outbox(self, now: float) -> None:
        self.sender.refill(now)

    def _expire_parts(self, now: float) -> None:
        if self.intake.orphans:
            self._flush([], [])
        self.intake.expire_parts(now)

    def _submit_due(self, now: float) -> None:
        registered_delivery = self.settings.registered_delivery
        for part, sequence in self.sender.due(now, self._seq.next_sequence):
            request = self._pending.add(sequence, Request("submit_sm", now, part.key))
            request.ordinal = self._queue(encode_submit(part, sequence, registered_delivery=registered_delivery))
