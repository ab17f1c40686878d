"""REST resources for conferencing: Instant Conferences, rooms, DNIS numbers, and live conferences through the
engine's control API (as the portal's live pages do; a conference outside the token's scope is a 404)."""

from __future__ import annotations

from typing import Any

from flask import Response

from bridge import provisioning
from bridge.control_client import ControlRequestError, EngineUnreachable
from bridge.db.models import ConferenceRun, DnisNumber, InstantConference, Leg, Role, Room
from web import db
from web.live import control
from web.rest import registry
from web.rest.common import CURSOR_PARAMS, audit, config, page, page_of, refused, require
from web.rest.directory import ID, STR, SUBSCRIBER_FILTER, _owned
from web.rest.spec import ApiProblem, Schema
from web.tenancy import get_or_404, visible_ids

IC: Schema = {
    "type": "object",
    "required": ["id", "subscriber_id", "slot", "name", "dnis", "activation_pin", "user_pin", "participant_sms"],
    "properties": {
        "id": {"type": "integer"},
        "subscriber_id": {"type": "integer"},
        "slot": {"type": "integer"},
        "name": STR,
        "dnis": {"type": ["string", "null"]},
        "activation_pin": STR,
        "user_pin": STR,
        "participant_sms": {"type": "boolean"},
    },
}
ROOM: Schema = {
    "type": "object",
    "required": ["id", "number", "name", "max_members", "company_id", "has_pin"],
    "properties": {
        "id": {"type": "integer"},
        "number": STR,
        "name": STR,
        "max_members": {"type": "integer"},
        "company_id": {"type": ["integer", "null"]},
        "has_pin": {"type": "boolean"},
    },
}
ROOM_IN: Schema = {
    "type": "object",
    "required": ["number", "name"],
    "properties": {
        "number": {"type": "string", "minLength": 1, "maxLength": 20},
        "name": {"type": "string", "minLength": 1, "maxLength": 60},
        "pin": {"type": "string", "maxLength": 7},
        "moderator_pin": {"type": "string", "maxLength": 7},
        "max_members": {"type": "integer", "minimum": 0, "maximum": 10_000},
        "company_id": {"type": ["integer", "null"], "minimum": 1, "maximum": 2**31 - 1},
    },
}
DNIS: Schema = {
    "type": "object",
    "required": ["id", "number", "kind", "position"],
    "properties": {"id": {"type": "integer"}, "number": STR, "kind": STR, "position": {"type": "integer"}},
}
LIVE: Schema = {"type": "object", "required": ["run_id"], "properties": {"run_id": {"type": "integer"}}}
LIVE_LIST: Schema = {"type": "object", "required": ["items"], "properties": {"items": {"type": "array", "items": LIVE}}}
DONE: Schema = {"type": "object"}
NUMBER: Schema = {"type": "string", "minLength": 1, "maxLength": 32}


def ic_json(ic: InstantConference) -> dict[str, Any]:
    return {
        "id": ic.id, "subscriber_id": ic.subscriber_id, "slot": ic.slot, "name": ic.name,
        "dnis": ic.dnis.number if ic.dnis else None, "activation_pin": ic.activation_pin, "user_pin": ic.user_pin,
        "participant_sms": ic.participant_sms,
    }  # fmt: skip


def room_json(room: Room) -> dict[str, Any]:
    return {
        "id": room.id, "number": room.number, "name": room.name, "max_members": room.max_members,
        "company_id": room.company_id, "has_pin": bool(room.pin),
    }  # fmt: skip


@registry.route(
    "/instant-conferences", summary="List Instant Conferences", tag="instant conferences", response=page_of(IC),
    query=[*CURSOR_PARAMS, SUBSCRIBER_FILTER],
)  # fmt: skip
def ics() -> dict[str, Any]:
    return page(_owned(InstantConference, InstantConference.subscriber_id), InstantConference.id, ic_json)


@registry.route(
    "/instant-conferences/{ic_id}", summary="One Instant Conference", tag="instant conferences", response=IC
)
def ic(ic_id: int) -> dict[str, Any]:
    return ic_json(get_or_404(InstantConference, ic_id))


@registry.route("/rooms", summary="List meet-me rooms", tag="rooms", response=page_of(ROOM), query=CURSOR_PARAMS)
def rooms() -> dict[str, Any]:
    from web.tenancy import scoped

    return page(scoped(Room), Room.id, room_json)


@registry.route(
    "/rooms",
    "POST",
    summary="Create a room",
    tag="rooms",
    response=ROOM,
    status=201,
    body=ROOM_IN,
    scopes=("operator",),
)
def room_create(payload: dict[str, Any]) -> tuple[dict[str, Any], int]:
    require(Role.OPERATOR)
    with refused():
        room = provisioning.add_room(
            db.session(), config(), number=payload["number"], name=payload["name"], pin=payload.get("pin", ""),
            moderator_pin=payload.get("moderator_pin", ""), max_members=payload.get("max_members", 0),
            company_id=_company_id(payload.get("company_id")),
        )  # fmt: skip
    audit("create", "room", room.id, None, room_json(room))
    return room_json(room), 201


