"""The real-time CDR feed: a TCP listener for external billing (the operator's "TCP/IP data interface").

Protocol (lines, UTF-8, ``\\n``):

- The server sends each CDR as ``<id>,<csv fields>`` where the fields are the CDR file's columns
  (:data:`bridge.cdr.csvformat.HEADER`, times in the company's zone), in id order.
- Right after connecting, a client may send ``RESUME <id>``: it then gets every CDR after ``id``, then
  live ones. Without it (nothing within ``resume_wait_s``) it gets the CDRs written after it connected.
  Anything else gets ``ERR <reason>`` and the connection is closed.
- At most ``max_clients`` connections are served at once; one more gets
  ``ERR too many connections (limit N)`` and is closed.

Security: the feed carries every company's CDRs (names, mobile numbers), so off loopback it is mutual TLS
only (:func:`feed_ssl_context`; the config refuses a non-loopback ``cdr.feed_listen`` without it): the
server presents ``cdr.feed_tls_cert`` and requires a client certificate issued by ``cdr.feed_client_ca``.
A client without one fails the TLS handshake (on TLS 1.3 the client learns it at its first read) and
never reaches the protocol above. Plain TCP stays for loopback (local tools, tests).

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
import ssl
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from bridge.cdr.csvformat import SOURCE_COLUMNS, Formatters
from bridge.cdr.export import cdr_select
from bridge.config import Config, ConfigError
from bridge.db.models import Cdr, utcnow

log = logging.getLogger(__name__)

HANDSHAKE_TIMEOUT_S = 10.0
"""A TLS handshake not done by then is dropped (a silent peer must not hold a socket for asyncio's 60 s)."""


def feed_ssl_context(*, cert: str, key: str, client_ca: str) -> ssl.SSLContext:
    """Server context for mutual TLS: TLS 1.2+, a client certificate from ``client_ca`` required.

    Raises :class:`ConfigError` naming the key (``cdr.feed_tls_cert: ...``) when a file cannot be used.
    """
    files = {"feed_tls_cert": cert, "feed_tls_key": key, "feed_client_ca": client_ca}
    for name, path in files.items():
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            raise ConfigError(f"cdr.{name}: cannot read {path}: {exc.strerror}") from exc
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_REQUIRED
    try:
        context.load_cert_chain(cert, key)
    except ssl.SSLError as exc:  # OpenSSL does not say which of the pair is wrong
        raise ConfigError(f"cdr.feed_tls_cert: {cert} with cdr.feed_tls_key {key} is not a usable pair: {exc}") from exc
    try:
        context.load_verify_locations(cafile=client_ca)
    except ssl.SSLError as exc:
        raise ConfigError(f"cdr.feed_client_ca: {client_ca} holds no usable CA certificate: {exc}") from exc
    return context


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
        ssl_context: ssl.SSLContext | None = None,
        max_clients: int = 8,
    ) -> None:
        self.session_factory = session_factory
        self.poll_s = poll_s
        self.resume_wait_s = resume_wait_s
        self.batch = batch
        self.settle_s = settle_s
        self.ssl_context = ssl_context
        self.max_clients = max_clients
        self._clients = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakeups: set[asyncio.Event] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._formatters = Formatters()

    @classmethod
    def from_config(cls, config: Config, session_factory: sessionmaker[Session], **kwargs: Any) -> CdrFeed:
        """A feed with ``[cdr]``'s mutual TLS (when configured) and connection limit."""
        cdr = config.cdr
        context = None
        if cdr.feed_tls_cert:
            context = feed_ssl_context(
                cert=str(config.resolve(cdr.feed_tls_cert)),
                key=str(config.resolve(cdr.feed_tls_key)),
                client_ca=str(config.resolve(cdr.feed_client_ca)),
            )
        return cls(session_factory, ssl_context=context, max_clients=cdr.feed_max_clients, **kwargs)

    async def start(self, host: str, port: int) -> None:
        """Listen on ``host:port`` (port 0: any free port; the bound one is in ``self.port``)."""
        self._loop = asyncio.get_running_loop()
        tls = self.ssl_context
        self._server = await asyncio.start_server(
            self._serve, host, port, ssl=tls, ssl_handshake_timeout=HANDSHAKE_TIMEOUT_S if tls else None
        )
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("CDR feed listening on %s:%d (%s)", host, self.port, "mutual TLS" if tls else "plain TCP")

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
        peer = writer.get_extra_info("peername")
        if self._clients >= self.max_clients:
            log.warning("CDR feed client %s refused: %d connections already", peer, self._clients)
            await self._refuse(reader, writer, f"too many connections (limit {self.max_clients})")
            return
        self._clients += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        wakeup = asyncio.Event()
        self._wakeups.add(wakeup)
        subject = _subject(writer.get_extra_info("peercert"))
        if subject:
            peer = f"{peer} ({subject})"
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
            self._clients -= 1
            self._wakeups.discard(wakeup)
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _refuse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, reason: str) -> None:
        """``ERR <reason>``, then a lingering close: a client that already sent ``RESUME`` would otherwise
        get a TCP reset (unread data at close) that can destroy the error line before it is read."""
        with contextlib.suppress(Exception):
            writer.write(f"ERR {reason}\n".encode())
            await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()
            await asyncio.wait_for(reader.read(64 * 1024), self.resume_wait_s)
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


def _subject(peercert: Any) -> str:
    """``CN=billing-1`` from ``getpeercert()`` (empty on plain TCP), for the connection log."""
    if not isinstance(peercert, dict):
        return ""
    for rdn in peercert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return f"CN={value}"
    return ""
