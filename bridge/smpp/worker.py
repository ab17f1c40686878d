"""The command worker (glue): one thread runs the command language on persisted MOs, one transaction per
MO. The MO becomes HANDLED/REFUSED and its reply is queued in the same commit; the actions then go to the
engine's loop with ``loop.call_soon_threadsafe``. An MO left RECEIVED (database trouble, a stop) is handled
at the next start (:meth:`~bridge.smpp.service.SmppService.start` recovers it).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy.exc import SQLAlchemyError

from bridge.commands.actions import Action
from bridge.config import Config
from bridge.db.models import utcnow
from bridge.smpp import store
from bridge.smpp.database import Database

log = logging.getLogger(__name__)

DB_ATTEMPTS = 5
"""Tries of one MO on database errors, waiting ``DB_RETRY_S * 2**attempt`` in between."""
DB_RETRY_S = 0.05


class CommandWorker:
    def __init__(
        self,
        config: Config,
        db: Database,
        *,
        on_actions: Callable[[tuple[Action, ...]], None],
        execute: store.Execute | None,
        stopping: threading.Event,
    ) -> None:
        self.config = config
        self._db = db
        self._on_actions = on_actions
        self._execute = execute
        self._stopping = stopping
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pool: ThreadPoolExecutor | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="smpp-mo")

    def submit(self, mo_id: int) -> None:
        """Run the command language on a persisted MO (from any thread); ignored before :meth:`start`."""
        if self._pool is not None:
            self._pool.submit(self._handle_mo, mo_id)

    def shutdown(self) -> None:
        """Wait for the MOs submitted so far (blocking: call it in a thread)."""
        if self._pool is not None:
            self._pool.shutdown(True)

    def _resolve_execute(self) -> store.Execute:
        if self._execute is None:
            from bridge.commands import execute  # the command language (CONTRACTS §1)

            self._execute = execute
        return self._execute

    def _handle_mo(self, mo_id: int) -> None:
        execute = self._resolve_execute()
        for attempt in range(DB_ATTEMPTS):
            try:
                with self._db.transaction() as session:
                    actions = store.handle_mo(session, mo_id, execute=execute, config=self.config, now=utcnow())
                break
            except SQLAlchemyError:
                log.warning("smpp: database error handling MO %d (attempt %d)", mo_id, attempt + 1, exc_info=True)
                if self._stopping.wait(DB_RETRY_S * 2**attempt):
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
