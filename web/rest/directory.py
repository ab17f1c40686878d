"""REST resources for who is who: companies, subscribers, contacts, groups. Writes go through bridge.provisioning."""

from __future__ import annotations

from typing import Any

from flask import Response
from sqlalchemy import select

from bridge import provisioning
from bridge.db.models import Account, Company, Contact, Group, Role, Subscriber, SubscriberStatus
from bridge.provisioning.audit import snapshot_company, snapshot_subscriber
from web import db
from web.clock import utc_now
from web.rest import registry
from web.rest.common import CURSOR_PARAMS, audit, config, int_arg, page, page_of, refused, require
from web.rest.spec import ApiProblem, Schema
from web.tenancy import current_scope, get_or_404, scoped

STAFF = (Role.OPERATOR, Role.COMPANY_ADMIN)
STR: Schema = {"type": "string"}
ID: Schema = {"type": "integer", "minimum": 1, "maximum": 2**31 - 1}

COMPANY: Schema = {
    "type": "object",
    "required": ["id", "name", "timezone"],
    "properties": {"id": {"type": "integer"}, "name": STR, "timezone": STR},
}
COMPANY_IN: Schema = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 120},
        "timezone": {"type": "string", "maxLength": 64},
    },
}
SUBSCRIBER: Schema = {
    "type": "object",
    "required": ["id", "company_id", "name", "mobile", "email", "status", "prepaid", "balance", "username"],
    "properties": {
        "id": {"type": "integer"},
        "company_id": {"type": "integer"},
        "name": STR,
        "mobile": STR,
        "email": STR,
        "status": {"type": "string", "enum": [s.value for s in SubscriberStatus]},
        "prepaid": {"type": "boolean"},
        "balance": {"type": ["string", "null"]},
        "username": STR,
    },
}
SUBSCRIBER_IN: Schema = {
    "type": "object",
    "properties": {
        "company_id": ID,
        "name": {"type": "string", "minLength": 1, "maxLength": 120},
        "mobile": {"type": "string", "minLength": 1, "maxLength": 32},
        "email": {"type": "string", "maxLength": 254},
        "prepaid": {"type": "boolean"},
        "balance": {"type": ["string", "null"], "maxLength": 20},
        "username": {"type": "string", "maxLength": 80},
        "password": {"type": "string", "maxLength": 200},
    },
}
CONTACT: Schema = {
    "type": "object",
    "required": ["id", "subscriber_id", "nickname", "phone", "first_name", "last_name"],
    "properties": {
        "id": {"type": "integer"},
        "subscriber_id": {"type": "integer"},
        "nickname": STR,
        "phone": STR,
        "first_name": STR,
        "last_name": STR,
    },
}
CONTACT_IN: Schema = {
    "type": "object",
    "required": ["nickname", "phone"],
    "properties": {
        "subscriber_id": ID,
        "nickname": {"type": "string", "minLength": 1, "maxLength": 40},
        "phone": {"type": "string", "minLength": 1, "maxLength": 32},
        "first_name": {"type": "string", "maxLength": 60},
        "last_name": {"type": "string", "maxLength": 60},
    },
}
GROUP: Schema = {
    "type": "object",
    "required": ["id", "subscriber_id", "name", "members"],
    "properties": {
        "id": {"type": "integer"},
        "subscriber_id": {"type": "integer"},
        "name": STR,
        "members": {"type": "array", "items": {"type": "object"}},
    },
}
SUBSCRIBER_FILTER: Schema = {"name": "subscriber_id", "in": "query", "required": False, "schema": ID}
COMPANY_FILTER: Schema = {"name": "company_id", "in": "query", "required": False, "schema": ID}


def company_json(company: Company) -> dict[str, Any]:
    return {"id": company.id, "name": company.name, "timezone": company.timezone}


def subscriber_json(subscriber: Subscriber, username: str | None = None) -> dict[str, Any]:
    """``username``: the portal login's, when the caller has it (a page loads all its logins in one query)."""
    if username is None:
        login = db.session().scalars(select(Account).where(Account.subscriber_id == subscriber.id)).first()
        username = login.username if login else ""
    return {
        "id": subscriber.id, "company_id": subscriber.company_id, "name": subscriber.name, "mobile": subscriber.mobile,
        "email": subscriber.email, "status": subscriber.status.value, "prepaid": bool(subscriber.prepaid),
        "balance": None if subscriber.balance is None else str(subscriber.balance), "username": username,
    }  # fmt: skip


def contact_json(contact: Contact) -> dict[str, Any]:
    return {
        "id": contact.id, "subscriber_id": contact.subscriber_id, "nickname": contact.nickname, "phone": contact.phone,
        "first_name": contact.first_name, "last_name": contact.last_name,
    }  # fmt: skip


def group_json(group: Group) -> dict[str, Any]:
    members = [
        {k: v for k, v in (("contact_id", m.contact_id), ("phone", m.phone), ("group_id", m.member_group_id)) if v}
        for m in group.members
    ]
    return {"id": group.id, "subscriber_id": group.subscriber_id, "name": group.name, "members": members}


