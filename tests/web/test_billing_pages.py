"""The billing pages (issue 18): plan upload all-or-nothing, rating, top-ups, locks, statements (page, CSV,
PDF), active calls with forced disconnect through the control API, and tenant isolation."""

from __future__ import annotations

import datetime as dt
import io
from decimal import Decimal
from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import select, update

from bridge.db import make_engine, make_session_factory
from bridge.db.billing import LedgerMovement, RatePlanRow
from bridge.db.models import Leg, Subscriber

GOOD = b"prefix,description,price_per_min,first_increment,next_increment\n1555,US test,0.60,1,1\n44,UK,0.05,60,60\n"
BAD = GOOD + b"44x,Broken,-1\n"


def _db(world: Any) -> Any:
    return make_session_factory(make_engine(world.url))


def upload(client: FlaskClient, body: bytes, company_id: int = 0) -> Any:
    data = {"plan": (io.BytesIO(body), "plan.csv"), "name": "default"}
    return client.post(f"/billing/rates?company_id={company_id}", data=data, content_type="multipart/form-data")


def test_upload_with_a_bad_line_changes_nothing_then_rates(client: FlaskClient, auth: Any, world: Any) -> None:
    auth.login("op")
    response = upload(client, BAD)
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert "Nothing was imported: 1 bad line(s)" in page and "line 4" in page
    with _db(world)() as s:
        assert s.scalars(select(RatePlanRow)).all() == []
    assert upload(client, GOOD).status_code == 302
    page = client.get("/billing/rates?number=%2B15551230001").get_data(as_text=True)
    assert "+15551230001 -&gt; US test, 0.600/min, 1/1" in page
    assert client.get("/billing/rates.csv").get_data(as_text=True).startswith("prefix,description")


def test_topup_lock_and_statement(client: FlaskClient, auth: Any, world: Any) -> None:
    sid = world.a.subscriber_id
    with _db(world)() as s:
        s.execute(update(Subscriber).where(Subscriber.id == sid).values(prepaid=True, balance=None))
        s.commit()
    auth.login("acmeadmin")
    assert client.post(f"/billing/subscribers/{sid}/topup", data={"amount": "2.5"}).status_code == 302
    assert "2.500" in client.get("/billing/").get_data(as_text=True)
    client.post(f"/billing/subscribers/{sid}/lock", data={"locked": "1"})
    with _db(world)() as s:
        sub = s.get(Subscriber, sid)
        assert sub is not None and sub.lock_reasons == "manual" and Decimal(str(sub.balance)) == Decimal("2.5")
        (move,) = s.scalars(select(LedgerMovement)).all()
        assert (move.kind, move.amount, move.by) == ("top_up", Decimal("2.5000"), "portal:acmeadmin")
        move.at = dt.datetime(2026, 11, 22, 11, 0)  # the portal's test clock is 2026-11-22 12:00
        s.commit()
    page = client.get(f"/billing/subscribers/{sid}/statement").get_data(as_text=True)
    assert 'id="closing">2.500' in page and "top_up" in page
    text = client.get(f"/billing/subscribers/{sid}/statement.csv").get_data(as_text=True)
    assert text.splitlines()[0].startswith("kind,at,reference,amount") and "top_up" in text
    pdf = client.get(f"/billing/subscribers/{sid}/statement.pdf")
    assert pdf.mimetype == "application/pdf" and pdf.data.startswith(b"%PDF")


def test_other_company_is_hidden(client: FlaskClient, auth: Any, world: Any) -> None:
    auth.login("acmeadmin")
    other = world.b.subscriber_id
    assert client.get(f"/billing/subscribers/{other}/statement").status_code == 404
    assert client.post(f"/billing/subscribers/{other}/topup", data={"amount": "1"}).status_code == 404
    assert client.post(f"/billing/subscribers/{other}/lock", data={"locked": "1"}).status_code == 404
    auth.logout()
    auth.login("acmeuser")
    assert client.get(f"/billing/subscribers/{world.a.subscriber_id}/statement").status_code == 200
    assert client.get("/billing/active").status_code == 404


