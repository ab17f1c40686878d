"""The persistent MT queue (CONTRACTS §2): rows of ``sms_message`` with direction MT, status QUEUED.

Anyone may queue an MT with :func:`queue_mt` inside their own transaction; the running
:class:`~bridge.smpp.service.SmppService` polls the table (rows queued by other processes, e.g. the portal,
are sent within ``smpp.queue_poll_s``) and is woken at once when the transaction that queued a row in
this process commits.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from sqlalchemy import event
from sqlalchemy.orm import Session

from bridge.db.models import SmsDirection, SmsMessage, SmsStatus, utcnow

log = logging.getLogger(__name__)

_listeners: list[Callable[[], None]] = []  # in-process wake-up of running services (glue, not logic)
_listeners_lock = threading.Lock()
_PENDING_FLAG = "bridge.smpp.queued"


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
    if not session.info.get(_PENDING_FLAG):
        session.info[_PENDING_FLAG] = True
        event.listen(session, "after_commit", _after_commit, once=True)
    return message


def add_listener(callback: Callable[[], None]) -> None:
    """Call ``callback`` (from the committing thread; it must be quick) after a commit that queued MTs."""
    with _listeners_lock:
        _listeners.append(callback)


def remove_listener(callback: Callable[[], None]) -> None:
    with _listeners_lock:
        if callback in _listeners:
            _listeners.remove(callback)


def _after_commit(session: Session) -> None:
    session.info.pop(_PENDING_FLAG, None)
    with _listeners_lock:
        callbacks = list(_listeners)
    for callback in callbacks:
        try:
            callback()
        except Exception:  # a listener must never break the caller's commit
            log.exception("MT queue listener failed")
