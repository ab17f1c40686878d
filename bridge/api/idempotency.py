"""Idempotent requests: the CRM's transaction id and the REST API's ``Idempotency-Key``.

A request's answer is stored with the SHA-256 of its body in the same database transaction as the change
it made (:class:`~bridge.db.models.ApiTransaction`), so either both are committed or neither. A repeat:

- same key, same body: the stored answer, nothing done again;
- same key, another body: refused (the caller reused a key by mistake).

Two copies racing each other both do the work, but the unique ``(channel, key)`` lets only one commit; the
loser rolls back and answers with the winner's stored response (:func:`replay_after_conflict`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib

from sqlalchemy import select
from sqlalchemy.orm import Session

from bridge.db.models import ApiTransaction

CRM = "crm"
REST = "rest"


def digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


@dataclasses.dataclass(frozen=True)
class Stored:
    """An answer given before."""

    status: int
    content_type: str
    body: str
    same_request: bool
    """The repeat carried the same body (False: the key was reused for another request)."""


def lookup(session: Session, channel: str, key: str, request_sha256: str) -> Stored | None:
    row = session.scalars(
        select(ApiTransaction).where(ApiTransaction.channel == channel, ApiTransaction.key == key)
    ).first()
    if row is None:
        return None
    return Stored(row.status, row.content_type, row.response, row.request_sha256 == request_sha256)


def remember(
    session: Session,
    *,
    channel: str,
    key: str,
    principal: str,
    request_sha256: str,
    status: int,
    content_type: str,
    body: str,
    now: dt.datetime,
) -> None:
    """Add the answer to the caller's transaction (committed with the change it describes)."""
    session.add(
        ApiTransaction(
            channel=channel, key=key[:200], principal=principal[:255], request_sha256=request_sha256,
            status=status, content_type=content_type, response=body, created_at=now,
        )
    )  # fmt: skip
