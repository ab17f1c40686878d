"""REST resources for a subscriber's prepaid account: its balance and top-ups, through the same ledger helpers
as the portal's billing pages (:mod:`bridge.conference.accounts`), so a top-up is the same movement from every
front door. A postpaid subscriber (billed to the company) has no account of its own: its top-up is a 422."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import select

from bridge.billing import BillingError
from bridge.billing.rating import MONEY_PLACES
from bridge.conference import accounts
from bridge.db.billing import LedgerMovement
from bridge.db.models import Subscriber
from web import db
from web.rest import actor, registry
from web.rest.common import require
from web.rest.directory import STAFF, STR, _subscriber
from web.rest.spec import ApiProblem, Schema

MAX_AMOUNT = Decimal("1e10")  # the ledger's MONEY column: 14 digits, 4 of them decimals
MONEY: Schema = {"type": "string", "pattern": r"^-?[0-9]+\.[0-9]{4}$"}
BALANCE: Schema = {
    "type": "object",
    "required": ["subscriber_id", "company_id", "account", "balance"],
    "properties": {
        "subscriber_id": {"type": "integer"},
        "company_id": {"type": "integer"},
        "account": {"type": "string", "enum": ["subscriber", "company"]},
        "balance": MONEY,
    },
}
MOVEMENT: Schema = {
    "type": "object",
    "required": ["id", "company_id", "subscriber_id", "kind", "amount", "at", "reference", "by"],
    "properties": {
        "id": {"type": "integer"},
        "company_id": {"type": "integer"},
        "subscriber_id": {"type": ["integer", "null"]},
        "kind": STR,
        "amount": MONEY,
        "at": STR,
        "reference": STR,
        "by": STR,
    },
}
TOPUP: Schema = {
    "type": "object",
    "required": ["movement", "balance"],
    "properties": {"movement": MOVEMENT, "balance": MONEY},
}
TOPUP_IN: Schema = {
    "type": "object",
    "required": ["amount"],
    "properties": {
        "amount": {"type": "string", "maxLength": 20},
        "note": {"type": "string", "maxLength": 200},
    },
}


def money(value: Any) -> str:
    return format(Decimal(str(value)).quantize(MONEY_PLACES), "f")


def parse_amount(text: str) -> Decimal:
    """A positive decimal string with at most 4 decimals (the portal's rule); a 400 problem otherwise."""
    try:
        amount = Decimal(text.strip())
        ok = amount.is_finite() and 0 < amount < MAX_AMOUNT and amount == amount.quantize(MONEY_PLACES)
    except InvalidOperation:
        ok = False
    if not ok:
        raise ApiProblem(400, "amount: a positive decimal string with at most 4 decimals", field="amount")
    return amount.quantize(MONEY_PLACES)


def movement_json(row: LedgerMovement) -> dict[str, Any]:
    return {
        "id": row.id, "company_id": row.company_id, "subscriber_id": row.subscriber_id, "kind": row.kind,
        "amount": money(row.amount), "at": row.at.isoformat(), "reference": row.reference, "by": row.by,
    }  # fmt: skip


def _account(subscriber: Subscriber) -> accounts.AccountKey:
    _payer, key = accounts.payer_for(subscriber.company, subscriber)
    return key


@registry.route(
    "/subscribers/{subscriber_id}/balance", summary="A subscriber's balance (the company's when postpaid)",
    tag="billing", response=BALANCE, scopes=("operator", "company"),
)  # fmt: skip
def subscriber_balance(subscriber_id: int) -> dict[str, Any]:
    require(*STAFF)
    found = _subscriber(subscriber_id)
    key = _account(found)
    return {
        "subscriber_id": found.id, "company_id": found.company_id,
        "account": "company" if key.subscriber_id is None else "subscriber",
        "balance": money(accounts.ledger_sum(db.session(), key)),
    }  # fmt: skip


@registry.route(
    "/subscribers/{subscriber_id}/topups", "POST", summary="Top up a prepaid subscriber", tag="billing",
    response=TOPUP, status=201, body=TOPUP_IN, scopes=("operator", "company"),
)  # fmt: skip
def subscriber_topup(subscriber_id: int, payload: dict[str, Any]) -> tuple[dict[str, Any], int]:
    require(*STAFF)
    found = _subscriber(subscriber_id)
    amount = parse_amount(payload["amount"])
    session = db.session()
    try:
        after = accounts.top_up(
            session, subscriber=found, amount=amount, by=actor(), reference=payload.get("note", "")[:200]
        )
    except (ValueError, BillingError) as exc:
        raise ApiProblem(422, f"top-up refused: {exc}", field="amount", code="refused") from exc
    key = _account(found)
    row = session.scalars(
        select(LedgerMovement)
        .where(LedgerMovement.company_id == key.company_id, LedgerMovement.subscriber_id == key.subscriber_id)
        .order_by(LedgerMovement.id.desc())
        .limit(1)
    ).one()
    return {"movement": movement_json(row), "balance": money(after)}, 201
