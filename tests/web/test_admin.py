"""Operator area: companies, accounts, DNIS pool, trunks, billing CSV, system status."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from flask.testing import FlaskClient
from sqlalchemy import select

from bridge.db import make_engine, make_session_factory
from bridge.db.models import Account, Company, DnisNumber, Role
from tests.web.conftest import Auth, Clock, HttpsClient, make_app
from tests.web.portal_world import FakeControl, World
from web.admin import port_rows


def test_companies_crud_numbered_list(client: FlaskClient, auth: Auth, world: World) -> None:
    auth.login("op")
    assert client.post("/admin/companies/new", data={"name": "Gamma", "timezone": "Europe/Paris"}).status_code == 302
    bad = client.post("/admin/companies/new", data={"name": "Delta", "timezone": "Mars/Olympus"})
    assert b"unknown time zone" in bad.data
    page = client.get("/admin/companies").get_data(as_text=True)
    assert "<td>2</td><td>Gamma</td>" in page  # numbered, sorted by name
    engine = make_engine(world.url)
    with make_session_factory(engine)() as session:
        gamma = session.scalars(select(Company).where(Company.name == "Gamma")).one()
    assert (
        client.post(f"/admin/companies/{gamma.id}/edit", data={"name": "Gamma2", "timezone": "UTC"}).status_code == 302
    )
    assert client.post(f"/admin/companies/{gamma.id}/delete").status_code == 302
    # a company with subscribers stays
    refused = client.post(f"/admin/companies/{world.a.company_id}/delete", follow_redirects=True)
    assert b"still has subscribers" in refused.data
    with make_session_factory(engine)() as session:
        names = set(session.scalars(select(Company.name)))
    assert names == {"Acme Corp", "ZETA Corp"}


def test_accounts(client: FlaskClient, auth: Auth, world: World) -> None:
    auth.login("op")
    data = {
        "username": "acme2",
        "password": "long-enough-1",
        "role": "company_admin",
        "company_id": world.a.company_id,
        "active": "y",
    }
    assert client.post("/admin/accounts/new", data=data).status_code == 302
    no_company = {**data, "username": "acme3", "company_id": 0}
    assert b"needs a company" in client.post("/admin/accounts/new", data=no_company).data
    engine = make_engine(world.url)
    with make_session_factory(engine)() as session:
        account = session.scalars(select(Account).where(Account.username == "acme2")).one()
        assert account.role is Role.COMPANY_ADMIN and account.company_id == world.a.company_id
    auth.logout()
    assert auth.login("acme2", "long-enough-1").status_code == 302
    assert client.get("/company/").status_code == 200


def test_unlock_account(client: FlaskClient, auth: Auth, world: World, clock: Clock) -> None:
    for _ in range(5):
        auth.login("acmeadmin", "wrong-password")
    auth.login("op")
    page = client.get("/admin/accounts").data
    assert b"until" in page
    data = {
        "username": "acmeadmin",
        "role": "company_admin",
        "company_id": world.a.company_id,
        "active": "y",
        "unlock": "y",
    }
    assert client.post(f"/admin/accounts/{world.a.admin_account_id}/edit", data=data).status_code == 302
    auth.logout()
    assert auth.login("acmeadmin").status_code == 302


def test_dnis_pool(client: FlaskClient, auth: Auth, world: World) -> None:
    auth.login("op")
    page = client.get("/admin/dnis").data
    assert b"+15550101" in page
    added = client.post("/admin/dnis", data={"number": "+15550104", "kind": "pool", "position": "4"})
    assert added.status_code == 302, added.get_data(as_text=True)
    taken = client.post("/admin/dnis", data={"number": "+15550105", "kind": "pool", "position": "4"})
    assert b"free pool position" in taken.data
    # the number held by both seeded ICs cannot be removed; an unused one can
    engine = make_engine(world.url)
    with make_session_factory(engine)() as session:
        first = session.scalars(select(DnisNumber).where(DnisNumber.number == "+15550101")).one()
    assert b"stays" in client.post(f"/admin/dnis/{first.id}/delete", follow_redirects=True).data
    assert client.post(f"/admin/dnis/{world.dnis_id}/delete").status_code == 302
    assert client.post("/admin/dnis/load").status_code == 302  # config pool +15550101-103: 103 added back
    with make_session_factory(engine)() as session:
        numbers = set(session.scalars(select(DnisNumber.number)))
    assert numbers == {"+15550100", "+15550101", "+15550102", "+15550103", "+15550104"}  # ranges expanded


def test_trunks_and_status(tmp_path: Path, world: World, control: FakeControl, clock: Clock) -> None:
    app = make_app(tmp_path, world, control, clock)
    config = app.config["BRIDGE"]
    from bridge.config import from_dict

    app.config["BRIDGE"] = from_dict(
        {
            "node": {"data_dir": str(tmp_path)},
            "trunk_group": [{"name": "e1gw", "kind": "e1", "gateways": ["127.0.0.1:5070"], "spans": 2}],
        },
        base_dir=config.base_dir,
    )
    app.test_client_class = HttpsClient
    client = app.test_client()
    Auth(client).login("op")
    trunks = client.get("/admin/trunks").get_data(as_text=True)
    assert "127.0.0.1:5070" in trunks and 'class="gw up"' in trunks
    status = client.get("/admin/status").get_data(as_text=True)
    assert status.count('class="cell busy" title') == 2 and status.count('class="cell idle" title') == 58
    assert "bound_trx" in status and 'id="tick-health" class="ok"' in status
    control.down = True
    assert "engine is unreachable" in client.get("/admin/status").get_data(as_text=True)
    assert "engine is unreachable" in client.get("/admin/trunks").get_data(as_text=True)
    assert client.get("/admin/").status_code == 200


def test_port_rows_group_by_span_in_channel_order() -> None:
    status = {
        "sip": {
            "trunk_groups": [
                {
                    "name": "t",
                    "ports": [
                        {"span": 2, "channel": 2, "state": "idle"},
                        {"span": 1, "channel": 2, "state": "busy"},
                        {"span": 1, "channel": 1, "state": "down"},
                    ],
                }
            ]
        }
    }
    rows = port_rows(status)
    assert [(r["span"], [c["channel"] for c in r["cells"]]) for r in rows] == [(1, [1, 2]), (2, [2])]


def test_billing_csv(client: FlaskClient, auth: Auth, world: World) -> None:
    auth.login("op")
    assert b"2 records" in client.get("/admin/billing?start=2026-11-01&end=2026-11-30").data
    text = client.get("/admin/billing.csv?start=2026-11-01&end=2026-11-30").get_data(as_text=True)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert sorted(r["company_name"] for r in rows) == ["Acme Corp", "ZETA Corp"]
    assert {r["duration_s"] for r in rows} == {"480"}
