"""The CRM's XML provisioning API: a small WSGI app served only by the mutual-TLS listener
(:mod:`bridge.api.server`), never by the portal.

``POST /crm`` takes one request document (``crm.xsd``, also served at ``GET /crm.xsd``) and answers one
response document. In order: size (``TOO_LARGE``, the body is drained in small chunks, never held), the
hardened parse and the schema (:mod:`.documents`), the HA role (``NOT_ACTIVE``, :mod:`bridge.api.role`),
the transaction id (a repeat gets the stored answer, :mod:`bridge.api.idempotency`), then the operation
(:mod:`.operations`) whose change, audit line and answer are committed together before the answer leaves.

Settings: ``BRIDGE`` (the config), ``DATABASE_URL``, ``CLOCK`` (naive UTC ``datetime``), ``ROLE`` (an object
with ``is_active()`` and ``active_node()``; default: the engine's HA role, :func:`bridge.api.role.for_config`
over the control API), ``CONTROL_CLIENT`` (as the portal's, for that role).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flask import Flask, Response, current_app, request
from sqlalchemy.exc import IntegrityError

from bridge import config as config_module
from bridge.api import SUBJECT_KEY, idempotency, role
from bridge.config import Config
from bridge.provisioning import ProvisioningError
from web import db
from web.clock import utc_now
from web.crm import documents, operations
from web.crm.documents import DocumentError
from web.live import engine_client

log = logging.getLogger(__name__)
XML = "application/xml; charset=utf-8"
CHUNK = 64 * 1024
DRAIN_MAX = 64 * 1024 * 1024
"""A too-large body is read and dropped up to this much (so the client reads our answer); beyond, we hang up."""
STATUS = {
    documents.MALFORMED: 400,
    documents.DTD_FORBIDDEN: 400,
    documents.WRONG_NAMESPACE: 400,
    documents.SCHEMA: 400,
    documents.TOO_LARGE: 413,
    "INVALID": 422,
    "LIMIT": 422,
    "UNKNOWN": 422,
    "EXISTS": 409,
    documents.TRANSACTION_REUSED: 409,
    documents.NOT_ACTIVE: 503,
    documents.INTERNAL: 500,
}


def _xml(body: bytes | str, status: int, *, close: bool = False) -> Response:
    response = Response(body, status=status, content_type=XML)
    if close:
        response.headers["Connection"] = "close"
    return response


def _nack(code: str, text: str, **kwargs: Any) -> Response:
    return _xml(documents.nack(code, text, **kwargs), STATUS[code])


def _read_body(limit: int) -> bytes | None:
    """The body, or None when it is over ``limit`` (read and dropped chunk by chunk: memory stays flat)."""
    length = request.content_length
    stream = request.stream
    if length is not None and length > limit:
        left = min(length, DRAIN_MAX)
        while left > 0:
            chunk = stream.read(min(CHUNK, left))
            if not chunk:
                break
            left -= len(chunk)
        return None
    data = stream.read(limit + 1)
    return None if len(data) > limit else data


def _replay(stored: idempotency.Stored, transaction: str) -> Response:
    if not stored.same_request:
        return _nack(
            documents.TRANSACTION_REUSED, f"transaction {transaction} was used for another document",
            transaction=transaction,
        )  # fmt: skip
    return _xml(stored.body, stored.status)


def provision() -> Response:
    config: Config = current_app.config["BRIDGE"]
    body = _read_body(config.api.max_document_bytes)
    if body is None:
        limit = config.api.max_document_bytes
        return _xml(documents.nack(documents.TOO_LARGE, f"documents are limited to {limit} bytes"), 413, close=True)
    try:
        crm_request = documents.parse_request(body)
    except DocumentError as exc:
        return _nack(exc.code, exc.message, transaction=exc.transaction)
    ha = current_app.config.get("ROLE") or current_app.extensions["ha_role"]
    if not ha.is_active():
        return _nack(
            documents.NOT_ACTIVE, "this node is the standby", transaction=crm_request.transaction,
            active_node=ha.active_node(),
        )  # fmt: skip
    return _perform(config, crm_request, idempotency.digest(body))


def _perform(config: Config, crm_request: documents.CrmRequest, digest: str) -> Response:
    session = db.session()
    transaction = crm_request.transaction
    stored = idempotency.lookup(session, idempotency.CRM, transaction, digest)
    if stored is not None:
        return _replay(stored, transaction)
    actor = str(request.environ.get(SUBJECT_KEY) or "unknown client")
    ctx = operations.Context(session=session, config=config, actor=actor, now=utc_now(), transaction=transaction)
    try:
        result = operations.perform(ctx, crm_request)
        status, answer = 200, documents.ack(crm_request.operation, result, transaction=transaction)
    except ProvisioningError as exc:
        session.rollback()
        code = exc.code.upper()
        status, answer = STATUS[code], documents.nack(code, exc.message, transaction=transaction, field_name=exc.field)
    idempotency.remember(
        session, channel=idempotency.CRM, key=transaction, principal=actor, request_sha256=digest, status=status,
        content_type=XML, body=answer.decode(), now=ctx.now,
    )  # fmt: skip
    try:
        session.commit()
    except IntegrityError:  # the same transaction committed meanwhile by a concurrent copy: answer as it did
        session.rollback()
        again = idempotency.lookup(session, idempotency.CRM, transaction, digest)
        if again is None:
            raise
        return _replay(again, transaction)
    return _xml(answer, status)


def create_crm_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    settings = dict(test_config or {})
    config: Config = settings.get("BRIDGE") or config_module.load()
    app = Flask(__name__)
    app.config.update(BRIDGE=config, DATABASE_URL=config.database_url, MAX_CONTENT_LENGTH=None)
    app.config.update(settings)
    db.init_app(app, app.config["DATABASE_URL"])
    control = app.config.get("CONTROL_CLIENT") or engine_client(config)
    app.extensions["ha_role"] = role.for_config(config, control.status)

    @app.post("/crm")
    def _provision() -> Response:
        try:
            return provision()
        except Exception:  # never a stack trace to the CRM: a nack it can retry with the same transaction id
            log.exception("CRM request failed")
            db.session().rollback()
            return _nack(documents.INTERNAL, "internal error; retry with the same transaction id")

    @app.get("/crm.xsd")
    def _schema() -> Response:
        return Response(documents.XSD_PATH.read_bytes(), content_type=XML)

    return app