# --- companies --------------------------------------------------------------------------------------


@registry.route("/companies", summary="List companies", tag="companies", response=page_of(COMPANY), query=CURSOR_PARAMS)
def companies() -> dict[str, Any]:
    return page(scoped(Company), Company.id, company_json)


@registry.route("/companies/{company_id}", summary="One company", tag="companies", response=COMPANY)
def company(company_id: int) -> dict[str, Any]:
    return company_json(get_or_404(Company, company_id))


@registry.route(
    "/companies", "POST", summary="Create a company", tag="companies", response=COMPANY, status=201,
    body={**COMPANY_IN, "required": ["name"]}, scopes=("operator",),
)  # fmt: skip
def company_create(payload: dict[str, Any]) -> tuple[dict[str, Any], int]:
    require(Role.OPERATOR)
    with refused():
        created = provisioning.save_company(
            db.session(), name=payload["name"], timezone=payload.get("timezone") or "UTC"
        )
    audit("create", "company", created.id, None, snapshot_company(created))
    return company_json(created), 201


@registry.route(
    "/companies/{company_id}", "PATCH", summary="Modify a company", tag="companies", response=COMPANY, body=COMPANY_IN,
    scopes=("operator",),
)  # fmt: skip
def company_modify(company_id: int, payload: dict[str, Any]) -> dict[str, Any]:
    require(Role.OPERATOR)
    found = get_or_404(Company, company_id)
    before = snapshot_company(found)
    with refused():
        provisioning.save_company(
            db.session(), name=payload.get("name", found.name), timezone=payload.get("timezone", found.timezone),
            company=found,
        )  # fmt: skip
    audit("modify", "company", found.id, before, snapshot_company(found))
    return company_json(found)


# --- subscribers ------------------------------------------------------------------------------------


def _subscriber(subscriber_id: int) -> Subscriber:
    found = get_or_404(Subscriber, subscriber_id)
    if found.status == SubscriberStatus.DELETED:
        raise ApiProblem(404, "no such subscriber")
    return found


@registry.route(
    "/subscribers", summary="List subscribers", tag="subscribers", response=page_of(SUBSCRIBER),
    query=[*CURSOR_PARAMS, COMPANY_FILTER],
)  # fmt: skip
def subscribers() -> dict[str, Any]:
    stmt = scoped(Subscriber).where(Subscriber.status != SubscriberStatus.DELETED)
    company_id = int_arg("company_id")
    if company_id is not None:
        stmt = stmt.where(Subscriber.company_id == company_id)
    result = page(stmt, Subscriber.id, lambda row: row)
    ids = [row.id for row in result["items"]]
    logins = db.session().execute(select(Account.subscriber_id, Account.username).where(Account.subscriber_id.in_(ids)))
    usernames = {subscriber_id: username for subscriber_id, username in logins}
    result["items"] = [subscriber_json(row, usernames.get(row.id, "")) for row in result["items"]]
    return result


@registry.route("/subscribers/{subscriber_id}", summary="One subscriber", tag="subscribers", response=SUBSCRIBER)
def subscriber(subscriber_id: int) -> dict[str, Any]:
    return subscriber_json(_subscriber(subscriber_id))


def _save_subscriber(payload: dict[str, Any], found: Subscriber | None) -> Subscriber:
    company_id = payload.get("company_id", found.company_id if found else None)
    if company_id is None:
        raise ApiProblem(422, "company_id: required", field="company_id")
    if db.session().scalar(scoped(Company).where(Company.id == company_id)) is None:
        raise ApiProblem(422, "company_id: no such company", field="company_id", code="unknown")
    with refused():
        saved, _login = provisioning.save_subscriber(
            db.session(),
            company_id=company_id,
            name=payload.get("name", found.name if found else ""),
            mobile=payload.get("mobile", found.mobile if found else ""),
            default_country=config().numbering.default_country,
            status=found.status if found else SubscriberStatus.ACTIVE,
            prepaid=payload.get("prepaid", bool(found.prepaid) if found else False),
            username=payload.get("username", ""),
            password=payload.get("password", ""),
            subscriber=found,
            email=payload.get("email"),
            balance=payload.get("balance"),
        )
    return saved


@registry.route(
    "/subscribers", "POST", summary="Create a subscriber (with a portal login when username is given)",
    tag="subscribers", response=SUBSCRIBER, status=201,
    body={**SUBSCRIBER_IN, "required": ["company_id", "name", "mobile"]}, scopes=("operator", "company"),
)  # fmt: skip
def subscriber_create(payload: dict[str, Any]) -> tuple[dict[str, Any], int]:
    require(*STAFF)
    created = _save_subscriber(payload, None)
    audit("create", "subscriber", created.id, None, snapshot_subscriber(db.session(), created))
    return subscriber_json(created), 201


