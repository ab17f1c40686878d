"""Helpers shared by the REST resources: cursor pages, scope checks, provisioning refusals as problems."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from flask import request
from sqlalchemy import Select, literal, tuple_

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
TIME_CURSOR_PARAMS: list[Schema] = [
    CURSOR_PARAMS[0],
    {
        "name": "cursor",
        "in": "query",
        "required": False,
        "schema": {"type": "string", "pattern": "^[0-9]{1,18}-[0-9]{1,12}$"},
    },
]
EPOCH = dt.datetime(1, 1, 1)
MICROSECOND = dt.timedelta(microseconds=1)


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


def _limit() -> int:
    return int_arg("limit", PAGE_DEFAULT, maximum=PAGE_MAX) or PAGE_DEFAULT


def _digits(text: str, most: int) -> bool:
    return text.isascii() and text.isdigit() and len(text) <= most


def _not_ours() -> ApiProblem:
    return ApiProblem(400, "cursor: not one of ours", field="cursor")


def _cursor() -> int:
    """The last id of the previous page (opaque to clients: pass ``next_cursor`` back as it came)."""
    text = request.args.get("cursor", "")
    if not text:
        return 0
    if not _digits(text, 12):
        raise _not_ours()
    return int(text)


def encode_cursor(last_id: int) -> str:
    return str(last_id)


def page(stmt: Select[Any], id_column: Any, render: Callable[[Any], Schema]) -> dict[str, Any]:
    """One page of ``stmt`` in id order after the cursor: ``{"items": [...], "next_cursor": ...}``."""
    limit = _limit()
    rows = list(db.session().scalars(stmt.where(id_column > _cursor()).order_by(id_column).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return {"items": [render(r) for r in rows], "next_cursor": encode_cursor(rows[-1].id) if more and rows else None}


def encode_time_cursor(when: dt.datetime, last_id: int) -> str:
    """``<microseconds since 0001-01-01>-<id>`` of the last row of a page in (time, id) order."""
    return f"{(when - EPOCH) // MICROSECOND}-{last_id}"


def _time_cursor() -> tuple[dt.datetime, int] | None:
    text = request.args.get("cursor", "")
    if not text:
        return None
    when, dash, last = text.partition("-")
    if not (dash and _digits(when, 18) and _digits(last, 12)):
        raise _not_ours()
    try:
        return EPOCH + int(when) * MICROSECOND, int(last)
    except OverflowError:
        raise _not_ours() from None


def time_page(
    stmt: Select[Any], time_column: Any, id_column: Any, render: Callable[[Any], Schema], since: dt.datetime | None
) -> dict[str, Any]:
    """One page of ``stmt`` with ``time_column >= since`` in (time, id) order after the cursor.

    Keyset: one index range scan whatever the page's depth, given an index that starts with the filter's
    equality columns followed by (time, id). The page's lower bound is the later of ``since`` and the
    cursor's time, as one plain comparison: SQLite seeks on a scalar bound, and left with both would seek
    on ``since`` and walk every earlier page's rows.
    """
    limit = _limit()
    after = _time_cursor()
    lower = since if after is None or (since is not None and since > after[0]) else after[0]
    if lower is not None:
        stmt = stmt.where(time_column >= lower)
    if after is not None:
        stmt = stmt.where(tuple_(time_column, id_column) > tuple_(literal(after[0], time_column.type), after[1]))
    rows = db.session().execute(stmt.order_by(time_column, id_column).limit(limit + 1)).all()
    more = len(rows) > limit
    rows = rows[:limit]
    last = rows[-1]._mapping if more and rows else None
    return {
        "items": [render(r) for r in rows],
        "next_cursor": encode_time_cursor(last[time_column.key], last[id_column.key]) if last is not None else None,
    }


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
