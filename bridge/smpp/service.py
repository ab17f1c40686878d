"""The SMPP service: the appliance's ESME as the engine sees it (glue). It builds the shared state, starts
and stops the threads, recovers unfinished work from the database, and reports the status.

Threads:
- one *link* thread per SMPP session (one bind_transceiver, or bind_receiver + bind_transmitter when
  ``smpp.bind_mode = "split"``): :class:`~bridge.smpp.link.Link`, with its
  :class:`~bridge.smpp.intake.Intake` (deliver_sm persisted before they are acknowledged) and, on the
  transmitting link, its :class:`~bridge.smpp.sender.Sender` (the outbox and submit_sm);
- one *worker* thread runs the command language on persisted MOs: :class:`~bridge.smpp.worker.CommandWorker`.

All our database writes are serialised by one lock (:mod:`bridge.smpp.database`). Everything that does not
need a socket, a thread or a clock lives in the pure modules.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from bridge.commands.actions import Action
from bridge.config import Config
from bridge.db.models import utcnow
from bridge.smpp import store
from bridge.smpp.bind import BindState
from bridge.smpp.concat import Reassembler
from bridge.smpp.context import LinkContext
from bridge.smpp.database import Database
from bridge.smpp.link import Link
from bridge.smpp.outbox import Outbox
from bridge.smpp.queue import QueuedMt, add_listener, remove_listener
from bridge.smpp.redelivery import AckLedger
from bridge.smpp.worker import CommandWorker

log = logging.getLogger(__name__)

_COUNTERS = ("mo", "mt", "dlr", "failed", "invalid", "duplicates", "ambiguous", "throttled")


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
        self.settings = s = config.smpp
        self.clock = clock
        db = Database(session_factory)
        rng = rng or random.Random()
        self.outbox = Outbox(
            window=s.window,
            tps=s.tps,
            retry_min_s=s.retry_min_s,
            retry_max_s=s.retry_max_s,
            max_attempts=s.max_attempts,
            rng=rng,
            now=clock(),
        )
        self.context = LinkContext(
            settings=s,
            db=db,
            clock=clock,
            rng=rng,
            outbox=self.outbox,
            reassembler=Reassembler(s.reassembly_timeout_s),
            acks=AckLedger(window_s=s.dedup_window_s),
            submit_mo=self.submit_mo,
        )
        self.stopping = self.context.stopping
        self.counters = self.context.counters
        self.worker = CommandWorker(config, db, on_actions=on_actions, execute=execute, stopping=self.stopping)
        if s.bind_mode == "split":
            self.links = [
                Link(self.context, name="receiver", bind_command="bind_receiver", rx=True, tx=False),
                Link(self.context, name="transmitter", bind_command="bind_transmitter", rx=False, tx=True),
            ]
        else:
            self.links = [Link(self.context, name="transceiver", bind_command="bind_transceiver", rx=True, tx=True)]

    # --- lifecycle (engine loop) -----------------------------------------------------------------------

    async def start(self) -> None:
        """Recover unfinished work from the database, then bind in the background (does not wait for it)."""
        self.worker.start(asyncio.get_running_loop())
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
        await asyncio.to_thread(self.worker.shutdown)

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
            **{name: self.counters[name] for name in _COUNTERS},
            "outbox": self.outbox.backlog,
            "in_flight": self.outbox.in_flight,
        }

    def wake_transmitter(self, rows: Sequence[QueuedMt]) -> None:
        """MTs were queued (and committed) in this process: hand them to the sender, no database read."""
        for link in self.links:
            if link.tx:
                link.offer(rows)

    def submit_mo(self, mo_id: int) -> None:
        """Hand a persisted MO to the command worker."""
        self.worker.submit(mo_id)

    # --- recovery (a worker thread of the loop) --------------------------------------------------------

    def _recover(self) -> None:
        context = self.context
        now = self.clock()
        with context.db.transaction() as session:
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
            context.reassembler.add(segment, now)  # waiting parts get a fresh timeout
        if parts or pending:
            log.info("smpp: recovered %d waiting MO parts and %d unhandled MOs", len(parts), len(pending))
        for mo_id in pending:
            self.submit_mo(mo_id)
