from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
from sqlalchemy.orm import Session

from bridge.commands import CommandResult, execute
from bridge.config import Config, expand_numbers
from bridge.db.models import Company, Subscriber
from bridge.provisioning import load_dnis

NOW = dt.datetime(2026, 11, 22, 9, 30)
MOBILE = "+15551230001"

Sms = Callable[..., CommandResult]


@pytest.fixture
def subscriber(session: Session, config: Config) -> Subscriber:
    """Alice, an active subscriber of Acme, with the DNIS pool loaded."""
    load_dnis(session, common=config.dnis.common, pool=expand_numbers(config.dnis.pool, "dnis.pool"))
    company = Company(name="Acme")
    alice = Subscriber(company=company, name="Alice", mobile=MOBILE)
    session.add_all([company, alice])
    session.flush()
    return alice


@pytest.fixture
def sms(session: Session, config: Config, subscriber: Subscriber) -> Sms:
    """``sms("UC bob ...")`` runs one command from Alice (or ``sender=``) and returns the result."""

    def send(text: str, sender: str = MOBILE, cfg: Config | None = None) -> CommandResult:
        return execute(session, sender=sender, text=text, config=cfg or config, now=NOW)

    return send
