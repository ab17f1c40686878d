"""REST resource for CDRs: filter by time range, company, subscriber; cursor pages; JSON or CSV."""

from __future__ import annotations

import csv
import datetime as dt
import io
from typing import Any

from flask import Response, request

from bridge.db.models import Cdr
from web.rest import registry
from web.rest.common import TIME_CURSOR_PARAMS, int_arg, page_of, time_page
from web.rest.directory import COMPANY_FILTER, STR, SUBSCRIBER_FILTER
from web.rest.spec import ApiProblem, Schema
from web.tenancy import scoped

FIELDS = (
    "id", "company_id", "company_name", "subscriber_id", "moderator_name", "ic_id", "service_id", "service_type",
    "direction", "role", "destination", "cli", "dnis", "called_at", "joined_at", "disconnected_at", "cause",
    "recording", "created_at",
)  # fmt: skip
NULL_INT: Schema = {"type": ["integer", "null"]}
NULL_TIME: Schema = {"type": ["string", "null"]}
CDR: Schema = {
    "type": "object",
    "required": list(FIELDS),
    "properties": {
        "id": {"type": "integer"}, "company_id": NULL_INT, "company_name": STR, "subscriber_id": NULL_INT,
        "moderator_name": STR, "ic_id": NULL_INT, "service_id": NULL_INT, "service_type": STR, "direction": STR,
        "role": STR, "destination": STR, "cli": STR, "dnis": STR, "called_at": NULL_TIME, "joined_at": NULL_TIME,
        "disconnected_at": NULL_TIME, "cause": STR, "recording": {"type": "boolean"}, "created_at": NULL_TIME,
    },
}  # fmt: skip
TIME_PARAMS: list[Schema] = [
    {"name": "from", "in": "query", "required": False, "schema": {"type": "string", "format": "date-time"}},
    {"name": "to", "in": "query", "required": False, "schema": {"type": "string", "format": "date-time"}},
    {"name": "format", "in": "query", "required": False, "schema": {"type": "string", "enum": ["json", "csv"]}},
]


COLUMNS = tuple(getattr(Cdr, name) for name in FIELDS)


def cdr_json(cdr: Any) -> dict[str, Any]:
    """A CDR (or a row of :data:`COLUMNS`) as the API shows it."""
    row: dict[str, Any] = {}
    for name in FIELDS:
        value = getattr(cdr, name)
        row[name] = value.isoformat() if isinstance(value, dt.datetime) else value
    return row


def _time(name: str) -> dt.datetime | None:
    text = request.args.get(name, "")
    if not text:
        return None
    text = text.strip().upper().replace("Z", "+00:00")
    try:
        value = dt.datetime.fromisoformat(text.replace(":60", ":59", 1) if text[17:19] == "60" else text)
    except ValueError:
        raise ApiProblem(400, f"{name}: an RFC 3339 date-time", field=name) from None
    if value.tzinfo is None:
        return value
    try:
        return value.astimezone(dt.UTC).replace(tzinfo=None)
    except OverflowError:  # year 1 or 9999 shifted past the calendar: as good as the end of time
        return value.replace(tzinfo=None)


@registry.route(
    "/cdrs", summary="CDRs (created_at in [from, to), in (created_at, id) order)", tag="cdrs",
    response=page_of(CDR), query=[*TIME_CURSOR_PARAMS, COMPANY_FILTER, SUBSCRIBER_FILTER, *TIME_PARAMS], csv=True,
)  # fmt: skip
def cdrs() -> Any:
    stmt = scoped(Cdr).with_only_columns(*COLUMNS)  # the tenant filter, only the columns shown
    for name, column in (("company_id", Cdr.company_id), ("subscriber_id", Cdr.subscriber_id)):
        value = int_arg(name)
        if value is not None:
            stmt = stmt.where(column == value)
    start, end = _time("from"), _time("to")
    if end is not None:
        stmt = stmt.where(Cdr.created_at < end)
    result = time_page(stmt, Cdr.created_at, Cdr.id, cdr_json, since=start)
    if request.args.get("format", "json") == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(result["items"])
        response = Response(out.getvalue(), mimetype="text/csv")
        if result["next_cursor"]:
            response.headers["X-Next-Cursor"] = result["next_cursor"]
        return response
    return result
