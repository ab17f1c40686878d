"""The HTTPS web portal: Flask app factory with one blueprint per area.

``create_app(test_config)`` builds the app from the appliance config (``test_config["BRIDGE"]``, a
:class:`bridge.config.Config`; loaded from ``$BRIDGE_CONFIG`` when absent). Other settings:
``DATABASE_URL`` (default: the config's database), ``CONTROL_CLIENT`` (an object with the
:class:`web.live.Control` methods; default: a :class:`bridge.control_client.ControlClient`),
``CLOCK`` (returns naive UTC ``datetime``), ``SSE_INTERVAL_S``, ``SSE_MAX_S`` and ``SSE_MAX_STREAMS`` (live
view streams; see :mod:`web.api`).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask, g, render_template, request
from flask_wtf import CSRFProtect
from flask_wtf.csrf import CSRFError
from werkzeug.wrappers import Response

from bridge import config as config_module
from bridge.api import role as ha_role
from bridge.config import Config

csrf = CSRFProtect()

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _standby_gate(app: Flask) -> None:
    """On the standby of an HA pair the portal is read-only: a banner on every page, every POST refused.

    The role is the engine's (:class:`bridge.api.role.HaRole`, shared with the REST API, which answers its
    own paths with a problem document instead of this page)."""
    from web.rest import is_api_path

    @app.before_request
    def _read_only_on_standby() -> tuple[str, int] | None:
        ha = app.extensions["ha_role"].state()
        g.ha_read_only = bool(ha.get("read_only", True))
        g.ha_active_node = ha.get("active_node")
        if not g.ha_read_only or request.method in SAFE_METHODS or request.endpoint == "auth.logout":
            return None
        if is_api_path(request.path):
            return None
        active = g.ha_active_node
        where = f"the active node, {active}" if active else "the active node (none is active right now)"
        message = f"This node is the standby: the portal is read-only here. Make changes on {where}."
        return render_template("error.html", code=503, message=message), 503


def _secret_key(config: Config) -> str:
    """``web.secret_key`` or one generated once under ``data_dir`` (mode 0600) and shared by all workers."""
    if config.web.secret_key:
        return config.web.secret_key
    path = config.data_path / "web_secret_key"
    try:
        return path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another worker won the race
        return Path(path).read_text(encoding="utf-8").strip()
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(key)
    return key


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    settings = dict(test_config or {})
    config: Config = settings.get("BRIDGE") or config_module.load()
    app = Flask(__name__)
    app.config.update(
        BRIDGE=config,
        DATABASE_URL=config.database_url,
        SESSION_COOKIE_SECURE=True,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_NAME="bridge_session",
        REMEMBER_COOKIE_SECURE=True,
        REMEMBER_COOKIE_HTTPONLY=True,
        REMEMBER_COOKIE_SAMESITE="Lax",
        PREFERRED_URL_SCHEME="https",
        PERMANENT_SESSION_LIFETIME=8 * 3600,
        MAX_CONTENT_LENGTH=1024 * 1024,
        WTF_CSRF_TIME_LIMIT=8 * 3600,
        SSE_INTERVAL_S=1.0,
        SSE_MAX_S=300.0,
        SSE_MAX_STREAMS=6,
    )
    app.config.update(settings)
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = _secret_key(config)

    from web import api, apiadmin, auth, db, live  # noqa: F401  (apiadmin: its pages on the admin blueprint)
    from web.admin import bp as admin_bp
    from web.billing import bp as billing_bp
    from web.company import bp as company_bp
    from web.subscriber import bp as subscriber_bp

    db.init_app(app, app.config["DATABASE_URL"])
    csrf.init_app(app)
    auth.init_app(app)
    live.init_app(app, config)
    app.extensions["ha_role"] = ha_role.for_config(config, app.extensions["control"].status)
    api.init_app(app)
    app.register_blueprint(auth.bp)
    app.register_blueprint(subscriber_bp)
    app.register_blueprint(company_bp)
    app.register_blueprint(admin_bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(billing_bp)
    if config.ha.enabled:
        _standby_gate(app)
    from web import rest

    rest.init_app(app)
    _register_handlers(app)

    from web.templating import init_app as init_templating

    init_templating(app)
    return app


def _register_handlers(app: Flask) -> None:
    """Security headers on every response; error pages (problem+json under the REST API's paths)."""
    from web import rest

    @app.after_request
    def _security_headers(response: Response) -> Response:
        response.headers["Strict-Transport-Security"] = "max-age=31536000; includeSubDomains"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "same-origin"
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
            "media-src 'self'; frame-ancestors 'none'; form-action 'self'"
        )
        return response

    @app.errorhandler(CSRFError)
    def _csrf_error(exc: CSRFError) -> tuple[str, int]:
        return render_template("error.html", code=400, message=exc.description), 400

    @app.errorhandler(404)
    def _not_found(_exc: Exception) -> tuple[str, int] | Response:
        if rest.is_api_path(request.path):
            return rest.spec.problem(404, "no such resource")
        return render_template("error.html", code=404, message="Not found."), 404

    @app.errorhandler(405)
    def _not_allowed(exc: Exception) -> Response:
        if rest.is_api_path(request.path):
            return rest.spec.problem(405, "method not allowed")
        return exc  # type: ignore[return-value]
