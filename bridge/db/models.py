"""The data model (SQLAlchemy 2 typed declarative).

Times are stored as naive UTC datetimes (``utcnow()``); rendering in a company's time zone happens at
the edges (CDR files, portal). Phone numbers are stored in E.164 (``+15551234567``).

PIN uniqueness, which the dial-in logic relies on:
- a user PIN is unique across all Instant Conferences, so the common DNIS resolves it to one IC;
- an activation PIN is unique per DNIS number (IC slot *x* of every subscriber shares pool number *x*),
  so DNIS + activation PIN resolves to one IC.
"""

from __future__ import annotations

import datetime as dt
import enum
from decimal import Decimal

from sqlalchemy import (
    Boolean,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from bridge.db.base import Base as Base  # re-exported: models and migrations import them from here
from bridge.db.base import utcnow as utcnow


def _enum(cls: type[enum.Enum]) -> Enum:
    return Enum(cls, native_enum=False, length=20, values_callable=lambda e: [m.value for m in e])


class Role(enum.StrEnum):
    OPERATOR = "operator"
    COMPANY_ADMIN = "company_admin"
    SUBSCRIBER = "subscriber"


class SubscriberStatus(enum.StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"
    DELETED = "deleted"


class Company(Base):
    __tablename__ = "company"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    # Billing (bridge.billing): who pays, how much at once, where to.
    postpaid: Mapped[bool] = mapped_column(Boolean, default=True, server_default="1")
    """True: the company pays its non-prepaid subscribers' legs; False: every subscriber is prepaid."""
    credit_limit: Mapped[Decimal | None] = mapped_column(Numeric(14, 4), nullable=True)
    """Postpaid: how far below zero the company's balance may go (NULL: no limit)."""
    max_legs: Mapped[int | None] = mapped_column(Integer, nullable=True)
    """Legs up at once for the whole company (NULL: the ``[billing]`` default)."""
    allow_international: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    rate_plan_id: Mapped[int | None] = mapped_column(ForeignKey("rate_plan.id"), nullable=True)
    """Its own plan; NULL: the default plan."""
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)

    subscribers: Mapped[list[Subscriber]] = relationship(back_populates="company")


class Subscriber(Base):
    """A moderator: owns contacts, groups and Instant Conferences; commands by SMS from ``mobile``."""

    __tablename__ = "subscriber"
    id: Mapped[int] = mapped_column(primary_key=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("company.id"), index=True)
    name: Mapped[str] = mapped_column(String(120))
    mobile: Mapped[str] = mapped_column(String(20), unique=True)
    status: Mapped[SubscriberStatus] = mapped_column(_enum(SubscriberStatus), default=SubscriberStatus.ACTIVE)
    prepaid: Mapped[bool] = mapped_column(Boolean, default=False)
    balance: Mapped[float | None] = mapped_column(Numeric(14, 4), nullable=True)
    """A cache of the sum of the subscriber's ``ledger_movement`` rows (the ledger is the truth): billing
    writes both in one transaction, and turns a value set from outside (provisioning) into an adjustment."""
    max_legs: Mapped[int | None] = mapped_column(Integer, nullable=True)
    lock_reasons: Mapped[str] = mapped_column(String(60), default="", server_default="")
    """Comma-separated ``bridge.billing.policy.LockReason`` values; empty: not locked."""
    email: Mapped[str] = mapped_column(String(254), default="", server_default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    deleted_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)

    company: Mapped[Company] = relationship(back_populates="subscribers")
    contacts: Mapped[list[Contact]] = relationship(back_populates="subscriber", cascade="all, delete-orphan")
    groups: Mapped[list[Group]] = relationship(back_populates="subscriber", cascade="all, delete-orphan")
    conferences: Mapped[list[InstantConference]] = relationship(
        back_populates="subscriber", cascade="all, delete-orphan"
    )


class Account(Base):
    """A portal login. Operators have no company; company admins have one; subscribers have both."""

    __tablename__ = "account"
    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(80), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[Role] = mapped_column(_enum(Role))
    company_id: Mapped[int | None] = mapped_column(ForeignKey("company.id"), nullable=True, index=True)
    subscriber_id: Mapped[int | None] = mapped_column(ForeignKey("subscriber.id"), nullable=True, index=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)

    company: Mapped[Company | None] = relationship()
    subscriber: Mapped[Subscriber | None] = relationship()


class Contact(Base):
    """The spec's "User": somebody a subscriber conferences with."""

    __tablename__ = "contact"
    __table_args__ = (UniqueConstraint("subscriber_id", "nickname"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscriber.id"), index=True)
    nickname: Mapped[str] = mapped_column(String(40))
    phone: Mapped[str] = mapped_column(String(20))
    first_name: Mapped[str] = mapped_column(String(60), default="")
    last_name: Mapped[str] = mapped_column(String(60), default="")

    subscriber: Mapped[Subscriber] = relationship(back_populates="contacts")


class Group(Base):
    __tablename__ = "contact_group"
    __table_args__ = (UniqueConstraint("subscriber_id", "name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscriber.id"), index=True)
    name: Mapped[str] = mapped_column(String(40))

    subscriber: Mapped[Subscriber] = relationship(back_populates="groups")
    members: Mapped[list[GroupMember]] = relationship(
        back_populates="group",
        cascade="all, delete-orphan",
        foreign_keys="GroupMember.group_id",
        order_by="GroupMember.position",
    )


class GroupMember(Base):
    """Exactly one of ``contact_id``, ``phone`` (raw E.164) or ``member_group_id`` is set."""

    __tablename__ = "group_member"
    id: Mapped[int] = mapped_column(primary_key=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("contact_group.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer, default=0)
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contact.id", ondelete="CASCADE"), nullable=True)
    phone: Mapped[str | None] = mapped_column(String(20), nullable=True)
    member_group_id: Mapped[int | None] = mapped_column(
        ForeignKey("contact_group.id", ondelete="CASCADE"), nullable=True
    )

    group: Mapped[Group] = relationship(back_populates="members", foreign_keys=[group_id])
    contact: Mapped[Contact | None] = relationship()
    member_group: Mapped[Group | None] = relationship(foreign_keys=[member_group_id])


class DnisKind(enum.StrEnum):
    COMMON = "common"
    POOL = "pool"


class DnisNumber(Base):
    """A dial-in number: the common one, or pool entry ``position`` (held by IC slot ``position``)."""

    __tablename__ = "dnis_number"
    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(String(20), unique=True)
    kind: Mapped[DnisKind] = mapped_column(_enum(DnisKind))
    position: Mapped[int] = mapped_column(Integer, default=0)


class InstantConference(Base):
    __tablename__ = "instant_conference"
    __table_args__ = (
        UniqueConstraint("subscriber_id", "slot"),
        UniqueConstraint("dnis_id", "activation_pin"),
        UniqueConstraint("user_pin"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscriber.id"), index=True)
    slot: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(60), default="")
    dnis_id: Mapped[int | None] = mapped_column(ForeignKey("dnis_number.id"), nullable=True)
    activation_pin: Mapped[str] = mapped_column(String(7))
    user_pin: Mapped[str] = mapped_column(String(7))
    participant_sms: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)

    subscriber: Mapped[Subscriber] = relationship(back_populates="conferences")
    dnis: Mapped[DnisNumber | None] = relationship()
    members: Mapped[list[IcMember]] = relationship(
        back_populates="conference", cascade="all, delete-orphan", order_by="IcMember.position"
    )


class IcMember(Base):
    """Exactly one of ``contact_id``, ``group_id`` or ``phone`` (ad hoc, E.164) is set."""

    __tablename__ = "ic_member"
    id: Mapped[int] = mapped_column(primary_key=True)
    ic_id: Mapped[int] = mapped_column(ForeignKey("instant_conference.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer, default=0)
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contact.id", ondelete="CASCADE"), nullable=True)
    group_id: Mapped[int | None] = mapped_column(ForeignKey("contact_group.id", ondelete="CASCADE"), nullable=True)
    phone: Mapped[str | None] = mapped_column(String(20), nullable=True)

    conference: Mapped[InstantConference] = relationship(back_populates="members")
    contact: Mapped[Contact | None] = relationship()
    group: Mapped[Group | None] = relationship()


class Room(Base):
    """A meet-me room: a number that goes straight to a named conference."""

    __tablename__ = "room"
    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(String(20), unique=True)
    name: Mapped[str] = mapped_column(String(60))
    pin: Mapped[str] = mapped_column(String(7), default="")
    moderator_pin: Mapped[str] = mapped_column(String(7), default="")
    max_members: Mapped[int] = mapped_column(Integer, default=0)
    company_id: Mapped[int | None] = mapped_column(ForeignKey("company.id"), nullable=True, index=True)


class ServiceType(enum.StrEnum):
    IC = "IC"
    DIAL_IN = "dial-in"
    ROOM = "room"
    BLAST = "blast"


class ConferenceRun(Base):
    """One run of a conference (the CDR's "service"): from launch to end."""

    __tablename__ = "conference_run"
    id: Mapped[int] = mapped_column(primary_key=True)
    service_type: Mapped[ServiceType] = mapped_column(_enum(ServiceType))
    subject: Mapped[str] = mapped_column(String(120), default="")
    company_id: Mapped[int | None] = mapped_column(ForeignKey("company.id"), nullable=True, index=True)
    subscriber_id: Mapped[int | None] = mapped_column(ForeignKey("subscriber.id"), nullable=True, index=True)
    ic_id: Mapped[int | None] = mapped_column(ForeignKey("instant_conference.id"), nullable=True)
    room_id: Mapped[int | None] = mapped_column(ForeignKey("room.id"), nullable=True)
    launched_by: Mapped[str] = mapped_column(String(20), default="sms")
    scheduled: Mapped[bool] = mapped_column(Boolean, default=False)
    started_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)
    ended_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    result: Mapped[str] = mapped_column(String(40), default="")
    recorded: Mapped[bool] = mapped_column(Boolean, default=False)

    legs: Mapped[list[Leg]] = relationship(back_populates="run", order_by="Leg.id")
    recordings: Mapped[list[Recording]] = relationship(back_populates="run", order_by="Recording.id")


class Leg(Base):
    """One call leg of a run, as it happened."""

    __tablename__ = "leg"
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("conference_run.id"), index=True)
    direction: Mapped[str] = mapped_column(String(3))  # "in" | "out"
    role: Mapped[str] = mapped_column(String(20))  # "subscriber" | "participant" | "moderator"
    calling: Mapped[str] = mapped_column(String(32), default="")
    called: Mapped[str] = mapped_column(String(32), default="")
    dnis: Mapped[str] = mapped_column(String(32), default="")
    call_id: Mapped[str] = mapped_column(String(255), default="")
    status: Mapped[str] = mapped_column(String(20), default="dialing")
    cause: Mapped[str] = mapped_column(String(80), default="")
    port_id: Mapped[str] = mapped_column(String(20), default="")
    codec: Mapped[str] = mapped_column(String(12), default="")
    packet_loss: Mapped[float] = mapped_column(Float, default=0.0)
    activation_pin_used: Mapped[bool] = mapped_column(Boolean, default=False)
    recorded: Mapped[bool] = mapped_column(Boolean, default=False)
    called_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    joined_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    disconnected_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    rate_plan: Mapped[str] = mapped_column(String(80), default="", server_default="")
    rate_prefix: Mapped[str] = mapped_column(String(20), default="", server_default="")
    billed_s: Mapped[int | None] = mapped_column(Integer, nullable=True)
    price: Mapped[Decimal | None] = mapped_column(Numeric(14, 4), nullable=True)
    refusal: Mapped[str] = mapped_column(String(40), default="", server_default="")
    """A ``bridge.billing.policy.Refusal.cause``: the leg was never dialled."""

    run: Mapped[ConferenceRun] = relationship(back_populates="legs")


class Recording(Base):
    __tablename__ = "recording"
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("conference_run.id"), index=True)
    path: Mapped[str] = mapped_column(String(255))
    started_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    stopped_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)

    run: Mapped[ConferenceRun] = relationship(back_populates="recordings")


class Cdr(Base):
    """One billing record per leg, denormalised so it survives later edits and deletions."""

    __tablename__ = "cdr"
    __table_args__ = (  # keyset pages in (created_at, id) order, alone and behind each tenant filter (api_2)
        Index("ix_cdr_created_at_id", "created_at", "id"),
        Index("ix_cdr_company_created_at_id", "company_id", "created_at", "id"),
        Index("ix_cdr_subscriber_created_at_id", "subscriber_id", "created_at", "id"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    leg_id: Mapped[int | None] = mapped_column(ForeignKey("leg.id"), unique=True, nullable=True)
    company_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    company_name: Mapped[str] = mapped_column(String(120), default="")
    subscriber_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    moderator_ident: Mapped[str] = mapped_column(String(40), default="")
    moderator_name: Mapped[str] = mapped_column(String(120), default="")
    moderator_phone: Mapped[str] = mapped_column(String(20), default="")
    ic_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    service_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    service_result: Mapped[str] = mapped_column(String(40), default="")
    service_type: Mapped[str] = mapped_column(String(20), default="")
    service_subject: Mapped[str] = mapped_column(String(120), default="")
    service_started_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    service_completed_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    scheduled: Mapped[bool] = mapped_column(Boolean, default=False)
    destination: Mapped[str] = mapped_column(String(32), default="")
    direction: Mapped[str] = mapped_column(String(3), default="")
    role: Mapped[str] = mapped_column(String(20), default="")
    cli: Mapped[str] = mapped_column(String(32), default="")
    dnis: Mapped[str] = mapped_column(String(32), default="")
    called_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    joined_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    disconnected_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True, index=True)
    port_id: Mapped[str] = mapped_column(String(20), default="")
    activation_pin_used: Mapped[bool] = mapped_column(Boolean, default=False)
    recording: Mapped[bool] = mapped_column(Boolean, default=False)
    call_id: Mapped[str] = mapped_column(String(255), default="")
    cause: Mapped[str] = mapped_column(String(80), default="")
    codec: Mapped[str] = mapped_column(String(12), default="")
    packet_loss: Mapped[float] = mapped_column(Float, default=0.0)
    rate_plan: Mapped[str] = mapped_column(String(80), default="", server_default="")
    rate_prefix: Mapped[str] = mapped_column(String(20), default="", server_default="")
    billed_s: Mapped[int | None] = mapped_column(Integer, nullable=True)
    price: Mapped[Decimal | None] = mapped_column(Numeric(14, 4), nullable=True)
    refusal: Mapped[str] = mapped_column(String(40), default="", server_default="")
    updated_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True, index=True)
    """When ``write_cdr`` / ``complete_run`` last changed an existing row (NULL: never): corrections."""


class SmsDirection(enum.StrEnum):
    MO = "mo"
    MT = "mt"


class SmsStatus(enum.StrEnum):
    RECEIVED = "received"  # MO persisted, not yet handled
    HANDLED = "handled"  # MO answered (reply queued)
    REFUSED = "refused"  # MO from an unregistered number
    INVALID = "invalid"  # MO that could not be decoded
    QUEUED = "queued"  # MT waiting to be submitted
    SUBMITTED = "submitted"  # MT accepted by the SMSC (message id known)
    DELIVERED = "delivered"  # MT delivery receipt DELIVRD
    UNDELIVERABLE = "undeliverable"  # MT delivery receipt other than DELIVRD
    FAILED = "failed"  # MT refused permanently


class SmsMessage(Base):
    """The MO/MT log and the persistent MT queue."""

    __tablename__ = "sms_message"
    id: Mapped[int] = mapped_column(primary_key=True)
    direction: Mapped[SmsDirection] = mapped_column(_enum(SmsDirection))
    source: Mapped[str] = mapped_column(String(32))
    destination: Mapped[str] = mapped_column(String(32))
    text: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[SmsStatus] = mapped_column(_enum(SmsStatus), index=True)
    subscriber_id: Mapped[int | None] = mapped_column(ForeignKey("subscriber.id"), nullable=True, index=True)
    reply_to_id: Mapped[int | None] = mapped_column(ForeignKey("sms_message.id"), nullable=True)
    dedup_key: Mapped[str | None] = mapped_column(String(128), unique=True, nullable=True)
    command: Mapped[str] = mapped_column(String(8), default="")
    smsc_message_ids: Mapped[str] = mapped_column(String(255), default="")
    error: Mapped[str] = mapped_column(String(255), default="")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class SmsPart(Base):
    """One received part of a concatenated MO, kept until the whole message is assembled (or times out).

    Parts are persisted before their deliver_sm_resp, so an acknowledged part survives a crash; ``done``
    parts are kept for a while so that an SMSC redelivering one after assembly is recognised.
    """

    __tablename__ = "sms_part"
    __table_args__ = (UniqueConstraint("source", "destination", "ref", "total", "seq"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(32))
    destination: Mapped[str] = mapped_column(String(32))
    ref: Mapped[int] = mapped_column(Integer)
    total: Mapped[int] = mapped_column(Integer)
    seq: Mapped[int] = mapped_column(Integer)
    data_coding: Mapped[int] = mapped_column(Integer, default=0)
    payload: Mapped[str] = mapped_column(Text, default="")  # hex of the part's user data (without UDH)
    done: Mapped[bool] = mapped_column(Boolean, default=False)
    received_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)


class CdrFile(Base):
    """An hourly CDR file written to the local spool."""

    __tablename__ = "cdr_file"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    kind: Mapped[str] = mapped_column(String(10), default="cdr")  # "cdr" | "summary"
    period_start: Mapped[dt.datetime] = mapped_column(DateTime, index=True)
    rows: Mapped[int] = mapped_column(Integer, default=0)
    sha256: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class CdrDelivery(Base):
    """The delivery ledger: a file reached a target (exactly once per target)."""

    __tablename__ = "cdr_delivery"
    __table_args__ = (UniqueConstraint("file_id", "target"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    file_id: Mapped[int] = mapped_column(ForeignKey("cdr_file.id", ondelete="CASCADE"), index=True)
    target: Mapped[str] = mapped_column(String(60))
    delivered_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class CdrTargetHealth(Base):
    """Health of one CDR delivery target, kept across restarts (``bridge.cdr.health.TargetHealth``)."""

    __tablename__ = "cdr_target_health"
    target: Mapped[str] = mapped_column(String(60), primary_key=True)
    state: Mapped[str] = mapped_column(String(10), default="up")  # "up" | "failing" | "down"
    failing_since: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    last_error: Mapped[str] = mapped_column(Text, default="")
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class EventLog(Base):
    """Operational events worth keeping: refused senders, lockouts, alerts, restarts."""

    __tablename__ = "event_log"
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)
    kind: Mapped[str] = mapped_column(String(40), index=True)
    detail: Mapped[str] = mapped_column(Text, default="")


class EngineAlive(Base):
    """The last instant a node's engine was known alive, stamped every few seconds (one row per node, one UPDATE
    per stamp). After a crash, the legs it left open end at the latest stamp instead of at the restart."""

    __tablename__ = "engine_alive"
    node: Mapped[str] = mapped_column(String(60), primary_key=True)
    seen_at: Mapped[dt.datetime] = mapped_column(DateTime)


class TokenScope(enum.StrEnum):
    OPERATOR = "operator"
    COMPANY = "company"
    SUBSCRIBER = "subscriber"


class ApiToken(Base):
    """A REST API bearer token; only the SHA-256 of the secret is kept (``bridge.api.tokens``)."""

    __tablename__ = "api_token"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(80))
    secret_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16), default="")
    scope: Mapped[TokenScope] = mapped_column(_enum(TokenScope))
    company_id: Mapped[int | None] = mapped_column(ForeignKey("company.id"), nullable=True, index=True)
    subscriber_id: Mapped[int | None] = mapped_column(ForeignKey("subscriber.id"), nullable=True)
    created_by: Mapped[str] = mapped_column(String(120), default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)


class ApiTransaction(Base):
    """One answered API request kept for idempotency: the CRM's transaction id or a REST Idempotency-Key.

    ``key`` is unique per ``channel`` (``crm``: the CRM's transaction id; ``rest``: token id + key); a repeat
    with the same ``request_sha256`` gets ``response`` again, a different body is refused.
    """

    __tablename__ = "api_transaction"
    __table_args__ = (UniqueConstraint("channel", "key"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    channel: Mapped[str] = mapped_column(String(10))
    key: Mapped[str] = mapped_column(String(200))
    principal: Mapped[str] = mapped_column(String(255), default="")
    request_sha256: Mapped[str] = mapped_column(String(64))
    status: Mapped[int] = mapped_column(Integer, default=200)
    content_type: Mapped[str] = mapped_column(String(80), default="")
    response: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)


class AuditEntry(Base):
    """One change made through a machine API: who (certificate subject or token), what, when, before/after (JSON)."""

    __tablename__ = "audit_entry"
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(255))
    channel: Mapped[str] = mapped_column(String(10))
    action: Mapped[str] = mapped_column(String(40))
    object_type: Mapped[str] = mapped_column(String(40))
    object_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    transaction: Mapped[str] = mapped_column(String(200), default="")
    before: Mapped[str] = mapped_column(Text, default="")
    after: Mapped[str] = mapped_column(Text, default="")


# The billing tables live in their own module (this one is at its size limit); importing it here puts them
# in Base.metadata for Alembic and create_all.
from bridge.db.billing import DestinationRule, LedgerMovement, RateEntryRow, RatePlanRow  # noqa: E402, F401
