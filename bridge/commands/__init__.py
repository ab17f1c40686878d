"""The SMS command language of the Instant Conferencing service (the operator's Appendix A).

:func:`execute` is the one entry point: any text from any sender gives exactly one reply. It is pure
in the STYLE.md sense (no sockets, no clock: ``now`` is passed in); it works on the SQLAlchemy session
it is given, flushes, and never commits: the caller owns the transaction.

Pieces: :mod:`.parser` (text -> command), :mod:`.handlers` (command -> database changes, reply,
actions), :mod:`.help` (help texts, SMS sizes), :mod:`.actions` (what the engine must do next). The
provisioning rules the handlers apply are :mod:`bridge.provisioning`'s, shared with the portal and the CLI.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from bridge.commands.actions import Action, LaunchConference, SmsBlast
from bridge.commands.errors import CommandError, ParseError
from bridge.commands.handlers import Context, handle, ic_dial_list
from bridge.commands.parser import parse
from bridge.config import Config
from bridge.db.models import EventLog, Subscriber, SubscriberStatus
from bridge.phone import PhoneError, to_e164

__all__ = [
    "Action",
    "CommandError",
    "CommandResult",
    "LaunchConference",
    "ParseError",
    "SmsBlast",
    "execute",
    "ic_dial_list",
]

log = logging.getLogger(__name__)

REFUSAL = "Sorry, this number is not registered for the conference service. Please contact your administrator."
SUSPENDED = "Sorry, your conference service is suspended. Please contact your administrator."
INTERNAL_ERROR = "Sorry, the bridge could not handle that command. Please try again later."


@dataclass(frozen=True)
class CommandResult:
    """The outcome of one SMS command."""

    reply: str
    """Exactly one SMS reply text (may exceed 160 characters; the SMPP layer splits it)."""
    actions: tuple[Action, ...]
    """What the engine must do next (:class:`LaunchConference`, :class:`SmsBlast`)."""
    command: str
    """The command word handled (``"UC"``, ``"IC"``, ...), or ``""`` when refused or not understood."""
    subscriber_id: int | None
    """The commanding subscriber; ``None`` when the sender is not a registered subscriber."""


def execute(session: Session, *, sender: str, text: str, config: Config, now: dt.datetime) -> CommandResult:
    """Run one SMS command from ``sender``; flushes, never commits.

    Never raises for bad input: unknown senders get one polite refusal (logged in ``EventLog``), bad
    commands get a specific error reply. Database failures (``SQLAlchemyError``: locked, gone, a
    concurrent insert of the same name) propagate so the caller can roll back and retry without losing
    the message; any other unexpected error is logged and answered with a generic apology.
    """
    try:
        return _execute(session, sender=sender, text=text, config=config, now=now)
    except SQLAlchemyError:
        raise
    except Exception:
        log.exception("command from %r failed: %r", sender, text[:200])
        return CommandResult(reply=INTERNAL_ERROR, actions=(), command="", subscriber_id=None)


def _execute(session: Session, *, sender: str, text: str, config: Config, now: dt.datetime) -> CommandResult:
    subscriber = _find_subscriber(session, sender, config.numbering.default_country)
    if subscriber is not None and subscriber.status == SubscriberStatus.DELETED:
        subscriber = None  # a deleted subscriber is no longer registered
    if subscriber is None or subscriber.status != SubscriberStatus.ACTIVE:
        reason = "unregistered" if subscriber is None else f"subscriber {subscriber.id} {subscriber.status.value}"
        detail = f"{reason} sender {sender[:40]!r}: {text[:160]!r}"
        session.add(EventLog(at=_naive_utc(now), kind="sms_refused", detail=detail))
        session.flush()
        log.info("refused SMS from %r (%s)", sender, reason)
        return CommandResult(
            reply=REFUSAL if subscriber is None else SUSPENDED,
            actions=(),
            command="",
            subscriber_id=None if subscriber is None else subscriber.id,
        )
    try:
        command = parse(
            text,
            default_country=config.numbering.default_country,
            max_slot=config.conference.max_ics_per_subscriber,
        )
        reply, actions = handle(Context(session=session, subscriber=subscriber, config=config, now=now), command)
    except CommandError as exc:
        return CommandResult(reply=exc.reply, actions=(), command=exc.word, subscriber_id=subscriber.id)
    return CommandResult(reply=reply, actions=actions, command=command.word, subscriber_id=subscriber.id)


def _find_subscriber(session: Session, sender: str, default_country: str) -> Subscriber | None:
    try:
        mobile = to_e164(sender, default_country)
    except PhoneError:
        return None
    return session.scalars(select(Subscriber).where(Subscriber.mobile == mobile)).first()


def _naive_utc(now: dt.datetime) -> dt.datetime:
    return now.astimezone(dt.UTC).replace(tzinfo=None) if now.tzinfo else now
