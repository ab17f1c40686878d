"""Every route for every role: allowed roles get their page (or redirect), the others 404, anonymous -> login."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.web.conftest import Auth
from tests.web.portal_world import FakeControl, World
from tests.web.routes_spec import ADMIN, OP, ROUTES, USER, ids, portal_rules

USERNAMES = {OP: "op", ADMIN: "acmeadmin", USER: "acmeuser"}
# What a successful POST answers with an empty body: a redirect back (302), a form shown again with errors
# (200), or a refusal that is not about access (400 bad number, 409 nothing to do).
POST_OK = {200, 302, 400, 409}


def _url(app: Flask, world: World, rule: Any) -> str:
    own = ids(world.a, world)
    with app.test_request_context():
        return app.url_for(rule.endpoint, **{name: own[name][0] for name in rule.arguments})


def test_spec_lists_exactly_the_routes(app: Flask) -> None:
    assert {r.endpoint for r in portal_rules(app)} == set(ROUTES)


@pytest.mark.parametrize("engine", ["up", "stopped"])
@pytest.mark.parametrize("role", [OP, ADMIN, USER])
def test_get_every_route(
    app: Flask, client: FlaskClient, auth: Auth, world: World, control: FakeControl, role: str, engine: str
) -> None:
    """Every page answers for every role, with the engine running and with it stopped (read-only from the db)."""
    control.down = engine == "stopped"
    auth.login(USERNAMES[role])
    for rule in portal_rules(app):
        if "GET" not in (rule.methods or set()) or rule.endpoint == "static":
            continue
        url = _url(app, world, rule)
        status = client.get(url).status_code
        if role in ROUTES[rule.endpoint]:
            expected = {302} if rule.endpoint in ("auth.index", "auth.login") else {200}
            if rule.endpoint == "api.live_json" and control.down:
                expected = {503}  # the JSON API says "engine unreachable" with its status
            assert status in expected, f"{role} GET {url} -> {status}"
        else:
            assert status == 404, f"{role} GET {url} -> {status} (should be hidden)"


def post_endpoints() -> list[str]:
    from bridge.config import from_dict
    from web import create_app  # collected before any fixture: a throwaway app just to read its routes

    app = create_app({"BRIDGE": from_dict({}), "DATABASE_URL": "sqlite://", "SECRET_KEY": "x"})
    return sorted(
        r.endpoint
        for r in portal_rules(app)
        if "POST" in (r.methods or set()) and r.endpoint not in ("auth.login", "auth.logout")
    )


@pytest.mark.parametrize("endpoint", post_endpoints())
def test_post_every_route_by_role(app: Flask, client: FlaskClient, auth: Auth, world: World, endpoint: str) -> None:
    rule = next(r for r in portal_rules(app) if r.endpoint == endpoint)
    url = _url(app, world, rule)
    allowed = ROUTES[endpoint]
    data = {"muted": "1", "on": "1", "locked": "1", "number": "+15551239999"}
    # denied roles first (they must get 404 and change nothing), then the allowed ones
    denied_first = sorted((OP, ADMIN, USER), key=lambda r: (r in allowed, r))
    first_allowed = True
    for role in denied_first:
        auth.logout()
        auth.login(USERNAMES[role])
        status = client.post(url, data=data).status_code
        if role not in allowed:
            assert status == 404, f"{role} POST {url} -> {status}"
        elif first_allowed:
            assert status in POST_OK, f"{role} POST {url} -> {status}"
            first_allowed = False
        else:  # the object may be gone after the first allowed role deleted it
            assert status in POST_OK or (status == 404 and endpoint.endswith("_delete")), (role, url, status)


def test_anonymous_everything_redirects_to_login(app: Flask, client: FlaskClient, world: World) -> None:
    for rule in portal_rules(app):
        if rule.endpoint in ("static", "auth.login"):
            continue
        url = _url(app, world, rule)
        for method in sorted((rule.methods or set()) & {"GET", "POST"}):
            response = client.open(url, method=method)
            assert response.status_code == 302 and "/login" in response.headers["Location"], (method, url)
