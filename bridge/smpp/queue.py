"""The persistent MT queue (CONTRACTS §2): rows of ``sms_message`` with direction MT, status QUEUED.

Anyone may queue an MT with :func:`queue_mt` inside their own transaction; the running
:class:`~bridge.smpp.service.SmppService` polls the table (rows queued by other processes, e.g. the portal,
are sent within ``smpp.queue_poll_s``) and is woken at once when the transaction that queued a row in
this process commits.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import event
from sqlalchemy.orm import Session

from bridge.db.models import SmsDirection, SmsMessage, SmsStatus, utcnow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class QueuedMt:
    """What the sender needs of a queued MT (handed over in-process, or read back from the table)."""

    id: int
    source: str
    destination: str
    text: str
    message_ids: tuple[str, ...] = ()
    """Per part, the SMSC message ids of parts accepted before a restart (``""`` where none)."""


Listener = Callable[[Sequence[QueuedMt]], None]
_listeners: list[Listener] = []  # in-process hand-over to running services (glue, not logic)
_listeners_lock = threading.Lock()
_PENDING = "bridge.smpp.queued"
_installed = False


def queue_mt(
    session: Session, *, destination: str, text: str, source: str, reply_to_id: int | None = None
) -> SmsMessage:
    """Queue an MT; it is sent once the caller's transaction commits. Does not commit."""
    message = SmsMessage(
        direction=SmsDirection.MT,
        status=SmsStatus.QUEUED,
        source=source[:32],
        destination=destination[:32],
        text=text,
        reply_to_id=reply_to_id,
        created_at=utcnow(),
    )
    session.add(message)
    session.flush()
    _install()
    session.info.setdefault(_PENDING, []).append(
        QueuedMt(message.id, message.source, message.destination, message.text)
    )
    return message


def add_listener(callback: Listener) -> None:
    """Call ``callback(rows)`` (from the committing thread; it must be quick) after a commit that queued MTs."""
    with _listeners_lock:
        _listeners.append(callback)


def remove_listener(callback: Listener) -> None:
    with _listeners_lock:
        if callback in _listeners:
            _listeners.remove(callback)


def _install() -> None:
    """Hook every Session's commit/rollback once per process (a per-session ``event.listen`` costs about as
    much as the insert itself); the hooks only look at ``session.info``, so other commits pay a dict lookup."""
    global _installed
    if not _installed:
        with _listeners_lock:
            if not _installed:
                event.listen(Session, "after_commit", _after_commit)
                event.listen(Session, "after_rollback", _after_rollback)
                _installed = True


def _after_commit(session: Session) -> None:
    rows = session.info.pop(_PENDING, None)
    if not rows:
        return
    with _listeners_lock:
        callbacks = list(_listeners)
    for callback in callbacks:
        try:
            callback(rows)
        except Exception:  # a listener must never break the caller's commit
            log.exception("MT queue listener failed")


def _after_rollback(session: Session) -> None:
    """Rows queued in a rolled-back transaction were never committed: forget them."""
    session.info.pop(_PENDING, None)
