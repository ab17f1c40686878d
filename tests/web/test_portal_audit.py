"""Portal changes go into the provisioning audit log beside the APIs' (who = the portal user, channel portal,
before/after), and the operator's Audit page and CSV show them; a refused change leaves no line."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import select

from bridge.db import make_engine, make_session_factory
from bridge.db.models import Account, AuditEntry, Company, Contact, Group, InstantConference
from tests.web.conftest import Auth
from tests.web.portal_world import World


def _entries(world: World, **where: Any) -> list[AuditEntry]:
    engine = make_engine(world.url)
    with make_session_factory(engine)() as session:
        stmt = select(AuditEntry).filter_by(**where).order_by(AuditEntry.id)
        rows = list(session.scalars(stmt))
        session.expunge_all()
    engine.dispose()
    return rows


def _id(world: World, model: Any, **where: Any) -> int:
    engine = make_engine(world.url)
    with make_session_factory(engine)() as session:
        found = int(session.scalars(select(model.id).filter_by(**where)).one())
    engine.dispose()
    return found


def _json(text: str) -> Any:
    return json.loads(text) if text else None


def test_operator_changes_to_companies_and_logins_are_audited(client: FlaskClient, auth: Auth, world: World) -> None:
    auth.login("op")
    assert client.post("/admin/companies/new", data={"name": "Gamma", "timezone": "UTC"}).status_code == 302
    gamma = _id(world, Company, name="Gamma")
    assert client.post(f"/admin/companies/{gamma}/edit", data={"name": "Gamma2", "timezone": "UTC"}).status_code == 302
    account = {"username": "g-admin", "password": "long-enough-1", "role": "company_admin", "company_id": gamma,
               "active": "y"}  # fmt: skip
    assert client.post("/admin/accounts/new", data=account).status_code == 302
    assert client.post(f"/admin/companies/{gamma}/delete").status_code == 302
    assert client.post("/admin/companies/new", data={"name": "Delta", "timezone": "Mars/Olympus"}).status_code == 200
    lines = [(e.action, e.object_type, e.object_id == gamma) for e in _entries(world, channel="portal")]
    assert lines == [
        ("create", "company", True),
        ("modify", "company", True),
        ("create", "account", False),
        ("delete", "account", False),
        ("delete", "company", True),
    ]  # fmt: skip  (the refused Delta left nothing)
    entries = _entries(world, channel="portal")
    assert {e.actor for e in entries} == {f"portal op (account {_id_of_op(world)}, operator)"}
    modify = entries[1]
    assert (_json(modify.before)["name"], _json(modify.after)["name"]) == ("Gamma", "Gamma2")
    created_login = _json(entries[2].after)
    assert created_login["username"] == "g-admin" and created_login["password"] == "changed"
    assert "long-enough-1" not in "".join(e.before + e.after for e in entries)  # never a password
    assert _json(entries[4].before)["name"] == "Gamma2" and entries[4].after == ""


def _id_of_op(world: World) -> int:
    return _id(world, Account, username=world.operator)


def test_company_admin_changes_to_subscribers_are_audited_and_shown_to_the_operator(
    client: FlaskClient, auth: Auth, world: World
) -> None:
    auth.login("acmeadmin")
    sid = world.a.subscriber_id
    edit = {"company_id": world.a.company_id, "name": "Acme Boss", "mobile": "+15551230001", "status": "suspended",
            "username": "acmeuser"}  # fmt: skip
    assert client.post(f"/company/subscribers/{sid}/edit", data=edit).status_code == 302
    new = {"company_id": world.a.company_id, "name": "Carol", "mobile": "555-123-0060", "status": "active",
           "username": "carol", "password": "carol-secret-1"}  # fmt: skip
    assert client.post("/company/subscribers/new", data=new).status_code == 302
    [modify, create] = _entries(world, channel="portal", object_type="subscriber")
    assert modify.object_id == sid and modify.action == "modify" and modify.actor.startswith("portal acmeadmin ")
    before, after = _json(modify.before), _json(modify.after)
    assert (before["status"], after["status"], after["name"]) == ("active", "suspended", "Acme Boss")
    assert create.action == "create" and create.before == "" and _json(create.after)["mobile"] == "+15551230060"
    assert client.post(f"/company/subscribers/{create.object_id}/delete").status_code == 302
    deleted = _entries(world, channel="portal", action="delete")[-1]
    assert (deleted.object_id, _json(deleted.before)["name"], deleted.after) == (create.object_id, "Carol", "")

    auth.logout()
    auth.login("op")
    page = client.get("/admin/audit?channel=portal").get_data(as_text=True)
    assert "portal acmeadmin" in page and "Acme Boss" in page
    exported = client.get("/admin/audit.csv?channel=portal&object_type=subscriber").get_data(as_text=True)
    rows = list(csv.DictReader(io.StringIO(exported)))
    assert [r["action"] for r in rows] == ["modify", "create", "delete"] and rows[0]["channel"] == "portal"


def test_a_subscriber_s_own_contacts_groups_and_conferences_are_audited(
    client: FlaskClient, auth: Auth, world: World
) -> None:
    sid = world.a.subscriber_id
    auth.login("acmeuser")
    assert client.post(f"/s/{sid}/users/new", data={"nickname": "Bob", "phone": "(555) 123-0042"}).status_code == 302
    bob = _id(world, Contact, nickname="Bob")
    assert client.post(f"/users/{bob}/edit", data={"nickname": "Bobby", "phone": "5551230042"}).status_code == 302
    group = {"name": "Sales", "contacts": [str(bob)], "numbers": "+15551230077"}
    assert client.post(f"/s/{sid}/groups/new", data=group).status_code == 302
    sales = _id(world, Group, name="Sales")
    ic = {"name": "Board", "contacts": [str(bob)], "numbers": "+15551230101"}
    assert client.post(f"/s/{sid}/ics/new", data=ic).status_code == 302
    board = _id(world, InstantConference, name="Board")
    assert client.post(f"/ics/{board}/pins").status_code == 302
    assert client.post(f"/ics/{board}/delete").status_code == 302
    assert client.post(f"/groups/{sales}/delete").status_code == 302
    assert client.post(f"/users/{bob}/delete").status_code == 302
    lines = [(e.action, e.object_type) for e in _entries(world, channel="portal")]
    assert lines == [
        ("create", "contact"), ("modify", "contact"), ("create", "group"),
        ("create", "instant_conference"), ("modify", "instant_conference"), ("regenerate_pins", "instant_conference"),
        ("delete", "instant_conference"), ("delete", "group"), ("delete", "contact"),
    ]  # fmt: skip
    entries = _entries(world, channel="portal")
    assert _json(entries[1].after)["nickname"] == "Bobby" and _json(entries[1].before)["nickname"] == "Bob"
    assert {"contact_id": bob} in _json(entries[2].after)["members"]
    assert len(_json(entries[4].after)["members"]) == 2  # the IC's members as saved with it
    pins = [e for e in entries if e.object_type == "instant_conference"]
    assert all("pin" not in (e.before + e.after).replace('"pins": "regenerated"', "") for e in pins)