def _company_id(company_id: int | None) -> int | None:
    from bridge.db.models import Company

    if company_id is not None and db.session().get(Company, company_id) is None:
        raise ApiProblem(422, "company_id: no such company", field="company_id", code="unknown")
    return company_id


@registry.route(
    "/rooms/{room_id}", "DELETE", summary="Delete a room", tag="rooms", response=None, status=204, scopes=("operator",)
)
def room_delete(room_id: int) -> Response:
    require(Role.OPERATOR)
    room = get_or_404(Room, room_id)
    before = room_json(room)
    with refused():
        provisioning.delete_room(db.session(), room.number)
    audit("delete", "room", room_id, before, None)
    return Response(status=204)


@registry.route(
    "/dnis", summary="List DNIS numbers (operator)", tag="dnis", response=page_of(DNIS), query=CURSOR_PARAMS
)
def dnis() -> dict[str, Any]:
    from web.tenancy import scoped

    render = lambda d: {"id": d.id, "number": d.number, "kind": d.kind.value, "position": d.position}  # noqa: E731
    return page(scoped(DnisNumber), DnisNumber.id, render)


# --- live conferences ---------------------------------------------------------------------------------


def _engine(call: Any, *args: Any) -> dict[str, Any]:
    try:
        result: dict[str, Any] = call(*args)
    except EngineUnreachable as exc:
        raise ApiProblem(503, "the engine is not answering") from exc
    except ControlRequestError as exc:
        status = exc.status if exc.status in (400, 404, 409) else 502
        raise ApiProblem(status, exc.message) from exc
    return result


@registry.route("/conferences", summary="Live conferences", tag="live", response=LIVE_LIST)
def live_list() -> dict[str, Any]:
    conferences = _engine(lambda: {"items": control().conferences()})["items"]
    ids = [c["run_id"] for c in conferences if isinstance(c.get("run_id"), int)]
    allowed = visible_ids(ConferenceRun, ids)
    return {"items": [c for c in conferences if c.get("run_id") in allowed]}


def _live(run_id: int) -> int:
    return get_or_404(ConferenceRun, run_id).id


def _leg(run_id: int, leg_id: int) -> int:
    leg = get_or_404(Leg, leg_id)
    if leg.run_id != run_id:
        raise ApiProblem(404, "no such leg in this conference")
    return leg.id


@registry.route("/conferences/{run_id}", summary="One live conference", tag="live", response=LIVE)
def live_one(run_id: int) -> dict[str, Any]:
    return _engine(control().conference, _live(run_id))


@registry.route(
    "/conferences", "POST", summary="Launch an Instant Conference", tag="live", response=DONE, status=201,
    body={"type": "object", "required": ["ic_id"], "properties": {"ic_id": ID}},
)  # fmt: skip
def live_launch(payload: dict[str, Any]) -> tuple[dict[str, Any], int]:
    ic_id = get_or_404(InstantConference, payload["ic_id"]).id
    result = _engine(control().launch_ic, ic_id)
    audit("launch", "instant_conference", ic_id, None, {"ic_id": ic_id})
    return result, 201


@registry.route("/conferences/{run_id}/end", "POST", summary="End a conference", tag="live", response=DONE)
def live_end(run_id: int) -> dict[str, Any]:
    return _engine(control().end, _live(run_id))


@registry.route(
    "/conferences/{run_id}/recording", "POST", summary="Start or stop recording", tag="live", response=DONE,
    body={"type": "object", "required": ["on"], "properties": {"on": {"type": "boolean"}}},
)  # fmt: skip
def live_recording(run_id: int, payload: dict[str, Any]) -> dict[str, Any]:
    return _engine(control().recording, _live(run_id), payload["on"])


@registry.route(
    "/conferences/{run_id}/dial", "POST", summary="Dial a participant in", tag="live", response=DONE,
    body={"type": "object", "required": ["number"], "properties": {"number": NUMBER}},
)  # fmt: skip
def live_dial(run_id: int, payload: dict[str, Any]) -> dict[str, Any]:
    return _engine(control().dial, _live(run_id), payload["number"])


@registry.route(
    "/conferences/{run_id}/legs/{leg_id}/mute", "POST", summary="Mute or unmute a participant", tag="live",
    response=DONE, body={"type": "object", "required": ["muted"], "properties": {"muted": {"type": "boolean"}}},
)  # fmt: skip
def live_mute(run_id: int, leg_id: int, payload: dict[str, Any]) -> dict[str, Any]:
    return _engine(control().mute, _live(run_id), _leg(run_id, leg_id), payload["muted"])


@registry.route(
    "/conferences/{run_id}/legs/{leg_id}/kick", "POST", summary="Drop a participant", tag="live", response=DONE
)
def live_kick(run_id: int, leg_id: int) -> dict[str, Any]:
    return _engine(control().kick, _live(run_id), _leg(run_id, leg_id))
