"""The real-time CDR feed: a TCP listener for external billing (the operator's "TCP/IP data interface").

Protocol (lines, UTF-8, ``\\n``):

- The server sends each CDR as ``<id>,<csv fields>`` where the fields are the CDR file's columns
  (:data:`bridge.cdr.csvformat.HEADER`, times in the company's zone), in id order.
- Right after connecting, a client may send ``RESUME <id>``: it then gets every CDR after ``id``, then
  live ones. Without it (nothing within ``resume_wait_s``) it gets the CDRs written after it connected.
  Anything else gets ``ERR <reason>`` and the connection is closed.

Why there are no gaps or duplicates across reconnects: the database is the only source. Each connection
keeps its own cursor (the last id it sent) and sends ``id > cursor`` in id order, so a client that
resumes from the last id it *received* gets exactly the rest. :meth:`CdrFeed.notify` only wakes the
connections up (a poll every ``poll_s`` also picks up CDRs written by other processes). Ids are
committed in order on SQLite (one writer at a time); on PostgreSQL a sequence value can commit after a
higher one, so a feed there should run with a small ``settle_s`` (rows younger than that wait).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import datetime as dt
import io
import logging
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from bridge.cdr.csvformat import SOURCE_COLUMNS, Formatters
from bridge.cdr.export import cdr_select
from bridge.db.models import Cdr, utcnow

log = logging.getLogger(__name__)


def feed_line(row: Sequence[Any], formatters: Formatters) -> str:
    """One feed line for a source row (+ time-zone name): ``<id>,<csv fields>\\n``. Pure."""
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(formatters(row[len(SOURCE_COLUMNS)])(row))
    return f"{row[0]},{out.getvalue()}"


def parse_resume(line: str) -> int:
    """``"RESUME 42"`` -> 42; raises ValueError with a reason otherwise."""
    word, _, rest = line.strip().partition(" ")
    digits = rest.strip()
    if word.upper() != "RESUME" or not (digits.isascii() and digits.isdigit()):
        raise ValueError("expected 'RESUME <id>'")
    if len(digits) > 18:  # ids are 64-bit database integers
        raise ValueError("id out of range")
    return int(digits)


class CdrFeed:
    """asyncio TCP server streaming CDRs; ``notify`` may be called from any thread."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        *,
        poll_s: float = 1.0,
        resume_wait_s: float = 0.5,
        batch: int = 500,
        settle_s: float = 0.0,
    ) -> None:
        self.session_factory = session_factory
        self.poll_s = poll_s
        self.resume_wait_s = resume_wait_s
        self.batch = batch
        self.settle_s = settle_s
        self.port = 0
        self._server: asyncio.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakeups: set[asyncio.Event] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._formatters = Formatters()

    async def start(self, host: str, port: int) -> None:
        """Listen on ``host:port`` (port 0: any free port; the bound one is in ``self.port``)."""
        self._loop = asyncio.get_running_loop()
        self._server = await asyncio.start_server(self._serve, host, port)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("CDR feed listening on %s:%d", host, self.port)

    def notify(self, cdr_id: int) -> None:
        """A CDR was committed: wake every connection up (thread-safe; ``cdr_id`` is informative)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._wake()
        else:
            loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        for event in self._wakeups:
            event.set()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    # --- one connection ---------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        wakeup = asyncio.Event()
        self._wakeups.add(wakeup)
        peer = writer.get_extra_info("peername")
        try:
            cursor = await asyncio.to_thread(self._max_id)
            try:
                line = await asyncio.wait_for(reader.readline(), self.resume_wait_s)
            except TimeoutError:
                line = b""
            except ValueError:  # a line longer than the stream limit: garbage, not a command
                line = b"?"
            if line.strip():
                try:
                    cursor = parse_resume(line.decode("utf-8", "replace"))
                except ValueError as exc:
                    writer.write(f"ERR {exc}\n".encode())
                    await writer.drain()
                    return
            log.info("CDR feed client %s from id %d", peer, cursor)
            while True:
                wakeup.clear()
                lines, last = await asyncio.to_thread(self._fetch, cursor)
                if lines:
                    writer.write("".join(lines).encode())
                    await writer.drain()
                    cursor = last
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wakeup.wait(), self.poll_s)
                if reader.at_eof():
                    return
        except (ConnectionError, OSError):
            log.info("CDR feed client %s went away", peer)
        except Exception:  # a database error: drop this client (it resumes), keep the server
            log.exception("CDR feed client %s dropped", peer)
        finally:
            self._wakeups.discard(wakeup)
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def _max_id(self) -> int:
        with self.session_factory() as session:
            return int(session.scalar(select(func.max(Cdr.id))) or 0)

    def _fetch(self, cursor: int) -> tuple[list[str], int]:
        conditions = [Cdr.id > cursor]
        if self.settle_s > 0:
            conditions.append(Cdr.created_at <= utcnow() - dt.timedelta(seconds=self.settle_s))
        stmt = cdr_select(*conditions, by_time=False).limit(self.batch)
        with self.session_factory() as session:
            rows = session.connection().execute(stmt).all()
        lines = [feed_line(row, self._formatters) for row in rows]
        return lines, (int(rows[-1][0]) if rows else cursor)
