"""The REST API (/api/v1): tokens and scopes, the portal's tenant rules, writes through the provisioning core,
idempotency keys, rate limit, problems, CDR pages, live conferences, and the OpenAPI document's sync with the routes."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from bridge.db import make_engine, make_session_factory
from bridge.db.billing import LedgerMovement
from bridge.db.models import Account, AuditEntry, Subscriber
from tests.web.conftest import Clock, make_app
from tests.web.portal_world import FakeControl, World
from tests.web.rest_fixtures import Tokens, bearer, make_tokens
from web.rest import registry


@pytest.fixture
def tokens(world: World) -> Tokens:
    return make_tokens(world)


@pytest.fixture
def api(app: Flask) -> FlaskClient:
    return app.test_client()


def _get(api: FlaskClient, secret: str, path: str, **kwargs: Any) -> Any:
    return api.get("/api/v1" + path, headers=bearer(secret), **kwargs)


def _post(api: FlaskClient, secret: str, path: str, body: Any = None, **headers: str) -> Any:
    return api.post("/api/v1" + path, json=body, headers={**bearer(secret), **headers})


def _count(world: World, model: Any, *where: Any) -> int:
    engine = make_engine(world.url)
    with make_session_factory(engine)() as session:
        count = int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)
    engine.dispose()
    return count


def test_without_a_live_token_a_problem_document(api: FlaskClient, tokens: Tokens) -> None:
    for headers in ({}, bearer("brt_nope"), bearer(tokens.revoked), {"Authorization": "Basic eDp5"}):
        response = api.get("/api/v1/companies", headers=headers)
        assert response.status_code == 401
        assert response.mimetype == "application/problem+json"
        assert response.json["status"] == 401 and response.headers["WWW-Authenticate"].startswith("Bearer")
    assert api.get("/api/v1/no-such-thing", headers=bearer(tokens.operator)).mimetype == "application/problem+json"


def test_a_company_token_sees_its_company_only(api: FlaskClient, tokens: Tokens, world: World) -> None:
    for path in ("/companies", "/subscribers", "/contacts", "/groups", "/instant-conferences", "/cdrs", "/conferences"):
        body = _get(api, tokens.company_a, path).get_data(as_text=True)
        assert "ZETA" not in body and ("Acme" in body or path == "/conferences"), path
    for path in (
        f"/companies/{world.b.company_id}", f"/subscribers/{world.b.subscriber_id}", f"/contacts/{world.b.contact_id}",
        f"/groups/{world.b.group_id}", f"/instant-conferences/{world.b.ic_id}", f"/conferences/{world.b.live_run_id}",
    ):  # fmt: skip
        assert _get(api, tokens.company_a, path).status_code == 404, path
    kick = f"/conferences/{world.b.live_run_id}/legs/{world.b.live_leg_ids[1]}/kick"
    assert _post(api, tokens.company_a, kick).status_code == 404
    assert _get(api, tokens.company_a, "/dnis").json["items"] == []
    assert len(_get(api, tokens.operator, "/dnis").json["items"]) == 4


def test_a_subscriber_token_may_not_provision(api: FlaskClient, tokens: Tokens, world: World) -> None:
    body = {"company_id": world.a.company_id, "name": "Eve", "mobile": "+15551239999"}
    assert _post(api, tokens.subscriber_a, "/subscribers", body).status_code == 403
    contact = _post(api, tokens.subscriber_a, "/contacts", {"nickname": "bob", "phone": "+15551238888"})
    assert contact.status_code == 201 and contact.json["subscriber_id"] == world.a.subscriber_id


def test_subscriber_life_cycle_through_the_core_with_audit(api: FlaskClient, tokens: Tokens, world: World) -> None:
    body = {
        "company_id": world.a.company_id, "name": "Eve", "mobile": "+15551239999", "username": "eve",
        "password": "secret-password", "email": "eve@example.com", "prepaid": True, "balance": "5.00",
    }  # fmt: skip
    created = _post(api, tokens.company_a, "/subscribers", body)
    assert created.status_code == 201, created.json
    sid = created.json["id"]
    assert created.json["username"] == "eve" and created.json["balance"] == "5.00"
    again = _post(api, tokens.company_a, "/subscribers", {**body, "username": "eve2"})
    assert (again.status_code, again.json["field"], again.json["code"]) == (409, "mobile", "exists")
    other = _post(api, tokens.company_a, "/subscribers", {**body, "company_id": world.b.company_id, "mobile": "+1555"})
    assert other.status_code == 422 and other.json["field"] == "company_id"
    assert _post(api, tokens.company_a, f"/subscribers/{sid}/suspend").json["status"] == "suspended"
    assert _count(world, Account, Account.username == "eve", Account.active.is_(False)) == 1
    assert _post(api, tokens.company_a, f"/subscribers/{sid}/resume").json["status"] == "active"
    patched = api.patch(f"/api/v1/subscribers/{sid}", json={"name": "Eve B"}, headers=bearer(tokens.company_a))
    assert patched.json["name"] == "Eve B"
    assert api.delete(f"/api/v1/subscribers/{sid}", headers=bearer(tokens.company_a)).status_code == 204
    assert _get(api, tokens.company_a, f"/subscribers/{sid}").status_code == 404
    actions = [a for (a,) in _rows(world, AuditEntry.action)]
    assert actions == ["create", "suspend", "resume", "modify", "delete"]


def _rows(world: World, *columns: Any) -> list[Any]:
    engine = make_engine(world.url)
    with make_session_factory(engine)() as session:
        rows = list(session.execute(select(*columns).order_by(AuditEntry.id)))
    engine.dispose()
    return rows


def test_an_idempotency_key_replays_and_creates_nothing_twice(api: FlaskClient, tokens: Tokens, world: World) -> None:
    body = {"company_id": world.a.company_id, "name": "Ida", "mobile": "+15551237777"}
    first = _post(api, tokens.company_a, "/subscribers", body, **{"Idempotency-Key": "k-1"})
    second = _post(api, tokens.company_a, "/subscribers", body, **{"Idempotency-Key": "k-1"})
    assert first.status_code == second.status_code == 201
    assert first.json == second.json and second.headers["Idempotent-Replayed"] == "true"
    assert _count(world, Subscriber, Subscriber.mobile == "+15551237777") == 1
    changed = _post(api, tokens.company_a, "/subscribers", {**body, "name": "Other"}, **{"Idempotency-Key": "k-1"})
    assert changed.status_code == 422
    same_key_other_token = _post(api, tokens.operator, "/subscribers", body, **{"Idempotency-Key": "k-1"})
    assert same_key_other_token.status_code == 409  # its own key space: the mobile now exists


def test_the_rate_limit_answers_429_with_retry_after(
    tmp_path: Path, world: World, control: FakeControl, clock: Clock, tokens: Tokens
) -> None:
    import dataclasses

    app = make_app(tmp_path, world, control, clock)
    config = app.config["BRIDGE"]
    app = make_app(tmp_path, world, control, clock, BRIDGE=dataclasses.replace(
        config, api=dataclasses.replace(config.api, rest_rate_per_s=0.01, rest_burst=2)
    ))  # fmt: skip
    client = app.test_client()
    statuses = [_get(client, tokens.operator, "/companies").status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    refused = _get(client, tokens.operator, "/companies")
    assert int(refused.headers["Retry-After"]) >= 1 and refused.mimetype == "application/problem+json"
    assert _get(client, tokens.company_a, "/companies").status_code == 200  # per token


def test_the_standby_refuses_writes(
    tmp_path: Path, world: World, control: FakeControl, clock: Clock, tokens: Tokens
) -> None:
    class Standby:
        def is_active(self) -> bool:
            return False

        def active_node(self) -> str:
            return "bridge-b:8443"

    client = make_app(tmp_path, world, control, clock, ROLE=Standby()).test_client()
    assert _get(client, tokens.operator, "/companies").status_code == 200
    refused = _post(client, tokens.operator, "/companies", {"name": "New"})
    assert refused.status_code == 503 and refused.json["active_node"] == "bridge-b:8443"


def test_cdrs_page_by_cursor_and_export_csv(api: FlaskClient, tokens: Tokens, world: World) -> None:
    first = _get(api, tokens.operator, "/cdrs?limit=1")
    assert len(first.json["items"]) == 1 and first.json["next_cursor"]
    second = _get(api, tokens.operator, f"/cdrs?limit=1&cursor={first.json['next_cursor']}")
    assert second.json["items"][0]["id"] > first.json["items"][0]["id"]
    csv = _get(api, tokens.company_a, "/cdrs?format=csv")
    assert csv.mimetype == "text/csv" and csv.get_data(as_text=True).startswith("id,company_id")
    assert "ZETA" not in csv.get_data(as_text=True)
    by_subscriber = _get(api, tokens.operator, f"/cdrs?subscriber_id={world.b.subscriber_id}").json["items"]
    assert by_subscriber and {c["subscriber_id"] for c in by_subscriber} == {world.b.subscriber_id}
    assert _get(api, tokens.operator, "/cdrs?from=2000-01-01T00:00:00Z&to=2000-01-02T00:00:00Z").json["items"] == []
    assert _get(api, tokens.operator, "/cdrs?from=yesterday").status_code == 400


def test_live_conferences_through_the_control_api(
    api: FlaskClient, tokens: Tokens, world: World, control: FakeControl
) -> None:
    a = world.a
    assert [c["run_id"] for c in _get(api, tokens.company_a, "/conferences").json["items"]] == [a.live_run_id]
    assert _post(api, tokens.subscriber_a, "/conferences", {"ic_id": a.ic_id}).status_code == 201
    assert control.launched == [a.ic_id]
    assert _post(api, tokens.company_a, f"/conferences/{a.live_run_id}/recording", {"on": True}).status_code == 200
    assert (
        _post(api, tokens.company_a, f"/conferences/{a.live_run_id}/dial", {"number": "+15551230077"}).status_code
        == 200
    )
    mute = f"/conferences/{a.live_run_id}/legs/{a.live_leg_ids[1]}/mute"
    assert _post(api, tokens.company_a, mute, {"muted": True}).status_code == 200
    assert _post(api, tokens.company_a, mute, {"muted": "yes"}).status_code == 422
    assert _post(api, tokens.company_a, f"/conferences/{a.live_run_id}/end").status_code == 200
    control.down = True
    assert _get(api, tokens.company_a, "/conferences").status_code == 503


def test_the_openapi_document_matches_the_routes(app: Flask, api: FlaskClient) -> None:
    document = api.get("/api/v1/openapi.json").json
    assert document["openapi"] == "3.1.0"
    documented = {(path, method.upper()) for path, ops in document["paths"].items() for method in ops}
    routed = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith("rest.") and rule.endpoint != "rest.openapi_document":
            path = rule.rule.replace("<int:", "{").replace(">", "}")
            routed |= {(path, m) for m in rule.methods or () if m not in ("HEAD", "OPTIONS")}
    assert documented == routed
    assert len(registry.operations) == len(routed)
    json.dumps(document)  # serialisable


def test_the_operator_makes_and_revokes_tokens_and_reads_the_audit(
    client: FlaskClient, auth: Any, world: World
) -> None:
    auth.login("op")
    page = client.post("/admin/tokens", data={"name": "crm-rest", "scope": "company", "company_id": world.a.company_id})
    text = page.get_data(as_text=True)
    secret = text.split('<code id="token-secret">')[1].split("</code>")[0]
    assert secret.startswith("brt_")
    api = client.application.test_client()
    created = _post(
        api, secret, "/subscribers", {"company_id": world.a.company_id, "name": "Tom", "mobile": "+15551236666"}
    )
    assert created.status_code == 201
    audit = client.get("/admin/audit").get_data(as_text=True)
    assert "crm-rest" in audit and "+15551236666" in audit
    csv = client.get("/admin/audit.csv?object_type=subscriber")
    assert csv.mimetype == "text/csv" and "Tom" in csv.get_data(as_text=True)
    token_id = _rows_tokens(world)
    client.post(f"/admin/tokens/{token_id}/revoke")
    assert _get(api, secret, "/companies").status_code == 401
    auth.logout()
    auth.login(world.a.admin)
    assert client.get("/admin/audit").status_code == 404  # operators only


def _rows_tokens(world: World) -> int:
    from bridge.db.models import ApiToken

    engine = make_engine(world.url)
    with make_session_factory(engine)() as session:
        token_id = int(session.scalar(select(func.max(ApiToken.id))) or 0)
    engine.dispose()
    return token_id


def _prepaid(api: FlaskClient, tokens: Tokens, subscriber_id: int) -> None:
    response = api.patch(
        f"/api/v1/subscribers/{subscriber_id}", json={"prepaid": True}, headers=bearer(tokens.operator)
    )
    assert response.status_code == 200 and response.json["prepaid"] is True


def test_a_top_up_changes_the_balance(api: FlaskClient, tokens: Tokens, world: World) -> None:
    sid = world.a.subscriber_id
    _prepaid(api, tokens, sid)
    before = _get(api, tokens.company_a, f"/subscribers/{sid}/balance")
    assert before.status_code == 200 and before.json["account"] == "subscriber"
    response = _post(api, tokens.company_a, f"/subscribers/{sid}/topups", {"amount": "10.5", "note": "wire 42"})
    assert response.status_code == 201, response.json
    moved = response.json["movement"]
    assert moved["amount"] == "10.5000" and moved["kind"] == "top_up" and moved["reference"] == "wire 42"
    assert moved["subscriber_id"] == sid
    expected = format(Decimal(before.json["balance"]) + Decimal("10.5"), "f")
    assert response.json["balance"] == expected
    assert _get(api, tokens.operator, f"/subscribers/{sid}/balance").json["balance"] == expected
    assert _count(world, LedgerMovement, LedgerMovement.subscriber_id == sid, LedgerMovement.kind == "top_up") == 1


def test_a_bad_amount_is_a_400_problem(api: FlaskClient, tokens: Tokens, world: World) -> None:
    sid = world.a.subscriber_id
    _prepaid(api, tokens, sid)
    for amount in ("0", "-5", "1.23456", "ten", "NaN", "Infinity", "1e40", ""):
        response = _post(api, tokens.company_a, f"/subscribers/{sid}/topups", {"amount": amount})
        assert response.status_code == 400, amount
        assert response.mimetype == "application/problem+json" and response.json["field"] == "amount", amount
    assert _count(world, LedgerMovement, LedgerMovement.subscriber_id == sid) == 0


def test_a_postpaid_subscriber_is_topped_up_through_the_company(api: FlaskClient, tokens: Tokens, world: World) -> None:
    response = _post(api, tokens.company_a, f"/subscribers/{world.a.subscriber_id}/topups", {"amount": "5"})
    assert response.status_code == 422 and response.mimetype == "application/problem+json"
    balance = _get(api, tokens.company_a, f"/subscribers/{world.a.subscriber_id}/balance")
    assert balance.json["account"] == "company"


def test_another_companys_subscriber_has_no_balance_to_top_up(api: FlaskClient, tokens: Tokens, world: World) -> None:
    sid = world.b.subscriber_id
    _prepaid(api, tokens, sid)
    assert _post(api, tokens.company_a, f"/subscribers/{sid}/topups", {"amount": "5"}).status_code == 404
    assert _get(api, tokens.company_a, f"/subscribers/{sid}/balance").status_code == 404
    own = f"/subscribers/{world.a.subscriber_id}/topups"
    assert _post(api, tokens.subscriber_a, own, {"amount": "5"}).status_code == 403
    assert _count(world, LedgerMovement, LedgerMovement.subscriber_id == sid) == 0


def test_a_top_up_with_the_same_idempotency_key_is_one_movement(api: FlaskClient, tokens: Tokens, world: World) -> None:
    sid = world.a.subscriber_id
    _prepaid(api, tokens, sid)
    path, body = f"/subscribers/{sid}/topups", {"amount": "7.25"}
    first = _post(api, tokens.company_a, path, body, **{"Idempotency-Key": "topup-1"})
    second = _post(api, tokens.company_a, path, body, **{"Idempotency-Key": "topup-1"})
    assert first.status_code == second.status_code == 201
    assert first.json == second.json and second.headers["Idempotent-Replayed"] == "true"
    assert _count(world, LedgerMovement, LedgerMovement.subscriber_id == sid) == 1
    assert _get(api, tokens.company_a, f"/subscribers/{sid}/balance").json["balance"] == first.json["balance"]
