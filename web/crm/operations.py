"""The CRM's operations, each through the provisioning core, each change with its audit line.

``perform`` works in the caller's transaction (the web layer commits the change, its audit line and the
stored response together) and raises :class:`~bridge.provisioning.ProvisioningError` for a broken rule.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session

from bridge import provisioning
from bridge.config import Config
from bridge.db.models import Account, Company, DnisKind, DnisNumber, Subscriber, SubscriberStatus
from bridge.phone import PhoneError, to_e164
from bridge.provisioning import UNKNOWN, ProvisioningError
from bridge.provisioning.audit import Snapshot, record, snapshot_company, snapshot_subscriber
from web.crm.documents import CompanyAck, CrmRequest, SubscriberAck


@dataclasses.dataclass(frozen=True)
class Context:
    session: Session
    config: Config
    actor: str
    now: dt.datetime
    transaction: str

    def audit(
        self, action: str, kind: str, object_id: int | None, before: Snapshot | None, after: Snapshot | None
    ) -> None:
        record(
            self.session, actor=self.actor, channel="crm", action=action, object_type=kind, object_id=object_id,
            before=before, after=after, now=self.now, transaction=self.transaction,
        )  # fmt: skip


def _bool(text: str) -> bool:
    return text.strip() in ("true", "1")


def _company(ctx: Context, company_id: str) -> Company:
    company = ctx.session.get(Company, int(company_id))
    if company is None:
        raise ProvisioningError(f"no company {company_id}", field="id", code=UNKNOWN)
    return company


def _subscriber(ctx: Context, fields: dict[str, str]) -> Subscriber:
    if "id" in fields:
        found = ctx.session.get(Subscriber, int(fields["id"]))
    else:
        try:
            mobile = to_e164(fields.get("mobile", ""), ctx.config.numbering.default_country)
        except PhoneError as exc:
            raise ProvisioningError(str(exc), field="mobile") from exc
        found = ctx.session.scalars(select(Subscriber).where(Subscriber.mobile == mobile)).first()
    if found is None or found.status == SubscriberStatus.DELETED:
        raise ProvisioningError("no such subscriber", field="id" if "id" in fields else "mobile", code=UNKNOWN)
    return found


def subscriber_ack(ctx: Context, subscriber: Subscriber) -> SubscriberAck:
    """What the CRM tells the customer: the subscriber, the portal login, the short code, the dial-in numbers."""
    session, config = ctx.session, ctx.config
    login = session.scalars(select(Account).where(Account.subscriber_id == subscriber.id)).first()
    pool = session.scalars(
        select(DnisNumber)
        .where(DnisNumber.kind == DnisKind.POOL, DnisNumber.position <= config.conference.max_ics_per_subscriber)
        .order_by(DnisNumber.position)
    ).all()
    company = session.get(Company, subscriber.company_id)
    return SubscriberAck(
        id=subscriber.id, status=subscriber.status.value, company_id=subscriber.company_id,
        company=company.name if company else "", name=subscriber.name, mobile=subscriber.mobile,
        email=subscriber.email or "", prepaid=bool(subscriber.prepaid),
        balance=None if subscriber.balance is None else f"{subscriber.balance:.2f}",
        portal_login=login.username if login else "", short_code=(config.smpp.short_codes or [""])[0],
        common_dnis=provisioning.common_dnis(session, config), pool=[(d.position, d.number) for d in pool],
    )  # fmt: skip


def _save(ctx: Context, fields: dict[str, str], subscriber: Subscriber | None) -> Subscriber:
    company_id = provisioning.find_company(ctx.session, fields["company"]).id if "company" in fields else None
    if subscriber is not None:
        company_id = company_id or subscriber.company_id
    assert company_id is not None  # the schema requires <company> on create
    saved, _login = provisioning.save_subscriber(
        ctx.session,
        company_id=company_id,
        name=fields.get("name", subscriber.name if subscriber else ""),
        mobile=fields.get("mobile", subscriber.mobile if subscriber else ""),
        default_country=ctx.config.numbering.default_country,
        status=subscriber.status if subscriber else SubscriberStatus.ACTIVE,
        prepaid=_bool(fields["prepaid"]) if "prepaid" in fields else bool(subscriber and subscriber.prepaid),
        username=fields.get("username", ""),
        password=fields.get("password", ""),
        subscriber=subscriber,
        email=fields.get("email"),
        balance=fields.get("balance"),
    )
    return saved


def create_subscriber(ctx: Context, fields: dict[str, str]) -> SubscriberAck:
    subscriber = _save(ctx, fields, None)
    ctx.audit("create", "subscriber", subscriber.id, None, snapshot_subscriber(ctx.session, subscriber))
    return subscriber_ack(ctx, subscriber)


def modify_subscriber(ctx: Context, fields: dict[str, str]) -> SubscriberAck:
    subscriber = _subscriber(ctx, {"id": fields["id"]})
    before = snapshot_subscriber(ctx.session, subscriber)
    _save(ctx, fields, subscriber)
    ctx.audit("modify", "subscriber", subscriber.id, before, snapshot_subscriber(ctx.session, subscriber))
    return subscriber_ack(ctx, subscriber)


def _status_change(change: Callable[[Session, Subscriber], Subscriber], action: str) -> Callable[..., SubscriberAck]:
    def operation(ctx: Context, fields: dict[str, str]) -> SubscriberAck:
        subscriber = _subscriber(ctx, fields)
        before = snapshot_subscriber(ctx.session, subscriber)
        change(ctx.session, subscriber)
        ctx.audit(action, "subscriber", subscriber.id, before, snapshot_subscriber(ctx.session, subscriber))
        return subscriber_ack(ctx, subscriber)

    return operation


def delete_subscriber(ctx: Context, fields: dict[str, str]) -> SubscriberAck:
    subscriber = _subscriber(ctx, fields)
    answer = dataclasses.replace(subscriber_ack(ctx, subscriber), status=SubscriberStatus.DELETED.value)
    before = snapshot_subscriber(ctx.session, subscriber)
    provisioning.delete_subscriber(ctx.session, subscriber, ctx.now)
    ctx.audit("delete", "subscriber", answer.id, before, None)
    return answer


def query_subscriber(ctx: Context, fields: dict[str, str]) -> SubscriberAck:
    return subscriber_ack(ctx, _subscriber(ctx, fields))


def _company_ack(company: Company) -> CompanyAck:
    return CompanyAck(id=company.id, name=company.name, timezone=company.timezone)


def create_company(ctx: Context, fields: dict[str, str]) -> CompanyAck:
    company = provisioning.save_company(ctx.session, name=fields["name"], timezone=fields.get("timezone", "UTC"))
    ctx.audit("create", "company", company.id, None, snapshot_company(company))
    return _company_ack(company)


def modify_company(ctx: Context, fields: dict[str, str]) -> CompanyAck:
    company = _company(ctx, fields["id"])
    before = snapshot_company(company)
    provisioning.save_company(
        ctx.session, name=fields.get("name", company.name), timezone=fields.get("timezone", company.timezone),
        company=company,
    )  # fmt: skip
    ctx.audit("modify", "company", company.id, before, snapshot_company(company))
    return _company_ack(company)


OPERATIONS: dict[str, Callable[[Context, dict[str, str]], SubscriberAck | CompanyAck]] = {
    "createSubscriber": create_subscriber,
    "modifySubscriber": modify_subscriber,
    "suspendSubscriber": _status_change(provisioning.suspend_subscriber, "suspend"),
    "resumeSubscriber": _status_change(provisioning.resume_subscriber, "resume"),
    "deleteSubscriber": delete_subscriber,
    "querySubscriber": query_subscriber,
    "createCompany": create_company,
    "modifyCompany": modify_company,
}


def perform(ctx: Context, request: CrmRequest) -> SubscriberAck | CompanyAck:
    return OPERATIONS[request.operation](ctx, request.fields)
