"""The transmitting link's feed: which queued MTs enter the :class:`~bridge.smpp.outbox.Outbox`, when the
queue table is read, and the submit_sm of a part (SMPP 3.4 §4.4.1, §5.2.5 TON, §5.2.6 NPI).

Theory of operation: MTs queued in this process are handed over in memory (:meth:`MtFeed.offer`, from the
committing thread); MTs queued by other processes are found by reading the table every ``queue_poll_s``,
or at once while the last read was full and the outbox has room. The outbox holds at most :attr:`cap`
messages, so a burst cannot take all memory. An MT may be both offered and read back: the ids of MTs
already settled are kept (bounded) so neither path sends one twice.

Pure: :meth:`MtFeed.refill` says what to write and whether to read the table; the glue
(:mod:`bridge.smpp.sender`) does the reading and writing and hands the rows back to :meth:`MtFeed.claimed`.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from bridge.smpp import wire
from bridge.smpp.concat import encode_message
from bridge.smpp.constants import NPI_ISDN, NPI_UNKNOWN, REGISTERED_DELIVERY_RECEIPT, TON_INTERNATIONAL, TON_UNKNOWN
from bridge.smpp.delivery import MT_ID_CACHE
from bridge.smpp.errors import EncodingError
from bridge.smpp.outbox import Outbox, Outcome, OutgoingMessage, SubmitPart
from bridge.smpp.queue import QueuedMt

Failure = tuple[int, str]  # (MT id, why it cannot be sent)


def address(number: str) -> tuple[int, int, str]:
    """``+447700900001`` -> international ISDN ``447700900001``; anything else as given, TON unknown."""
    if number.startswith("+") and number[1:].isdigit():
        return TON_INTERNATIONAL, NPI_ISDN, number[1:]
    return TON_UNKNOWN, NPI_ISDN if number.isdigit() else NPI_UNKNOWN, number


def encode_submit(part: SubmitPart, sequence: int, *, registered_delivery: bool) -> bytes:
    """The submit_sm carrying ``part``; an alphanumeric (TON unknown) source goes with NPI unknown."""
    src_ton, src_npi, source = address(part.source)
    dst_ton, dst_npi, destination = address(part.destination)
    if src_ton == TON_UNKNOWN:
        src_npi = NPI_UNKNOWN
    return wire.submit_sm(
        sequence,
        source_ton=src_ton,
        source_npi=src_npi,
        source=source,
        dest_ton=dst_ton,
        dest_npi=dst_npi,
        destination=destination,
        esm_class=part.esm_class,
        registered_delivery=REGISTERED_DELIVERY_RECEIPT if registered_delivery else 0,
        data_coding=part.data_coding,
        short_message=part.short_message,
    )


@dataclass
class Refill:
    """What one refill must write: MTs to fail, outcomes known already, and whether to read the table."""

    failures: list[Failure] = field(default_factory=list)
    """MTs that cannot be encoded: FAILED."""
    done: list[Outcome] = field(default_factory=list)
    """MTs whose every part the SMSC accepted before a restart: only the status was missing."""
    poll_limit: int | None = None
    """Read at most this many QUEUED rows (``None``: not now)."""


class MtFeed:
    def __init__(self, outbox: Outbox, *, window: int, queue_poll_s: float) -> None:
        self.outbox = outbox
        self.cap = max(4 * window, 200)
        self.queue_poll_s = queue_poll_s
        self.offered: deque[QueuedMt] = deque()  # appended by other threads (deque appends are atomic)
        self.next_poll = 0.0
        self.more_queued = False
        self._settled: OrderedDict[int, None] = OrderedDict()

    def offer(self, rows: Sequence[QueuedMt]) -> None:
        self.offered.extend(rows)

    def settled(self, mt_id: int) -> None:
        """``mt_id`` is done (submitted, failed): neither a late hand-over nor a poll may add it again."""
        self._settled[mt_id] = None
        while len(self._settled) > MT_ID_CACHE:
            self._settled.popitem(last=False)

    def is_settled(self, mt_id: int) -> bool:
        return mt_id in self._settled

    def postpone(self, now: float) -> None:
        """The database failed us: read the table again only after ``queue_poll_s``."""
        self.next_poll = now + self.queue_poll_s

    def refill(self, now: float) -> Refill | None:
        """Move handed-over MTs into the outbox; returns what to write, or ``None`` when there is nothing."""
        outbox = self.outbox
        refill = Refill()
        while self.offered and outbox.backlog < self.cap:
            row = self.offered.popleft()
            if row.id not in outbox and row.id not in self._settled:  # the poll may have been first
                self._add(row, refill)
        due = now >= self.next_poll or (self.more_queued and outbox.backlog < self.cap // 2)
        if outbox.backlog >= self.cap or not (due or refill.failures or refill.done):
            return None
        if due:
            self.next_poll = now + self.queue_poll_s
            refill.poll_limit = self.cap - outbox.backlog
        return refill

    def claimed(self, rows: Sequence[QueuedMt], refill: Refill) -> list[Failure]:
        """The rows the table gave for ``refill.poll_limit``; returns those to fail (``refill.done`` grows)."""
        failures: list[Failure] = []
        collected = Refill(failures=failures, done=refill.done)
        for row in rows:
            if row.id not in self._settled:
                self._add(row, collected)
        self.more_queued = len(rows) == refill.poll_limit
        return failures

    def _add(self, row: QueuedMt, refill: Refill) -> None:
        try:
            # The UDH reference comes from the MT id, not a counter: parts submitted again after a restart
            # must carry the reference of the parts the SMSC accepted before it.
            encoded = encode_message(row.text, ref=row.id % 256)
        except EncodingError as exc:
            refill.failures.append((row.id, str(exc)))
            self.settled(row.id)
            return
        outcome = self.outbox.add(OutgoingMessage(row.id, row.source, row.destination, encoded), row.message_ids)
        if outcome is not None:
            refill.done.append(outcome)
            self.settled(row.id)
