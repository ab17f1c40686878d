"""SMPP link against the real node-smpp SMSC simulator on loopback (issue 3)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
from smpp_harness import MOBILE, Running, Smsc, register, smpp_config, wait_for
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bridge.config import Config
from bridge.db import make_engine, make_session_factory
from bridge.db.models import Contact, SmsDirection, SmsMessage, SmsStatus

pytestmark = pytest.mark.integration


@pytest.fixture
def factory(db_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(db_url)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture
def smsc(tmp_path: Path) -> Iterator[Smsc]:
    sim = Smsc(tmp_path)
    sim.start()
    yield sim
    sim.stop()


def test_uc_from_registered_mobile_creates_user_and_replies(
    config: Config, smsc: Smsc, factory: sessionmaker[Session]
) -> None:
    register(factory)
    # The example number 5551234 has no E.164 form in the US (local-only, refused by bridge.phone);
    # in Germany it is a possible number, so the subscriber's numbering plan is German here.
    german = dataclasses.replace(config, numbering=dataclasses.replace(config.numbering, default_country="DE"))
    running = Running(smpp_config(german, smsc), factory)
    try:
        wait_for(lambda: running.state() == "bound", what="bind")
        assert smsc.mo("UC bob 5551234 Bob.Smith")["status"] == [0]
        replies = wait_for(lambda: smsc.messages(to=MOBILE), what="reply MT")
        with factory() as session:
            bob = session.scalar(select(Contact).where(Contact.nickname == "bob"))
            assert bob is not None and bob.first_name == "Bob" and bob.phone == "+495551234"
            mo = session.scalar(select(SmsMessage).where(SmsMessage.direction == SmsDirection.MO))
            assert mo is not None and mo.status == SmsStatus.HANDLED and mo.command == "UC"
            reply = session.scalar(select(SmsMessage).where(SmsMessage.reply_to_id == mo.id))
            assert reply is not None and reply.text == replies[0]
    finally:
        running.stop()