@registry.route(
    "/subscribers/{subscriber_id}", "PATCH", summary="Modify a subscriber", tag="subscribers", response=SUBSCRIBER,
    body=SUBSCRIBER_IN, scopes=("operator", "company"),
)  # fmt: skip
def subscriber_modify(subscriber_id: int, payload: dict[str, Any]) -> dict[str, Any]:
    require(*STAFF)
    found = _subscriber(subscriber_id)
    before = snapshot_subscriber(db.session(), found)
    _save_subscriber(payload, found)
    audit("modify", "subscriber", found.id, before, snapshot_subscriber(db.session(), found))
    return subscriber_json(found)


def _set_status(subscriber_id: int, action: str) -> dict[str, Any]:
    require(*STAFF)
    found = _subscriber(subscriber_id)
    before = snapshot_subscriber(db.session(), found)
    change = provisioning.suspend_subscriber if action == "suspend" else provisioning.resume_subscriber
    with refused():
        change(db.session(), found)
    audit(action, "subscriber", found.id, before, snapshot_subscriber(db.session(), found))
    return subscriber_json(found)


@registry.route(
    "/subscribers/{subscriber_id}/suspend", "POST", summary="Suspend a subscriber (login off)", tag="subscribers",
    response=SUBSCRIBER, scopes=("operator", "company"),
)  # fmt: skip
def subscriber_suspend(subscriber_id: int) -> dict[str, Any]:
    return _set_status(subscriber_id, "suspend")


@registry.route(
    "/subscribers/{subscriber_id}/resume", "POST", summary="Resume a suspended subscriber", tag="subscribers",
    response=SUBSCRIBER, scopes=("operator", "company"),
)  # fmt: skip
def subscriber_resume(subscriber_id: int) -> dict[str, Any]:
    return _set_status(subscriber_id, "resume")


@registry.route(
    "/subscribers/{subscriber_id}", "DELETE", summary="Delete a subscriber", tag="subscribers", response=None,
    status=204, scopes=("operator", "company"),
)  # fmt: skip
def subscriber_delete(subscriber_id: int) -> Response:
    require(*STAFF)
    found = _subscriber(subscriber_id)
    before = snapshot_subscriber(db.session(), found)
    with refused():
        provisioning.delete_subscriber(db.session(), found, utc_now())
    audit("delete", "subscriber", subscriber_id, before, None)
    return Response(status=204)


# --- contacts and groups ----------------------------------------------------------------------------


def _owned(model: Any, column: Any) -> Any:
    stmt = scoped(model)
    subscriber_id = int_arg("subscriber_id")
    return stmt.where(column == subscriber_id) if subscriber_id is not None else stmt


@registry.route(
    "/contacts", summary="List contacts", tag="contacts", response=page_of(CONTACT),
    query=[*CURSOR_PARAMS, SUBSCRIBER_FILTER],
)  # fmt: skip
def contacts() -> dict[str, Any]:
    return page(_owned(Contact, Contact.subscriber_id), Contact.id, contact_json)


@registry.route("/contacts/{contact_id}", summary="One contact", tag="contacts", response=CONTACT)
def contact(contact_id: int) -> dict[str, Any]:
    return contact_json(get_or_404(Contact, contact_id))


@registry.route(
    "/contacts", "POST", summary="Create a contact", tag="contacts", response=CONTACT, status=201, body=CONTACT_IN
)
def contact_create(payload: dict[str, Any]) -> tuple[dict[str, Any], int]:
    scope = current_scope()
    owner_id = scope.subscriber_id if scope.role is Role.SUBSCRIBER else payload.get("subscriber_id")
    if owner_id is None:
        raise ApiProblem(422, "subscriber_id: required", field="subscriber_id")
    _subscriber(owner_id)  # 404 outside the scope
    with refused():
        created, _ = provisioning.save_contact(
            db.session(), owner_id, nickname=payload["nickname"], phone=payload["phone"],
            default_country=config().numbering.default_country, first_name=payload.get("first_name", ""),
            last_name=payload.get("last_name", ""),
        )  # fmt: skip
    audit("create", "contact", created.id, None, contact_json(created))
    return contact_json(created), 201


@registry.route(
    "/contacts/{contact_id}", "DELETE", summary="Delete a contact", tag="contacts", response=None, status=204
)
def contact_delete(contact_id: int) -> Response:
    found = get_or_404(Contact, contact_id)
    before = contact_json(found)
    provisioning.delete_contact(db.session(), found)
    audit("delete", "contact", contact_id, before, None)
    return Response(status=204)


@registry.route(
    "/groups", summary="List groups", tag="groups", response=page_of(GROUP), query=[*CURSOR_PARAMS, SUBSCRIBER_FILTER]
)
def groups() -> dict[str, Any]:
    return page(_owned(Group, Group.subscriber_id), Group.id, group_json)


@registry.route("/groups/{group_id}", summary="One group", tag="groups", response=GROUP)
def group(group_id: int) -> dict[str, Any]:
    return group_json(get_or_404(Group, group_id))
