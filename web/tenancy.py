"""The ONE tenant filter: every company-scoped query in the portal goes through :func:`scoped`.

Rules (fail closed: a model without a rule raises :class:`TenancyError`):

- operator: sees everything;
- company admin: objects of their company (subscribers, their contacts/groups/ICs, runs, legs,
  recordings, CDRs, accounts, rooms);
- subscriber: their own subscriber record and what it owns, the runs it moderated (with legs and
  recordings) and its CDRs; its company record; its own account.

Objects outside the scope are reported as 404 (never 403), so ids of other companies reveal nothing.
"""

from __future__ import annotations

from typing import Any, TypeVar

from flask import abort, g
from flask_login import current_user
from sqlalchemy import ColumnElement, Select, false, select, true

from bridge.db.models import (
    Account,
    Cdr,
    Company,
    ConferenceRun,
    Contact,
    DnisNumber,
    Group,
    InstantConference,
    Leg,
    Recording,
    Role,
    Room,
    Subscriber,
)
from web import db
from web.errors import TenancyError

T = TypeVar("T")


class Scope:
    """Who is asking: built from the logged-in account (or directly in tests)."""

    def __init__(self, role: Role, company_id: int | None, subscriber_id: int | None, account_id: int) -> None:
        self.role = role
        self.company_id = company_id
        self.subscriber_id = subscriber_id
        self.account_id = account_id

    def condition(self, model: type[Any]) -> ColumnElement[bool]:
        """The WHERE clause limiting ``model`` to this scope."""
        if self.role is Role.OPERATOR:
            return true()
        if self.role is Role.COMPANY_ADMIN:
            if self.company_id is None:
                return false()
            return _company_rule(model, self.company_id)
        if self.role is Role.SUBSCRIBER:
            if self.subscriber_id is None or self.company_id is None:
                return false()
            return _subscriber_rule(model, self.subscriber_id, self.company_id, self.account_id)
        return false()


def _company_rule(model: type[Any], company_id: int) -> ColumnElement[bool]:
    subscribers = select(Subscriber.id).where(Subscriber.company_id == company_id)
    runs = select(ConferenceRun.id).where(ConferenceRun.company_id == company_id)
    rules: dict[type[Any], ColumnElement[bool]] = {
        Company: Company.id == company_id,
        Subscriber: Subscriber.company_id == company_id,
        Contact: Contact.subscriber_id.in_(subscribers),
        Group: Group.subscriber_id.in_(subscribers),
        InstantConference: InstantConference.subscriber_id.in_(subscribers),
        ConferenceRun: ConferenceRun.company_id == company_id,
        Leg: Leg.run_id.in_(runs),
        Recording: Recording.run_id.in_(runs),
        Cdr: Cdr.company_id == company_id,
        Account: Account.company_id == company_id,
        Room: Room.company_id == company_id,
        DnisNumber: false(),
    }
    return _rule(rules, model)


def _subscriber_rule(model: type[Any], subscriber_id: int, company_id: int, account_id: int) -> ColumnElement[bool]:
    runs = select(ConferenceRun.id).where(ConferenceRun.subscriber_id == subscriber_id)
    rules: dict[type[Any], ColumnElement[bool]] = {
        Company: Company.id == company_id,
        Subscriber: Subscriber.id == subscriber_id,
        Contact: Contact.subscriber_id == subscriber_id,
        Group: Group.subscriber_id == subscriber_id,
        InstantConference: InstantConference.subscriber_id == subscriber_id,
        ConferenceRun: ConferenceRun.subscriber_id == subscriber_id,
        Leg: Leg.run_id.in_(runs),
        Recording: Recording.run_id.in_(runs),
        Cdr: Cdr.subscriber_id == subscriber_id,
        Account: Account.id == account_id,
        Room: Room.company_id == company_id,
        DnisNumber: false(),
    }
    return _rule(rules, model)


def _rule(rules: dict[type[Any], ColumnElement[bool]], model: type[Any]) -> ColumnElement[bool]:
    try:
        return rules[model]
    except KeyError:
        raise TenancyError(f"no tenant rule for {model.__name__}") from None


def current_scope() -> Scope:
    api_scope: Scope | None = g.get("api_scope")
    if api_scope is not None:  # a REST API token (web.rest): the same rules, the token's scope
        return api_scope
    user = current_user
    if not getattr(user, "is_authenticated", False):
        return Scope(Role.SUBSCRIBER, None, None, 0)  # matches nothing
    return Scope(user.role, user.company_id, user.subscriber_id, user.id)


def scoped(model: type[T]) -> Select[T]:
    """``select(model)`` restricted to what the current user may see."""
    return select(model).where(current_scope().condition(model))


def get_or_404(model: type[T], object_id: int) -> T:
    """The object with this id if the current user may see it, else 404."""
    stmt: Select[T] = scoped(model).where(model.id == object_id)  # type: ignore[attr-defined]
    obj: T | None = db.session().scalar(stmt)
    if obj is None:
        abort(404)
    return obj


def report_scope(company_id: int = 0) -> dict[str, int | None] | None:
    """``company_id``/``subscriber_id`` arguments for ``bridge.cdr.reports`` limited to the current user.

    The operator may narrow to one company (``company_id``, 0 = all); a company admin always gets their
    own company and a subscriber their own CDRs, whatever they ask for. ``None``: nothing is visible.
    """
    scope = current_scope()
    if scope.role is Role.OPERATOR:
        return {"company_id": company_id or None, "subscriber_id": None}
    if scope.company_id is None:
        return None
    if scope.role is Role.COMPANY_ADMIN:
        return {"company_id": scope.company_id, "subscriber_id": None}
    if scope.role is Role.SUBSCRIBER and scope.subscriber_id is not None:
        return {"company_id": scope.company_id, "subscriber_id": scope.subscriber_id}
    return None


def visible_ids(model: type[Any], ids: list[int]) -> set[int]:
    """Which of ``ids`` the current user may see (used to filter the engine's live conferences)."""
    if not ids:
        return set()
    stmt = select(model.id).where(current_scope().condition(model), model.id.in_(ids))
    return set(db.session().scalars(stmt))
