"""Tenant isolation: every route, called by company A's admin and subscriber with company B's ids, is 404.

The test walks ``app.url_map`` itself, so a new route is covered automatically; a route with a URL
argument the test does not know fails the test instead of being skipped.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from bridge.db import make_engine, make_session_factory
from bridge.db.models import Account, Company, Contact, Group, InstantConference, Subscriber
from tests.web.conftest import Auth
from tests.web.portal_world import FakeControl, World
from tests.web.routes_spec import ROUTES, ids, portal_rules

SKIP_ARGS = {"static"}  # serves files, no objects


def _urls(app: Flask, world: World, rule: Any) -> list[str]:
    b = ids(world.b, world)
    names = sorted(rule.arguments)
    for name in names:
        if name not in b:
            pytest.fail(f"route {rule.endpoint} ({rule.rule}) has argument {name!r} the isolation test does not know")
    urls = []
    with app.test_request_context():
        for combo in itertools.product(*(b[n] for n in names)):
            urls.append(app.url_for(rule.endpoint, **dict(zip(names, combo, strict=True))))
        # mixed: an A run with a B leg must not let the leg through either
        if set(names) == {"run_id", "leg_id"}:
            for leg in b["leg_id"]:
                urls.append(app.url_for(rule.endpoint, run_id=world.a.live_run_id, leg_id=leg))
    return urls


def _counts(world: World) -> dict[str, int]:
    engine = make_engine(world.url)
    with make_session_factory(engine)() as session:
        counts = {
            model.__name__: session.scalar(select(func.count(model.id))) or 0
            for model in (Company, Subscriber, Contact, Group, InstantConference, Account)
        }
    engine.dispose()
    return counts


@pytest.mark.parametrize("username", ["acmeadmin", "acmeuser"])
def test_every_route_with_other_company_ids_is_404(
    app: Flask, client: FlaskClient, auth: Auth, world: World, control: FakeControl, username: str
) -> None:
    before = _counts(world)
    assert auth.login(username).status_code == 302
    rules = [r for r in portal_rules(app) if r.arguments and r.endpoint not in SKIP_ARGS]
    assert {r.endpoint for r in portal_rules(app)} <= set(ROUTES), "routes_spec.ROUTES is missing routes"
    checked = 0
    for rule in rules:
        for url in _urls(app, world, rule):
            for method in sorted((rule.methods or set()) & {"GET", "POST"}):
                response = client.open(url, method=method, data={"muted": "1", "on": "1", "number": "+15551239999"})
                assert response.status_code == 404, f"{username} {method} {url} -> {response.status_code}"
                checked += 1
    assert checked > 50
    assert _counts(world) == before
    b_runs = {world.b.live_run_id, world.b.run_id}
    touched = [call for call in control.calls if call[0] != "conferences" and call[1] and call[1][0] in b_runs]
    assert touched == [], f"the engine was asked about company B's conferences: {touched}"
    assert control.launched == []


@pytest.mark.parametrize("username", ["acmeadmin", "acmeuser"])
def test_list_pages_never_show_other_company(
    app: Flask, client: FlaskClient, auth: Auth, world: World, username: str
) -> None:
    assert auth.login(username).status_code == 302
    own = ids(world.a, world)
    seen = 0
    for rule in portal_rules(app):
        if rule.endpoint in SKIP_ARGS or "GET" not in (rule.methods or set()):
            continue
        with app.test_request_context():
            url = app.url_for(rule.endpoint, **{name: own[name][0] for name in rule.arguments})
        response = client.get(url)
        if response.status_code == 200:
            seen += 1
            assert b"ZETA" not in response.data, f"{url} leaks company B to {username}"
    assert seen >= 15


def test_own_subscriber_pages_show_own_data_only(client: FlaskClient, auth: Auth, world: World) -> None:
    auth.login("acmeadmin")
    page = client.get(f"/s/{world.a.subscriber_id}/users")
    assert page.status_code == 200 and b"Acmecontact" in page.data and b"ZETA" not in page.data


def test_operator_sees_both_companies(client: FlaskClient, auth: Auth, world: World) -> None:
    auth.login("op")
    for url in (f"/s/{world.b.subscriber_id}/users", f"/ics/{world.b.ic_id}", f"/runs/{world.b.run_id}"):
        assert client.get(url).status_code == 200, url
    listing = client.get("/company/subscribers").data
    assert b"Acme Moderator" in listing and b"ZETA Moderator" in listing
