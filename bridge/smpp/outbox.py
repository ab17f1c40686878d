"""The MT side of the link: a window of outstanding submit_sm, a TPS limit, and retries.

Theory of operation (SMPP 3.4 §3.6 windowing, §5.1.3 command_status): messages enter encoded into parts.
:meth:`Outbox.due` hands out parts to submit while fewer than ``window`` are awaiting a submit_sm_resp
and the token bucket allows; each response settles a part. ``ESME_RTHROTTLED`` / ``ESME_RMSGQFUL`` put
the part back after a back-off (with jitter) and pause the whole outbox briefly, since the SMSC is asking
us to slow down; any other error fails the whole message permanently. A message is submitted when every
part has a message id. When the link drops, parts in flight are sent again after the reconnect (the
SMSC may or may not have accepted them: SMPP gives no way to know, we prefer a rare duplicate to a loss).

Crash safety: every accepted part is reported at once (:class:`PartSubmitted`) so the glue records its
message id before anything else, and a message recovered after a restart is added with the ids already
known (``known_ids``): only the parts without one are submitted again.
"""

from __future__ import annotations

import heapq
import random
from collections import deque
from dataclasses import dataclass, field

from bridge.ratelimit import TokenBucket, backoff_ceiling, jittered
from bridge.smpp.concat import EncodedMessage
from bridge.smpp.constants import ESME_ROK, TRANSIENT_SUBMIT_STATUSES, status_name

PartKey = tuple[int, int]  # (mt_id, part index)


@dataclass(frozen=True)
class OutgoingMessage:
    mt_id: int
    source: str
    destination: str
    encoded: EncodedMessage


@dataclass(frozen=True)
class SubmitPart:
    """One submit_sm to send now."""

    mt_id: int
    index: int
    source: str
    destination: str
    data_coding: int
    esm_class: int
    short_message: bytes
    attempt: int
    total: int = 1

    @property
    def key(self) -> PartKey:
        return (self.mt_id, self.index)


@dataclass(frozen=True)
class Outcome:
    """Base of what a submit_sm_resp settles about a whole message."""

    mt_id: int
    attempts: int


@dataclass(frozen=True)
class MessageSubmitted(Outcome):
    message_ids: tuple[str, ...]


@dataclass(frozen=True)
class PartSubmitted(Outcome):
    """One part of a concatenated message was accepted; ``message_ids`` by part, ``""`` where not yet."""

    message_ids: tuple[str, ...]
    in_flight: int
    """Other parts of the message still awaiting their submit_sm_resp."""


@dataclass(frozen=True)
class MessageFailed(Outcome):
    status: int
    error: str


@dataclass(frozen=True)
class MessageRetrying(Outcome):
    status: int
    retry_at: float


@dataclass
class _Message:
    msg: OutgoingMessage
    ids: list[str | None]
    attempts: list[int]
    failed: bool = False


@dataclass(order=True)
class _Delayed:
    at: float
    order: int
    key: PartKey = field(compare=False)


