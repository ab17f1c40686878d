"""Sign-in, lockout, rate limit, session cookies, CSRF and the security headers."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from bridge.db import make_engine, make_session_factory
from bridge.db.models import Account, EventLog
from tests.web.conftest import Auth, Clock, HttpsClient, make_app
from tests.web.portal_world import PASSWORD, FakeControl, World


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


def _change(client: FlaskClient, current: str, new: str, confirm: str | None = None) -> object:
    return client.post(
        "/account/password", data={"current": current, "new": new, "confirm": new if confirm is None else confirm}
    )


@pytest.mark.parametrize("username", ["op", "acmeadmin", "acmeuser"])
def test_every_role_changes_its_own_password(client: FlaskClient, auth: Auth, world: World, username: str) -> None:
    auth.login(username)
    assert client.get("/account/password").status_code == 200
    response = _change(client, PASSWORD, "a brand new secret")
    assert response.status_code == 302  # type: ignore[attr-defined]
    assert client.get("/").status_code == 302  # still signed in: to the role's home, not to /login
    assert "/login" not in client.get("/").headers["Location"]
    auth.logout()
    assert auth.login(username, PASSWORD).status_code == 401
    assert auth.login(username, "a brand new secret").status_code == 302
    engine = make_engine(world.url)
    with make_session_factory(engine)() as session:
        kinds = session.scalars(select(EventLog.kind)).all()
    engine.dispose()
    assert "password_change" in kinds


def test_a_password_change_ends_the_accounts_other_sessions(app: Flask, auth: Auth, world: World) -> None:
    other = app.test_client()
    assert isinstance(other, HttpsClient)
    Auth(other).login("acmeuser")
    assert other.get(f"/s/{world.a.subscriber_id}/").status_code == 200
    auth.login("acmeuser")
    _change(auth.client, PASSWORD, "a brand new secret")
    assert auth.client.get(f"/s/{world.a.subscriber_id}/").status_code == 200  # this session continues
    response = other.get(f"/s/{world.a.subscriber_id}/")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


@pytest.mark.parametrize(
    ("current", "new", "confirm", "message"),
    [
        ("wrong password!", "a brand new secret", None, b"wrong password"),
        (PASSWORD, "short", None, b"between 8 and 200 characters"),
        (PASSWORD, "a brand new secret", "another secret", b"the two new passwords differ"),
        (PASSWORD, PASSWORD, None, b"different from the current one"),
        ("", "", "", b"This field is required"),
    ],
)
def test_a_bad_password_change_says_why_and_changes_nothing(
    client: FlaskClient, auth: Auth, world: World, current: str, new: str, confirm: str | None, message: bytes
) -> None:
    before = _account(world, "acmeuser").password_hash
    auth.login("acmeuser")
    response = _change(client, current, new, confirm)
    assert response.status_code == 400  # type: ignore[attr-defined]
    assert message in response.data  # type: ignore[attr-defined]
    assert _account(world, "acmeuser").password_hash == before


def test_wrong_current_passwords_count_towards_the_lockout(client: FlaskClient, auth: Auth, world: World) -> None:
    auth.login("acmeuser")
    for _ in range(4):
        assert _change(client, "wrong password!", "a brand new secret").status_code == 400  # type: ignore[attr-defined]
    assert _account(world, "acmeuser").failed_logins == 4
    response = _change(client, "wrong password!", "a brand new secret")  # 5th: locked, signed out
    assert response.status_code == 302 and "/login" in response.headers["Location"]  # type: ignore[attr-defined]
    assert _account(world, "acmeuser").locked_until is not None
    assert auth.login("acmeuser").status_code == 401  # even the right password, while locked
