"""Tokens for the REST API tests: one per scope on the seeded world."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from bridge.api.tokens import create_token
from bridge.db import make_engine, make_session_factory
from bridge.db.models import TokenScope
from tests.web.portal_world import World

NOW = dt.datetime(2026, 11, 22, 12, 0, 0)


@dataclass
class Tokens:
    operator: str
    company_a: str
    company_b: str
    subscriber_a: str
    revoked: str


def make_tokens(world: World) -> Tokens:
    engine = make_engine(world.url)
    with make_session_factory(engine)() as session:
        made = {}
        for name, scope, company, subscriber in (
            ("operator", TokenScope.OPERATOR, None, None),
            ("company_a", TokenScope.COMPANY, world.a.company_id, None),
            ("company_b", TokenScope.COMPANY, world.b.company_id, None),
            ("subscriber_a", TokenScope.SUBSCRIBER, None, world.a.subscriber_id),
            ("revoked", TokenScope.OPERATOR, None, None),
        ):
            token, secret = create_token(
                session, name=name, scope=scope, company_id=company, subscriber_id=subscriber, now=NOW
            )
            made[name] = secret
            if name == "revoked":
                token.revoked_at = NOW
        session.commit()
    engine.dispose()
    return Tokens(**made)


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}