class Outbox:
    def __init__(
        self,
        *,
        window: int,
        tps: float,
        retry_min_s: float,
        retry_max_s: float,
        max_attempts: int,
        rng: random.Random,
        now: float = 0.0,
    ) -> None:
        self.window = window
        self.retry_min_s = retry_min_s
        self.retry_max_s = retry_max_s
        self.max_attempts = max_attempts
        self._rng = rng
        self._bucket = TokenBucket(tps, now=now)
        self._messages: dict[int, _Message] = {}
        self._ready: deque[PartKey] = deque()
        self._delayed: list[_Delayed] = []
        self._in_flight: set[PartKey] = set()
        self._hold_until = 0.0
        self._order = 0

    def __contains__(self, mt_id: object) -> bool:
        return mt_id in self._messages

    def ids(self) -> set[int]:
        return set(self._messages)

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    @property
    def backlog(self) -> int:
        """Messages accepted and not yet settled."""
        return len(self._messages)

    def add(self, message: OutgoingMessage, known_ids: tuple[str, ...] = ()) -> MessageSubmitted | None:
        """Queue a message; ``known_ids`` (by part, ``""`` for none) are parts the SMSC accepted before a restart.

        Returns the outcome at once when every part is known already (nothing left to submit).
        """
        if message.mt_id in self._messages:
            return None
        n = len(message.encoded.parts)
        ids: list[str | None] = [i or None for i in known_ids] if len(known_ids) == n else [None] * n
        if all(i is not None for i in ids):
            return MessageSubmitted(message.mt_id, 0, tuple(i or "" for i in ids))
        self._messages[message.mt_id] = _Message(message, ids, [0] * n)
        self._ready.extend((message.mt_id, i) for i in range(n) if ids[i] is None)
        return None

    def due(self, now: float) -> list[SubmitPart]:
        """Parts to submit now, within the window and the TPS limit."""
        while self._delayed and self._delayed[0].at <= now:
            self._ready.append(heapq.heappop(self._delayed).key)
        out: list[SubmitPart] = []
        if now < self._hold_until:
            return out
        while self._ready and len(self._in_flight) < self.window:
            key = self._ready[0]
            state = self._messages.get(key[0])
            if state is None or state.failed:
                self._ready.popleft()
                continue
            if not self._bucket.take(now):
                break
            self._ready.popleft()
            self._in_flight.add(key)
            state.attempts[key[1]] += 1
            msg = state.msg
            out.append(
                SubmitPart(
                    mt_id=msg.mt_id,
                    index=key[1],
                    source=msg.source,
                    destination=msg.destination,
                    data_coding=msg.encoded.data_coding,
                    esm_class=msg.encoded.esm_class,
                    short_message=msg.encoded.parts[key[1]],
                    attempt=state.attempts[key[1]],
                    total=len(state.ids),
                )
            )
        return out

    def on_response(self, key: PartKey, status: int, message_id: str, now: float) -> Outcome | None:
        """Settle one submit_sm_resp (or generic_nack); returns what it means for the whole message."""
        self._in_flight.discard(key)
        state = self._messages.get(key[0])
        if state is None or state.failed:
            return None
        attempts = sum(state.attempts)
        if status == ESME_ROK:
            state.ids[key[1]] = message_id
            ids = tuple(i or "" for i in state.ids)
            if all(i is not None for i in state.ids):
                del self._messages[key[0]]
                return MessageSubmitted(key[0], attempts, ids)
            in_flight = sum(1 for k in self._in_flight if k[0] == key[0])
            return PartSubmitted(key[0], attempts, ids, in_flight)
        if status in TRANSIENT_SUBMIT_STATUSES and state.attempts[key[1]] < self.max_attempts:
            n = state.attempts[key[1]]
            retry_at = now + jittered(backoff_ceiling(n, self.retry_min_s, self.retry_max_s), self._rng)
            self._order += 1
            heapq.heappush(self._delayed, _Delayed(retry_at, self._order, key))
            self._hold_until = max(self._hold_until, now + self.retry_min_s / 2.0)
            return MessageRetrying(key[0], attempts, status, retry_at)
        state.failed = True
        del self._messages[key[0]]
        error = status_name(status)
        if status in TRANSIENT_SUBMIT_STATUSES:
            error += f", still after {state.attempts[key[1]]} attempts"
        return MessageFailed(key[0], attempts, status, f"part {key[1] + 1}/{len(state.ids)}: {error}")

    def on_link_lost(self) -> None:
        """Parts awaiting a response go back to the front of the queue, in order."""
        self.retract(list(self._in_flight))

    def retract(self, keys: list[PartKey]) -> None:
        """These parts were handed out by :meth:`due` but not sent (or their fate is unknown): due again first."""
        for key in sorted(keys, reverse=True):
            if key not in self._in_flight:
                continue
            self._in_flight.discard(key)
            state = self._messages.get(key[0])
            if state is not None:
                state.attempts[key[1]] -= 1  # not the SMSC's answer: does not count
                self._ready.appendleft(key)

    def next_wakeup(self, now: float) -> float | None:
        """When :meth:`due` may next return something (``None``: only a response or a new message can)."""
        times: list[float] = []
        if self._delayed:
            times.append(self._delayed[0].at)
        if self._ready and len(self._in_flight) < self.window:
            times.append(max(self._hold_until, now + self._bucket.wait_time(now)))
        return min(times) if times else None
