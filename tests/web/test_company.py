"""Company area: subscribers CRUD (with logins), usage report + CSV, CDRs + CSV, charts."""

from __future__ import annotations

import csv
import io

from flask.testing import FlaskClient
from sqlalchemy import select

from bridge.db import make_engine, make_session_factory
from bridge.db.models import Account, Role, Subscriber, SubscriberStatus
from tests.web.conftest import Auth
from tests.web.portal_world import PASSWORD, World


def test_admin_creates_subscriber_with_login(client: FlaskClient, auth: Auth, world: World) -> None:
    auth.login("acmeadmin")
    form = client.get("/company/subscribers/new").data
    assert b"Acme Corp" in form and b"ZETA" not in form
    data = {
        "company_id": world.a.company_id,
        "name": "Carol",
        "mobile": "555-123-0060",
        "status": "active",
        "username": "carol",
        "password": "carol-secret-1",
    }
    assert client.post("/company/subscribers/new", data=data).status_code == 302
    # another company's id is not a choice
    evil = {**data, "company_id": world.b.company_id, "mobile": "5551230061", "username": "evil"}
    assert client.post("/company/subscribers/new", data=evil).status_code == 200
    engine = make_engine(world.url)
    with make_session_factory(engine)() as session:
        carol = session.scalars(select(Subscriber).where(Subscriber.name == "Carol")).one()
        assert carol.mobile == "+15551230060" and carol.company_id == world.a.company_id
        account = session.scalars(select(Account).where(Account.username == "carol")).one()
        assert account.role is Role.SUBSCRIBER and account.subscriber_id == carol.id
        assert account.password_hash != "carol-secret-1"
        assert session.scalars(select(Account).where(Account.username == "evil")).first() is None
    auth.logout()
    assert auth.login("carol", "carol-secret-1").status_code == 302
    assert client.get("/").headers["Location"].endswith(f"/s/{carol.id}/")


def test_duplicate_mobile_and_delete_with_history(client: FlaskClient, auth: Auth, world: World) -> None:
    auth.login("acmeadmin")
    dup = {"company_id": world.a.company_id, "name": "Dup", "mobile": "+15551230002", "status": "active"}
    assert b"mobile +15551230002 is already registered" in client.post("/company/subscribers/new", data=dup).data
    # the seeded subscriber has runs and CDRs: it is marked deleted, its login disabled, history kept
    assert client.post(f"/company/subscribers/{world.a.subscriber_id}/delete").status_code == 302
    engine = make_engine(world.url)
    with make_session_factory(engine)() as session:
        subscriber = session.get(Subscriber, world.a.subscriber_id)
        assert subscriber is not None and subscriber.status is SubscriberStatus.DELETED
        login = session.get(Account, world.a.subscriber_account_id)
        assert login is not None and not login.active
    assert f'href="/s/{world.a.subscriber_id}/"'.encode() not in client.get("/company/subscribers").data
    auth.logout()
    assert auth.login("acmeuser", PASSWORD).status_code == 401


def test_edit_subscriber(client: FlaskClient, auth: Auth, world: World) -> None:
    auth.login("acmeadmin")
    page = client.get(f"/company/subscribers/{world.a.subscriber_id}/edit").data
    assert b"acmeuser" in page
    data = {
        "company_id": world.a.company_id,
        "name": "Acme Boss",
        "mobile": "+15551230001",
        "status": "suspended",
        "username": "acmeuser",
    }
    assert client.post(f"/company/subscribers/{world.a.subscriber_id}/edit", data=data).status_code == 302
    assert b"Acme Boss" in client.get("/company/subscribers").data


def test_usage_report_and_csv(client: FlaskClient, auth: Auth, world: World) -> None:
    auth.login("acmeadmin")
    page = client.get("/company/usage?start=2026-11-01&end=2026-11-30").data
    assert b"Acme Moderator" in page and b"<svg" in page and b"ZETA" not in page
    assert b"<td>0:08:00</td><td>8</td>" in page  # total time and billed minutes
    text = client.get("/company/usage.csv?start=2026-11-01&end=2026-11-30").get_data(as_text=True)
    rows = list(csv.reader(io.StringIO(text)))
    assert rows == [
        ["company", "moderator", "moderator_ident", "service_type", "events", "legs", "seconds", "minutes"],
        ["Acme Corp", "Acme Moderator", "", "IC", "1", "1", "480", "8"],
    ]
    empty = client.get("/company/usage.csv?start=2026-12-01&end=2026-12-31").get_data(as_text=True)
    assert empty.count("\n") == 1
    # the range counts even when another argument is bad (a company admin's company_id is not a choice)
    other = client.get(f"/company/usage.csv?start=2026-12-01&end=2026-12-31&company_id={world.b.company_id}")
    assert other.get_data(as_text=True).count("\n") == 1
    # the operator can narrow to one company; a company admin's company_id argument is ignored by the filter
    assert b"ZETA" not in client.get(f"/company/usage?company_id={world.b.company_id}").data


def test_cdrs_and_csv(client: FlaskClient, auth: Auth, world: World) -> None:
    auth.login("acmeadmin")
    page = client.get("/company/cdrs").data
    assert b"+15551230009" in page
    text = client.get("/company/cdrs.csv").get_data(as_text=True)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["company_name"] for r in rows] == ["Acme Corp"]
    assert rows[0]["duration_s"] == "480"


def test_operator_usage_across_companies(client: FlaskClient, auth: Auth, world: World) -> None:
    auth.login("op")
    text = client.get("/company/usage.csv").get_data(as_text=True)
    assert "Acme Corp" in text and "ZETA Corp" in text
    only_b = client.get(f"/company/usage.csv?company_id={world.b.company_id}").get_data(as_text=True)
    assert "ZETA Corp" in only_b and "Acme Corp" not in only_b
    dashboard = client.get("/company/").data
    assert dashboard.count(b"<svg") == 3
