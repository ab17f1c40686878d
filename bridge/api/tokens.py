"""REST API bearer tokens: created and revoked from the portal and ``bridge api token``; stored hashed.

A token is ``brt_`` + 43 random URL-safe characters (256 bits). Only its SHA-256 is stored: the secret has
full entropy, so a slow password hash would add nothing but latency to every request; a stolen database
does not give working tokens. The first 12 characters are kept in clear to tell tokens apart in lists.

Scopes mirror the portal's roles: ``operator`` sees everything, ``company`` one company (like a company
admin), ``subscriber`` one subscriber (like the subscriber's own login); tenant rules are the portal's
(``web.tenancy``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from bridge.db.models import ApiToken, Company, Subscriber, SubscriberStatus, TokenScope

PREFIX = "brt_"
SHOWN = 12
NAME_MAX = 80
TOUCH_EVERY = dt.timedelta(minutes=1)
"""``last_used_at`` is written at most this often per token (not one UPDATE per request)."""


class TokenError(Exception):
    """A token request is wrong (unknown company, scope without its owner...); ``field`` names the input."""

    def __init__(self, message: str, *, field: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.field = field


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_token(
    session: Session,
    *,
    name: str,
    scope: TokenScope,
    company_id: int | None = None,
    subscriber_id: int | None = None,
    created_by: str = "",
    now: dt.datetime,
) -> tuple[ApiToken, str]:
    """A new token and its secret (shown once). A subscriber token's company is the subscriber's."""
    name = name.strip()
    if not 0 < len(name) <= NAME_MAX:
        raise TokenError(f"the token name needs 1 to {NAME_MAX} characters", field="name")
    if scope is TokenScope.OPERATOR:
        company_id = subscriber_id = None
    elif scope is TokenScope.COMPANY:
        subscriber_id = None
        if company_id is None or session.get(Company, company_id) is None:
            raise TokenError("a company token needs an existing company", field="company")
    else:
        subscriber = session.get(Subscriber, subscriber_id) if subscriber_id is not None else None
        if subscriber is None or subscriber.status == SubscriberStatus.DELETED:
            raise TokenError("a subscriber token needs an existing subscriber", field="subscriber")
        company_id = subscriber.company_id
    secret = PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(
        name=name, secret_sha256=secret_hash(secret), prefix=secret[:SHOWN], scope=scope, company_id=company_id,
        subscriber_id=subscriber_id, created_by=created_by[:120], created_at=now,
    )  # fmt: skip
    session.add(token)
    session.flush()
    return token, secret


def authenticate(session: Session, secret: str, now: dt.datetime, *, touch: bool = True) -> ApiToken | None:
    """The live token with this secret, or None (unknown, revoked, or its subscriber gone).

    ``touch``: note ``last_used_at`` (at most once a ``TOUCH_EVERY``, committed); off on an HA standby, whose
    database is a read-only replica."""
    if not secret.startswith(PREFIX):
        return None
    token = session.scalars(select(ApiToken).where(ApiToken.secret_sha256 == secret_hash(secret))).first()
    if token is None or token.revoked_at is not None:
        return None
    if token.scope is TokenScope.SUBSCRIBER:
        subscriber = session.get(Subscriber, token.subscriber_id) if token.subscriber_id else None
        if subscriber is None or subscriber.status != SubscriberStatus.ACTIVE:
            return None
    if touch and (token.last_used_at is None or now - token.last_used_at >= TOUCH_EVERY):
        token.last_used_at = now
        session.commit()
    return token


def revoke_token(session: Session, token_id: int, now: dt.datetime) -> ApiToken:
    token = session.get(ApiToken, token_id)
    if token is None:
        raise TokenError(f"no token {token_id}", field="token")
    if token.revoked_at is None:
        token.revoked_at = now
        session.flush()
    return token


def list_tokens(session: Session, company_id: int | None = None) -> list[ApiToken]:
    """Every token (``company_id``: only that company's), newest first."""
    stmt = select(ApiToken).order_by(ApiToken.id.desc())
    if company_id is not None:
        stmt = stmt.where(ApiToken.company_id == company_id)
    return list(session.scalars(stmt))
