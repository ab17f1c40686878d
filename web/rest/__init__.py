"""The JSON REST API, ``/api/v1`` in the portal app: token authentication with scopes, the portal's tenant
rules, RFC 7807 problems, ``Idempotency-Key`` on POST, a token bucket per token, OpenAPI 3.1 at
``/api/v1/openapi.json`` generated from the routes (:mod:`.spec`).

Per request (``before_request``): the bearer token (:mod:`bridge.api.tokens`) sets the tenant scope that
:func:`web.tenancy.current_scope` returns, so every query goes through the portal's one tenant filter and
another company's object is a 404; then the rate limit (429 + ``Retry-After``); a write on the HA standby
is a 503 problem naming the active node in ``active_node`` (empty while none is known) with
``Retry-After: 1`` (:mod:`bridge.api.role`: the engine's role; reads are served on both nodes); a POST
repeating an ``Idempotency-Key`` of this token gets the stored answer. Views flush and never commit:
``after_request`` commits a successful write together with its stored answer, and rolls back anything else.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any

from flask import Blueprint, Flask, Response, current_app, g, jsonify, request
from werkzeug.exceptions import HTTPException

from bridge.api import idempotency, role, tokens
from bridge.db.models import ApiToken, Role, TokenScope
from bridge.ratelimit import KeyedBuckets
from web import db
from web.clock import utc_now
from web.rest.spec import ApiProblem, Registry, openapi, problem
from web.tenancy import Scope

bp = Blueprint("rest", __name__, url_prefix="/api/v1")
registry = Registry(bp)
VERSION = "1.0.0"
WRITES = ("POST", "PATCH", "PUT", "DELETE")


def scope_of(token: ApiToken) -> Scope:
    """The portal's tenant scope for a token (account id 0: a token sees no portal login)."""
    if token.scope is TokenScope.OPERATOR:
        return Scope(Role.OPERATOR, None, None, 0)
    if token.scope is TokenScope.COMPANY:
        return Scope(Role.COMPANY_ADMIN, token.company_id, None, 0)
    return Scope(Role.SUBSCRIBER, token.company_id, token.subscriber_id, 0)


def current_token() -> ApiToken:
    token: ApiToken = g.api_token
    return token


def actor() -> str:
    token = current_token()
    return f"token {token.id} ({token.name})"


def _rate_limited(token: ApiToken) -> None:
    buckets: KeyedBuckets[int] = current_app.extensions["rest_buckets"]
    with current_app.extensions["rest_lock"]:
        allowed = buckets.take(token.id, time.monotonic())
    if not allowed:
        retry = max(1, math.ceil(1.0 / buckets.rate))
        raise ApiProblem(
            429, f"at most {buckets.rate:g} requests per second per token", headers={"Retry-After": str(retry)}
        )


def _idempotency_key() -> str | None:
    key = request.headers.get("Idempotency-Key", "").strip()
    if request.method != "POST" or not key:
        return None
    if len(key) > 100:
        raise ApiProblem(400, "Idempotency-Key: at most 100 characters")
    return f"{current_token().id}:{key}"


def _digest() -> str:
    return idempotency.digest(
        request.method.encode() + b" " + request.path.encode() + b"\n" + request.get_data(cache=True)
    )


def _role() -> role.Role:
    ha: role.Role = current_app.config.get("ROLE") or current_app.extensions["ha_role"]  # tests inject a fake
    return ha


def _active_node_only() -> None:
    """A write on the standby of an HA pair: 503 naming the active node (``Retry-After``: the VIP moves to it)."""
    ha = _role()
    if not ha.is_active():
        active = ha.active_node()
        where = f"make changes on the active node, {active}" if active else "no node is known to be active right now"
        raise ApiProblem(503, f"this node is the standby: {where}", active_node=active, headers={"Retry-After": "1"})


@bp.before_request
def _authenticate() -> Response | None:
    if request.endpoint == "rest.openapi_document":
        return None
    scheme, _, secret = request.headers.get("Authorization", "").partition(" ")
    active = _role().is_active()  # the standby's database is a read-only replica: no last-used stamp there
    token = None
    if scheme.lower() == "bearer":
        token = tokens.authenticate(db.session(), secret.strip(), utc_now(), touch=active)
    if token is None:
        raise ApiProblem(401, "a valid bearer token is required", headers={"WWW-Authenticate": 'Bearer realm="api"'})
    g.api_token, g.api_scope = token, scope_of(token)
    _rate_limited(token)
    if request.method in WRITES:
        _active_node_only()
    key = _idempotency_key()
    if key is not None:
        stored = idempotency.lookup(db.session(), idempotency.REST, key, _digest())
        if stored is not None:
            if not stored.same_request:
                raise ApiProblem(422, "Idempotency-Key already used for another request")
            response = Response(stored.body, status=stored.status, mimetype=stored.content_type)
            response.headers["Idempotent-Replayed"] = "true"
            g.api_replayed = True
            return response
    return None


@bp.after_request
def _finish(response: Response) -> Response:
    if request.method not in WRITES or g.get("api_replayed") or "api_token" not in g:
        return response
    session = db.session()
    if response.status_code >= 400:
        session.rollback()
        return response
    key = _idempotency_key()
    if key is not None:
        idempotency.remember(
            session, channel=idempotency.REST, key=key, principal=actor(), request_sha256=_digest(),
            status=response.status_code, content_type=response.mimetype or "", body=response.get_data(as_text=True),
            now=utc_now(),
        )  # fmt: skip
    session.commit()
    return response


@bp.errorhandler(HTTPException)
def _http_problem(exc: HTTPException) -> Response:
    if isinstance(exc, ApiProblem):
        return exc.get_response()
    return problem(exc.code or 500, exc.description or exc.name)


@bp.errorhandler(Exception)
def _internal(exc: Exception) -> Response:
    current_app.logger.exception("REST request failed")
    return problem(500, "internal error")


@bp.get("/openapi.json")
def openapi_document() -> Response:
    return jsonify(openapi(registry, version=VERSION))


def is_api_path(path: str) -> bool:
    return path == bp.url_prefix or path.startswith(f"{bp.url_prefix}/")


def init_app(app: Flask) -> None:
    """Register the API (its modules add their routes on import), exempt it from CSRF (no cookies used)."""
    from web import csrf
    from web.rest import billing, conferences, directory, usage  # noqa: F401  (routes)

    config: Any = app.config["BRIDGE"]
    app.extensions["rest_buckets"] = KeyedBuckets(rate=config.api.rest_rate_per_s, burst=config.api.rest_burst)
    app.extensions["rest_lock"] = threading.Lock()
    csrf.exempt(bp)
    app.register_blueprint(bp)
