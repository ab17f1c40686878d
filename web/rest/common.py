"""Helpers shared by the REST resources: cursor pages, scope checks, provisioning refusals as problems."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from flask import request
from sqlalchemy import Select

from bridge.config import Config
from bridge.db.models import Role
from bridge.provisioning import ProvisioningError
from web import db
from web.rest.spec import ApiProblem, Schema
from web.tenancy import current_scope

T = TypeVar("T")
PAGE_DEFAULT = 100
PAGE_MAX = 500

CURSOR_PARAMS: list[Schema] = [
    {
        "name": "limit",
        "in": "query",
        "required": False,
        "schema": {"type": "integer", "minimum": 1, "maximum": PAGE_MAX},
    },
    {"name": "cursor", "in": "query", "required": False, "schema": {"type": "string", "pattern": "^[0-9]{1,12}$"}},
]


def page_of(item: Schema) -> Schema:
    return {
        "type": "object",
        "required": ["items", "next_cursor"],
        "properties": {"items": {"type": "array", "items": item}, "next_cursor": {"type": ["string", "null"]}},
    }


def config() -> Config:
    from flask import current_app

    bridge: Config = current_app.config["BRIDGE"]
    return bridge


def int_arg(name: str, default: int | None = None, *, minimum: int = 1, maximum: int = 2**31 - 1) -> int | None:
    text = request.args.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise ApiProblem(400, f"{name}: an integer", field=name) from None
    if not minimum <= value <= maximum:
        raise ApiProblem(400, f"{name}: {minimum}..{maximum}", field=name)
    return value


def _cursor() -> int:
    """The last id of the previous page (opaque to clients: pass ``next_cursor`` back as it came)."""
    text = request.args.get("cursor", "")
    if not text:
        return 0
    if not (text.isascii() and text.isdigit() and len(text) <= 12):
        raise ApiProblem(400, "cursor: not one of ours", field="cursor")
    return int(text)


def encode_cursor(last_id: int) -> str:
    return str(last_id)


def page(stmt: Select[Any], id_column: Any, render: Callable[[Any], Schema]) -> dict[str, Any]:
    """One page of ``stmt`` in id order after the cursor: ``{"items": [...], "next_cursor": ...}``."""
    limit = int_arg("limit", PAGE_DEFAULT, maximum=PAGE_MAX) or PAGE_DEFAULT
    rows = list(db.session().scalars(stmt.where(id_column > _cursor()).order_by(id_column).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return {"items": [render(r) for r in rows], "next_cursor": encode_cursor(rows[-1].id) if more and rows else None}


def require(*roles: Role) -> None:
    """The token's scope is one of ``roles``; else 403 (the operation, not an object, is out of reach)."""
    if current_scope().role not in roles:
        raise ApiProblem(403, "this token's scope may not do this")


@contextmanager
def refused() -> Iterator[None]:
    """A provisioning refusal as a problem: 409 for EXISTS, 422 otherwise, with the core's field and code."""
    try:
        yield
    except ProvisioningError as exc:
        status = 409 if exc.code == "exists" else 422
        raise ApiProblem(status, exc.message, field=exc.field, code=exc.code) from exc


def audit(action: str, kind: str, object_id: int | None, before: Schema | None, after: Schema | None) -> None:
    from bridge.provisioning.audit import record
    from web.clock import utc_now
    from web.rest import actor

    record(
        db.session(), actor=actor(), channel="rest", action=action, object_type=kind, object_id=object_id,
        before=before, after=after, now=utc_now(),
    )  # fmt: skip
