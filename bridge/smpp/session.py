"""The bookkeeping of one SMPP session that needs no socket (SMPP 3.4 §2.5 sequence numbers, §2.7 session
timers, §4.11 enquire_link): the sequence numbers we allocate, the requests written and not answered yet
(with their position in our output stream, for :mod:`bridge.smpp.redelivery`), and when the link must
send an enquire_link, give up on a missing response, or stop draining and unbind.

Pure: the link thread (:mod:`bridge.smpp.link`) passes ``now`` in and owns the socket.
"""

from __future__ import annotations

from dataclasses import dataclass

from bridge.smpp.outbox import PartKey

MAX_SEQUENCE = 0x7FFFFFFF


class Sequence:
    """The "client" smpplib's ``make_pdu`` takes sequence numbers from (SMPP 3.4 §3.2: 1..0x7FFFFFFF)."""

    def __init__(self) -> None:
        self.sequence = 0

    def next_sequence(self) -> int:
        self.sequence = self.sequence % MAX_SEQUENCE + 1
        return self.sequence


class NoSequence:
    """For responses and parsing, which must not consume our sequence numbers."""

    sequence = 0

    def next_sequence(self) -> int:
        return 0


NO_SEQUENCE = NoSequence()


@dataclass
class Request:
    command: str
    sent_at: float
    part: PartKey | None = None
    """The outbox part a submit_sm carries; ``None`` for the link's own requests (enquire_link)."""
    ordinal: int = 0
    """Position of the request among the PDUs written on its session (see :mod:`bridge.smpp.redelivery`)."""


class Pending:
    """Requests written on the session and not answered yet, by sequence number."""

    def __init__(self) -> None:
        self._requests: dict[int, Request] = {}

    def __len__(self) -> int:
        return len(self._requests)

    def add(self, sequence: int, request: Request) -> Request:
        self._requests[sequence] = request
        return request

    def pop(self, sequence: int) -> Request | None:
        return self._requests.pop(sequence, None)

    def clear(self) -> None:
        self._requests.clear()

    def has_submits(self) -> bool:
        """Whether a submit_sm still awaits its response (the reason to keep draining before unbind)."""
        return any(r.part is not None for r in self._requests.values())

    def oldest(self) -> Request | None:
        return min(self._requests.values(), key=lambda r: r.sent_at, default=None)


class Timers:
    """The deadlines of one bound session: the next enquire_link, a missing response, the drain on stop."""

    def __init__(self, *, enquire_link_s: float, response_timeout_s: float, now: float) -> None:
        self.enquire_link_s = enquire_link_s
        self.response_timeout_s = response_timeout_s
        self.next_enquire = now + enquire_link_s
        self.drain_deadline: float | None = None

    def enquire_due(self, now: float) -> bool:
        """Whether to send an enquire_link now (the next one is then scheduled)."""
        if now < self.next_enquire:
            return False
        self.next_enquire = now + self.enquire_link_s
        return True

    def drained(self, now: float, pending: Pending) -> bool:
        """Stopping: whether to unbind now (no submit awaits its response, or we waited long enough)."""
        if self.drain_deadline is None:
            self.drain_deadline = now + self.response_timeout_s
        return not pending.has_submits() or now >= self.drain_deadline

    def overdue(self, now: float, pending: Pending) -> Request | None:
        """The oldest request if it has waited longer than the response timeout."""
        oldest = pending.oldest()
        if oldest is not None and now - oldest.sent_at > self.response_timeout_s:
            return oldest
        return None

    def deadlines(self, pending: Pending) -> list[float]:
        """When the link must look at the session again, whatever arrives."""
        found = [self.next_enquire]
        oldest = pending.oldest()
        if oldest is not None:
            found.append(oldest.sent_at + self.response_timeout_s)
        if self.drain_deadline is not None:
            found.append(self.drain_deadline)
        return found