def test_active_calls_and_forced_disconnect(client: FlaskClient, auth: Any, world: Any, control: Any) -> None:
    with _db(world)() as s:
        up = dt.datetime(2026, 11, 22, 11, 59)
        s.execute(update(Leg).where(Leg.id.in_(world.a.live_leg_ids)).values(joined_at=up))
        s.commit()
    auth.login("op")
    assert upload(client, GOOD).status_code == 302
    page = client.get("/billing/active").get_data(as_text=True)
    for leg_id in world.a.live_leg_ids:
        assert f'data-leg="{leg_id}"' in page
    assert "1:00" in page and "0.600" in page  # one minute at 0.60/min, per second
    run_id, leg_id = world.a.live_run_id, world.a.live_leg_ids[1]
    response = client.post(f"/billing/active/{run_id}/legs/{leg_id}/disconnect")
    assert response.status_code == 302
    assert ("kick", (run_id, leg_id)) in control.calls
    auth.logout()
    auth.login("acmeadmin")
    assert client.post(f"/billing/active/{world.b.live_run_id}/end").status_code == 404


def test_company_settings_lock_past_the_credit_limit_and_destination_rules(
    client: FlaskClient, auth: Any, world: Any
) -> None:
    from bridge.db.billing import DestinationRule
    from bridge.db.models import Company

    cid, sid = world.a.company_id, world.a.subscriber_id
    with _db(world)() as s:
        s.execute(update(Subscriber).where(Subscriber.id == sid).values(prepaid=False))
        s.add(LedgerMovement(company_id=cid, kind="charge", amount=Decimal("-5"), reference="leg 1", by="engine"))
        s.commit()
    auth.login("op")
    form = {"postpaid": "1", "credit_limit": "5", "max_legs": "3", "allow_international": "1"}
    assert client.post(f"/billing/companies/{cid}/settings", data=form).status_code == 302
    assert client.post(f"/billing/subscribers/{sid}/limits", data={"max_legs": "2"}).status_code == 302
    client.post("/billing/destinations", data={"prefix": "+44900", "category": "premium"})
    assert "already has a rule" in client.post(
        "/billing/destinations", data={"prefix": "44900"}, follow_redirects=True
    ).get_data(as_text=True)
    with _db(world)() as s:
        company = s.get(Company, cid)
        sub = s.get(Subscriber, sid)
        assert company is not None and sub is not None
        assert (company.credit_limit, company.max_legs, company.allow_international) == (Decimal("5"), 3, True)
        assert sub.lock_reasons == "credit_limit" and sub.max_legs == 2  # at its limit: auto-locked
        (rule,) = s.scalars(select(DestinationRule)).all()
        assert (rule.company_id, rule.prefix, rule.category, rule.allow) == (None, "44900", "premium", False)


def test_priced_legs_csv_is_scoped_and_carries_the_rating(client: FlaskClient, auth: Any, world: Any) -> None:
    from bridge.db.models import Cdr

    with _db(world)() as s:
        cdr = s.get(Cdr, world.a.cdr_id)
        assert cdr is not None and cdr.disconnected_at is not None
        cdr.rate_plan, cdr.rate_prefix, cdr.billed_s, cdr.price = "default", "1555", 61, Decimal("0.61")
        day = cdr.disconnected_at.date().isoformat()
        s.commit()
    auth.login("acmeadmin")
    lines = client.get(f"/billing/legs.csv?start={day}&end={day}").get_data(as_text=True).splitlines()
    assert lines[0].startswith("cdr_id,leg_id,company_id")
    mine = [line for line in lines[1:] if line.startswith(f"{world.a.cdr_id},")]
    assert mine and mine[0].split(",")[11:15] == ["default", "1555", "61", "0.6100"]
    assert not [line for line in lines[1:] if line.startswith(f"{world.b.cdr_id},")]
