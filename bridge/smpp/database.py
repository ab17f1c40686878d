"""The SMPP threads' access to the database (glue).

All our writes are serialised by one in-process lock, so SQLite never makes our threads wait in its busy
handler. For the MT hot path (submit results and receipts, plain UPDATEs) each thread keeps one
connection: an ORM session per transaction costs about three times the transaction itself.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from sqlalchemy import Connection, Engine
from sqlalchemy.orm import Session, sessionmaker


class Database:
    """Sessions with one write lock, and a long-lived Core connection per thread."""

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
