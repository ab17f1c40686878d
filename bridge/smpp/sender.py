"""The MT side of a transmitting link (glue): fills the outbox from the queue, marks due parts "submitting"
before their submit_sm is written, and records what the submit_sm_resp settled.

The decisions are pure (:mod:`bridge.smpp.feed`, :mod:`bridge.smpp.outbox`); this module adds the
database and the counters. It runs on its link's thread; :meth:`Sender.offer` is called from others.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence

from bridge.db.models import utcnow
from bridge.smpp import store
from bridge.smpp.context import LinkContext
from bridge.smpp.feed import MtFeed
from bridge.smpp.outbox import MessageFailed, MessageRetrying, MessageSubmitted, Outcome, SubmitPart
from bridge.smpp.queue import QueuedMt

log = logging.getLogger(__name__)

RetryAt = Callable[[float], dt.datetime]


def wall_clock(mono: float, wall: dt.datetime) -> RetryAt:
    """Turn a monotonic time of the outbox into a database timestamp, ``wall`` being the time at ``mono``."""

    def retry_at(at: float) -> dt.datetime:
        return wall + dt.timedelta(seconds=max(0.0, at - mono))

    return retry_at


class Sender:
    def __init__(self, context: LinkContext, *, link_name: str) -> None:
        self.context = context
        self.link_name = link_name
        s = context.settings
        self.feed = MtFeed(context.outbox, window=s.window, queue_poll_s=s.queue_poll_s)

    def offer(self, rows: Sequence[QueuedMt]) -> None:
        self.feed.offer(rows)

    def refill(self, now: float) -> None:
        """Fill the outbox: first MTs handed over in-process, then (when due) QUEUED rows from the table."""
        refill = self.feed.refill(now)
        if refill is None:
            return
        wall = utcnow()
        with self.context.db.transaction() as session:
            for mt_id, error in refill.failures:
                store.fail_mt(session, mt_id, error, wall)
            if refill.poll_limit is not None:
                exclude = self.context.outbox.ids()
                rows = store.claim_queued(session, exclude=exclude, limit=refill.poll_limit, now=wall)
                for mt_id, error in self.feed.claimed(rows, refill):
                    store.fail_mt(session, mt_id, error, wall)
            store.settle(session, refill.done, wall, lambda at: wall)

    def due(self, now: float, next_sequence: Callable[[], int]) -> list[tuple[SubmitPart, int]]:
        """The parts to submit now with their sequence numbers, marked "submitting" (committed) first: a
        crash after the write can then never pass for "never sent" (see :mod:`bridge.smpp.store`)."""
        outbox = self.context.outbox
        parts = outbox.due(now)
        if not parts:
            return []
        submits = [(part, next_sequence()) for part in parts]
        try:
            with self.context.db.core() as connection:
                store.mark_submitting(connection, submits, utcnow())
        except Exception:
            log.exception("smpp %s: could not mark %d submits; retrying later", self.link_name, len(parts))
            outbox.retract([part.key for part in parts])
            self.feed.postpone(now)
            return []
        return submits

    def commit(self, outcomes: list[Outcome], wall: dt.datetime, retry_at: RetryAt) -> None:
        """Record submit outcomes in a transaction of their own (MOs are in the same batch)."""
        try:
            with self.context.db.core() as connection:
                store.settle(connection, outcomes, wall, retry_at)
        except Exception:  # the rows stay "submitting": submitted again at the next start
            log.exception("smpp %s: could not record %d submit outcomes", self.link_name, len(outcomes))

    def count(self, outcomes: list[Outcome]) -> None:
        """Remember the message ids (for receipts), count, and settle the MTs the outcomes finished."""
        context = self.context
        for outcome in outcomes:
            if isinstance(outcome, MessageSubmitted):
                context.remember_ids(outcome.mt_id, outcome.message_ids)
                context.counters["mt"] += 1
                self.feed.settled(outcome.mt_id)
            elif isinstance(outcome, MessageFailed):
                context.counters["failed"] += 1
                self.feed.settled(outcome.mt_id)
                log.warning("smpp: MT %d failed: %s", outcome.mt_id, outcome.error)
            elif isinstance(outcome, MessageRetrying):
                context.counters["throttled"] += 1
