"""Sign-in, lockout, rate limit, session cookies, CSRF and the security headers."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from conftest import Auth, Clock, HttpsClient, make_app
from flask import Flask
from flask.testing import FlaskClient
from portal_world import PASSWORD, FakeControl, World
from sqlalchemy import select

from bridge.db import make_engine, make_session_factory
from bridge.db.models import Account, EventLog


def _account(world: World, username: str) -> Account:
    engine = make_engine(world.url)
    with make_session_factory(engine)() as session:
        account = session.scalars(select(Account).where(Account.username == username)).one()
    engine.dispose()
    return account


@pytest.mark.parametrize(
    ("username", "target"),
    [("op", "/admin/"), ("acmeadmin", "/company/"), ("acmeuser", "/s/{sid}/")],
)
def test_each_role_lands_on_its_home(client: FlaskClient, auth: Auth, world: World, username: str, target: str) -> None:
    response = auth.login(username)
    assert response.status_code == 302
    home = client.get("/")
    assert home.headers["Location"].endswith(target.format(sid=world.a.subscriber_id))
    assert client.get(home.headers["Location"]).status_code == 200


def test_anonymous_is_sent_to_login(client: FlaskClient, world: World) -> None:
    for url in ("/", "/admin/", f"/s/{world.a.subscriber_id}/", f"/api/live/{world.a.live_run_id}/events"):
        response = client.get(url)
        assert response.status_code == 302
        assert "/login" in response.headers["Location"]


def test_wrong_password_and_unknown_user_are_refused_alike(client: FlaskClient, auth: Auth) -> None:
    wrong = auth.login("acmeuser", "nope-nope")
    unknown = auth.login("nobody", "nope-nope")
    assert wrong.status_code == unknown.status_code == 401
    assert b"Sign-in failed" in wrong.data and b"Sign-in failed" in unknown.data
    assert client.get("/").status_code == 302


def test_lockout_after_configured_failures_then_expiry(
    client: FlaskClient, auth: Auth, world: World, clock: Clock
) -> None:
    for _ in range(4):
        auth.login("acmeuser", "bad-password")
    assert _account(world, "acmeuser").failed_logins == 4
    auth.login("acmeuser", "bad-password")  # 5th: web.login_attempts default
    account = _account(world, "acmeuser")
    assert account.locked_until == clock.now + dt.timedelta(seconds=900)
    assert auth.login("acmeuser").status_code == 401  # right password, still locked
    clock.now += dt.timedelta(seconds=901)
    assert auth.login("acmeuser").status_code == 302
    assert _account(world, "acmeuser").locked_until is None
    engine = make_engine(world.url)
    with make_session_factory(engine)() as session:
        kinds = list(session.scalars(select(EventLog.kind)))
    engine.dispose()
    assert "portal_lockout" in kinds


def test_per_address_rate_limit(tmp_path: Path, world: World, control: FakeControl, clock: Clock) -> None:
    app = make_app(tmp_path, world, control, clock, LOGIN_IP_LIMIT=3)
    app.test_client_class = HttpsClient
    client = app.test_client()
    statuses = [
        client.post("/login", data={"username": f"x{i}", "password": "whatever1"}).status_code for i in range(4)
    ]
    assert statuses == [401, 401, 401, 429]


def test_session_cookie_is_secure_httponly_samesite(client: FlaskClient, auth: Auth) -> None:
    response = auth.login("acmeuser")
    cookie = response.headers["Set-Cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_security_headers(client: FlaskClient) -> None:
    response = client.get("/login")
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Frame-Options"] == "DENY"


def test_logout_ends_the_session(client: FlaskClient, auth: Auth) -> None:
    auth.login("op")
    assert client.get("/admin/").status_code == 200
    auth.logout()
    assert client.get("/admin/").status_code == 302


def test_csrf_is_enforced_on_every_form(tmp_path: Path, world: World, control: FakeControl, clock: Clock) -> None:
    app: Flask = make_app(tmp_path, world, control, clock, WTF_CSRF_ENABLED=True)
    app.test_client_class = HttpsClient
    client = app.test_client()
    assert client.post("/login", data={"username": "op", "password": "x"}).status_code == 400
    page = client.get("/login").get_data(as_text=True)
    token = page.split('name="csrf_token" type="hidden" value="')[1].split('"')[0]
    same_origin = {"Referer": "https://localhost/login"}  # Flask-WTF checks it on HTTPS (browsers send it)
    login = {"username": "op", "password": PASSWORD, "csrf_token": token}
    assert client.post("/login", data=login, headers=same_origin).status_code == 302
    # a state-changing POST without the token is refused, with it accepted
    assert client.post(f"/users/{world.a.contact_id}/delete", headers=same_origin).status_code == 400
    headers = {**same_origin, "X-CSRFToken": token}
    assert client.post(f"/users/{world.a.contact_id}/delete", headers=headers).status_code == 302
