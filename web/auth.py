"""Sign-in and sign-out: flask-login sessions, per-address rate limit, per-account lockout."""

from __future__ import annotations

import hashlib
import time

from flask import Blueprint, Flask, current_app, flash, redirect, render_template, request, url_for
from flask_login import LoginManager, UserMixin, current_user, login_user, logout_user
from sqlalchemy import select
from werkzeug.security import check_password_hash, generate_password_hash
from werkzeug.wrappers import Response

from bridge.db.models import Account, EventLog, Role
from web import db
from web.clock import utc_now
from web.forms import LoginForm, PasswordChangeForm
from web.security import LoginRateLimiter, is_locked, login_required, record_failure, record_success

bp = Blueprint("auth", __name__)
login_manager = LoginManager()
login_manager.login_view = "auth.login"
login_manager.session_protection = "strong"

# Compared against when the username is unknown, so timing does not reveal which usernames exist.
_DUMMY_HASH = generate_password_hash("not-a-password")


def _password_mark(account: Account) -> str:
    """A short digest of the account's password hash, kept in the session: a password change (by the user
    or an operator) ends every other session of the account."""
    return hashlib.sha256(account.password_hash.encode()).hexdigest()[:16]


class PortalUser(UserMixin):  # type: ignore[misc]
    """The session's view of an :class:`Account` (detached from any database session)."""

    def __init__(self, account: Account) -> None:
        self.id = account.id
        self.username = account.username
        self.role = Role(account.role)
        self.company_id = account.company_id
        self.subscriber_id = account.subscriber_id
        self.password_mark = _password_mark(account)

    def get_id(self) -> str:
        return f"{self.id}.{self.password_mark}"


def init_app(app: Flask) -> None:
    login_manager.init_app(app)
    settings = app.config["BRIDGE"].web
    app.extensions["login_limiter"] = LoginRateLimiter(
        app.config.get("LOGIN_IP_LIMIT", max(20, settings.login_attempts * 4)),
        app.config.get("LOGIN_IP_WINDOW_S", 60.0),
    )


def _load_user(user_id: str) -> PortalUser | None:
    account_id, _, mark = user_id.partition(".")
    try:
        account = db.session().get(Account, int(account_id))
    except ValueError:
        return None
    if account is None or not account.active or mark != _password_mark(account):
        return None
    return PortalUser(account)


login_manager.user_loader(_load_user)


@bp.route("/login", methods=["GET", "POST"])
def login() -> str | Response | tuple[str, int]:
    if current_user.is_authenticated:
        return redirect(url_for("auth.index"))
    form = LoginForm()
    if form.validate_on_submit():
        limiter: LoginRateLimiter = current_app.extensions["login_limiter"]
        client = request.remote_addr or "?"
        if not limiter.allowed(client, time.monotonic()):
            flash("Too many sign-in attempts; wait a minute.", "error")
            return render_template("login.html", form=form), 429
        session = db.session()
        account = session.scalar(select(Account).where(Account.username == form.username.data))
        now = utc_now()
        ok = check_password_hash(account.password_hash if account else _DUMMY_HASH, form.password.data or "")
        if account is not None and account.active and ok and not is_locked(account, now):
            record_success(account)
            session.commit()
            login_user(PortalUser(account))
            return redirect(url_for("auth.index"))
        limiter.failed(client, time.monotonic())
        if account is not None and not is_locked(account, now) and not ok:
            settings = current_app.config["BRIDGE"].web
            if record_failure(account, now, attempts=settings.login_attempts, lockout_s=settings.lockout_s):
                session.add(EventLog(kind="portal_lockout", detail=f"account {account.username} from {client}"))
            session.commit()
        flash("Sign-in failed: wrong username or password, or the account is locked.", "error")
        return render_template("login.html", form=form), 401
    return render_template("login.html", form=form)


@bp.route("/logout", methods=["POST"])
@login_required
def logout() -> Response:
    logout_user()
    flash("Signed out.", "info")
    return redirect(url_for("auth.login"))


@bp.route("/account/password", methods=["GET", "POST"])
@login_required
def password() -> str | Response | tuple[str, int]:
    """Change one's own password: the current one is checked like a sign-in (failures count towards the
    lockout); other sessions of the account end, this one continues."""
    form = PasswordChangeForm()
    title = "Change password"
    if not form.validate_on_submit():
        return render_template("form.html", form=form, title=title), 400 if form.is_submitted() else 200
    session = db.session()
    account = session.get(Account, current_user.id)
    assert account is not None  # the user loader just read it
    now = utc_now()
    if not check_password_hash(account.password_hash, form.current.data or ""):
        settings = current_app.config["BRIDGE"].web
        if record_failure(account, now, attempts=settings.login_attempts, lockout_s=settings.lockout_s):
            session.add(EventLog(kind="portal_lockout", detail=f"account {account.username}: password change"))
            session.commit()
            logout_user()
            flash("Too many wrong passwords: the account is locked for a while.", "error")
            return redirect(url_for("auth.login"))
        session.commit()
        form.current.errors.append("wrong password")
        return render_template("form.html", form=form, title=title), 400
    if form.new.data == form.current.data:
        form.new.errors.append("choose a password different from the current one")
        return render_template("form.html", form=form, title=title), 400
    account.password_hash = generate_password_hash(form.new.data)
    record_success(account)
    session.add(EventLog(kind="password_change", detail=f"account {account.username}"))
    session.commit()
    login_user(PortalUser(account))  # the new mark: this session stays, the others end
    flash("Password changed.", "info")
    return redirect(url_for("auth.index"))


@bp.route("/")
@login_required
def index() -> Response:
    if current_user.role is Role.OPERATOR:
        return redirect(url_for("admin.dashboard"))
    if current_user.role is Role.COMPANY_ADMIN:
        return redirect(url_for("company.dashboard"))
    return redirect(url_for("subscriber.home", sid=current_user.subscriber_id or 0))
