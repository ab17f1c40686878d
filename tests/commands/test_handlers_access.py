"""Who may command, help, unknown commands, and the contract of execute()."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from bridge import commands
from bridge.commands import INTERNAL_ERROR, REFUSAL, SUSPENDED, CommandResult, execute
from bridge.commands.help import SHORT_HELP, fits_one_sms, syntax
from bridge.config import Config
from bridge.db.models import Contact, EventLog, Subscriber, SubscriberStatus

Sms = Callable[..., CommandResult]


def test_registered_mobile_in_any_format_may_command(sms: Sms, subscriber: Subscriber) -> None:
    for sender in ("+15551230001", "15551230001", "5551230001"):
        result = sms("UL", sender=sender)
        assert result.subscriber_id == subscriber.id
        assert result.command == "UL"


@pytest.mark.parametrize("sender", ["+15559990000", "2663", "", "not a number", "+"])
def test_unregistered_sender_gets_one_polite_refusal_and_is_logged(sms: Sms, session: Session, sender: str) -> None:
    result = sms("UC bob 5551230002 Bob", sender=sender)
    assert result == CommandResult(reply=REFUSAL, actions=(), command="", subscriber_id=None)
    assert fits_one_sms(result.reply)
    assert session.scalars(select(Contact)).all() == []
    events = session.scalars(select(EventLog)).all()
    assert [e.kind for e in events] == ["sms_refused"]
    assert events[0].at == dt.datetime(2026, 11, 22, 9, 30)
    assert "UC bob" in events[0].detail


def test_suspended_subscriber_is_refused(sms: Sms, session: Session, subscriber: Subscriber) -> None:
    subscriber.status = SubscriberStatus.SUSPENDED
    session.flush()
    result = sms("IC bob")
    assert result == CommandResult(reply=SUSPENDED, actions=(), command="", subscriber_id=subscriber.id)
    assert session.scalars(select(EventLog.kind)).all() == ["sms_refused"]


def test_deleted_subscriber_is_treated_as_unregistered(sms: Sms, session: Session, subscriber: Subscriber) -> None:
    subscriber.status = SubscriberStatus.DELETED
    session.flush()
    assert sms("UL") == CommandResult(reply=REFUSAL, actions=(), command="", subscriber_id=None)


def test_one_subscriber_cannot_see_anothers_users(sms: Sms, session: Session, subscriber: Subscriber) -> None:
    other = Subscriber(company_id=subscriber.company_id, name="Bert", mobile="+15551239999")
    session.add(other)
    session.flush()
    sms("UC bob 5551230002 Bob")
    assert sms("UL", sender="+15551239999").reply.startswith("UL: you have no users yet")
    assert sms("UC bob 5551230003 Bobby", sender="+15551239999").reply == "UC: added bob +15551230003 Bobby"
    assert sms("IC bob").actions[0].numbers == ("+15551230001", "+15551230002")  # type: ignore[attr-defined]


def test_help_variants(sms: Sms) -> None:
    lines = syntax(30, 10)
    assert sms("?").reply == SHORT_HELP
    assert sms("HELP").reply == SHORT_HELP
    assert sms("").reply == SHORT_HELP
    assert sms("   ").reply == SHORT_HELP
    assert sms("? uc").reply == lines["UC"]
    assert sms("?cc").reply == lines["CC"]
    assert sms("help IC3").reply == lines["IC"]
    assert sms("?? LC").reply == lines["LC"]
    assert sms("? ?").reply == lines["?"]
    assert sms("? help").reply == lines["?"]
    assert sms("? xy").reply == "No command 'XY'. " + SHORT_HELP
    full = sms("??").reply
    assert all(word in full for word in ("UC", "UE", "UD", "UL", "GC", "GL", "GD", "IC", "CCx", "LCx", "SB", "? <cmd>"))
    assert sms("??").command == "HELP"
    assert all(fits_one_sms(line) for line in lines.values())
    assert fits_one_sms(SHORT_HELP)


def test_help_mentions_configured_limits(sms: Sms, config: Config) -> None:
    import dataclasses

    small = dataclasses.replace(
        config, conference=dataclasses.replace(config.conference, max_ics_per_subscriber=5, max_adhoc=3)
    )
    assert "(1-5, up to 3 numbers)" in sms("? CC", cfg=small).reply


def test_unknown_command(sms: Sms) -> None:
    result = sms("hello there")
    assert result.reply == "Unknown command 'hello'. Send ? for help."
    assert result.command == ""
    assert sms("averyveryverylongword").reply == "Unknown command 'averyve...'. Send ? for help."


def test_execute_flushes_but_does_not_commit(session: Session, config: Config, subscriber: Subscriber) -> None:
    session.commit()
    execute(session, sender="+15551230001", text="UC bob 5551230002 Bob", config=config, now=dt.datetime(2026, 1, 1))
    assert session.scalars(select(Contact.nickname)).all() == ["bob"]  # visible in this transaction
    session.rollback()
    assert session.scalars(select(Contact)).all() == []


def test_unexpected_bug_gives_generic_reply(
    session: Session, config: Config, subscriber: Subscriber, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_args: object, **_kwargs: object) -> object:
        raise RuntimeError("bug")

    monkeypatch.setattr(commands, "handle", broken)
    result = execute(session, sender="+15551230001", text="UL", config=config, now=dt.datetime(2026, 1, 1))
    assert result == CommandResult(reply=INTERNAL_ERROR, actions=(), command="", subscriber_id=None)


def test_database_failure_propagates_for_retry(config: Config, tmp_path: object) -> None:
    """No tables: a database failure is not bad input; the caller keeps the MO and retries."""
    from sqlalchemy.exc import SQLAlchemyError

    from bridge.db import make_engine, make_session_factory

    engine = make_engine("sqlite://")
    with make_session_factory(engine)() as empty, pytest.raises(SQLAlchemyError):
        execute(empty, sender="+15551230001", text="UL", config=config, now=dt.datetime(2026, 1, 1))
    engine.dispose()


def test_tz_aware_now_is_stored_as_naive_utc(session: Session, config: Config, subscriber: Subscriber) -> None:
    now = dt.datetime(2026, 11, 22, 10, 30, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    execute(session, sender="+15559990000", text="x", config=config, now=now)
    assert session.scalars(select(EventLog.at)).one() == dt.datetime(2026, 11, 22, 9, 30)
