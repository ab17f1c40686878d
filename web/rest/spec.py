"""The REST API's one route decorator: it registers the Flask view *and* its OpenAPI 3.1 operation, so the
document served at ``/api/v1/openapi.json`` is generated from the code and cannot drift from it.

Errors are RFC 7807 ``application/problem+json`` (:func:`problem`); every operation documents them as its
``default`` response. Bodies are checked against the operation's JSON Schema subset (:func:`check_body`:
object, required, property types, lengths, enums) before the view runs.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, request
from werkzeug.exceptions import HTTPException

PROBLEM = "application/problem+json"
JSON = "application/json"
Schema = dict[str, Any]


class ApiProblem(HTTPException):
    """An RFC 7807 problem: ``status``, ``title``, ``detail`` and optional extra members."""

    def __init__(
        self, status: int, detail: str, *, title: str = "", headers: dict[str, str] | None = None, **extra: Any
    ):
        super().__init__(detail)
        self.code = status
        self.title = title or _TITLES.get(status, "Error")
        self.detail = detail
        self.extra = extra
        self.extra_headers = headers or {}

    def get_response(self, environ: Any = None, scope: Any = None) -> Response:
        return problem(self.code or 500, self.detail, title=self.title, headers=self.extra_headers, **self.extra)


_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Payload Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


def problem(
    status: int, detail: str, *, title: str = "", headers: dict[str, str] | None = None, **extra: Any
) -> Response:
    body = {"type": "about:blank", "title": title or _TITLES.get(status, "Error"), "status": status, "detail": detail}
    body.update(extra)
    response = Response(json.dumps(body), status=status, mimetype=PROBLEM)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


PROBLEM_SCHEMA: Schema = {
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "field": {"type": "string"},
        "code": {"type": "string"},
        "active_node": {"type": "string"},
    },
}


@dataclasses.dataclass
class Operation:
    method: str
    path: str
    summary: str
    scopes: tuple[str, ...]
    response: Schema | None
    status: int
    body: Schema | None
    query: list[Schema]
    tag: str
    csv: bool = False


@dataclasses.dataclass
class Registry:
    blueprint: Blueprint
    operations: list[Operation] = dataclasses.field(default_factory=list)

    def route(
        self,
        path: str,
        method: str = "GET",
        *,
        summary: str,
        tag: str,
        response: Schema | None,
        status: int = 200,
        body: Schema | None = None,
        query: list[Schema] | None = None,
        scopes: tuple[str, ...] = ("operator", "company", "subscriber"),
        csv: bool = False,
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Register a view on ``path`` (OpenAPI style ``{id}``; Flask's ``<int:id>`` is derived)."""
        if body is not None:
            body = {**body, "additionalProperties": False}  # check_body refuses unknown members: say so
        operation = Operation(method, path, summary, scopes, response, status, body, query or [], tag, csv)
        self.operations.append(operation)
        flask_rule = path.replace("{", "<int:").replace("}", ">")

        def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
            @functools.wraps(view)
            def wrapped(**kwargs: Any) -> Any:
                if body is not None:
                    kwargs["payload"] = check_body(body)
                return view(**kwargs)

            endpoint = f"{method.lower()}_{view.__name__}"
            self.blueprint.add_url_rule(flask_rule, endpoint, wrapped, methods=[method])
            return wrapped

        return decorator


# --- bodies ---------------------------------------------------------------------------------------


_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "boolean": (bool,),
    "number": (int, float),
    "object": (dict,),
    "array": (list,),
}


def _check_value(name: str, value: Any, schema: Schema) -> None:
    kinds = schema.get("type", "string")
    kinds = kinds if isinstance(kinds, list) else [kinds]
    if value is None and "null" in kinds:
        return
    ok = any(
        isinstance(value, _TYPES[k]) and not (k in ("integer", "number") and isinstance(value, bool))
        for k in kinds
        if k != "null"
    )
    if not ok:
        raise ApiProblem(422, f"{name}: expected {' or '.join(kinds)}", field=name)
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0) or len(value) > schema.get("maxLength", 10_000):
            raise ApiProblem(422, f"{name}: wrong length", field=name)
    if "enum" in schema and value not in schema["enum"]:
        raise ApiProblem(422, f"{name}: one of {', '.join(map(str, schema['enum']))}", field=name)
    if isinstance(value, int) and not isinstance(value, bool):
        if value < schema.get("minimum", -(2**63)) or value > schema.get("maximum", 2**63):
            raise ApiProblem(422, f"{name}: out of range", field=name)


def check_body(schema: Schema) -> dict[str, Any]:
    """The request's JSON object, checked against ``schema``; a 400/415/422 problem otherwise."""
    if not request.is_json:
        raise ApiProblem(415, "send application/json")
    try:
        payload = json.loads(request.get_data(cache=True) or b"null")
    except ValueError as exc:
        raise ApiProblem(400, f"not JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise ApiProblem(422, "the body must be a JSON object")
    properties: dict[str, Schema] = schema.get("properties", {})
    for name in schema.get("required", []):
        if name not in payload:
            raise ApiProblem(422, f"{name}: required", field=name)
    for name, value in payload.items():
        if name not in properties:
            raise ApiProblem(422, f"{name}: unknown property", field=name)
        _check_value(name, value, properties[name])
    return payload


# --- the document ---------------------------------------------------------------------------------


def _parameters(operation: Operation) -> list[Schema]:
    params: list[Schema] = []
    for name in [part[1:-1] for part in operation.path.split("/") if part.startswith("{")]:
        params.append(
            {
                "name": name,
                "in": "path",
                "required": True,
                "schema": {"type": "integer", "minimum": 1, "maximum": 2**31 - 1},
            }
        )
    return params + operation.query


def _responses(operation: Operation) -> Schema:
    responses: Schema = {
        "default": {"description": "a problem (RFC 7807)", "content": {PROBLEM: {"schema": PROBLEM_SCHEMA}}}
    }
    if operation.response is None:
        responses[str(operation.status)] = {"description": "done"}
    else:
        content: Schema = {JSON: {"schema": operation.response}}
        if operation.csv:
            content["text/csv"] = {"schema": {"type": "string"}}
        responses[str(operation.status)] = {"description": "success", "content": content}
    return responses


def openapi(registry: Registry, *, version: str) -> Schema:
    paths: Schema = {}
    for op in registry.operations:
        entry: Schema = {
            "summary": op.summary,
            "operationId": f"{op.method.lower()}{op.path.replace('/', '_').replace('{', '').replace('}', '')}",
            "tags": [op.tag],
            "description": "Token scopes: " + ", ".join(op.scopes) + ".",
            "parameters": _parameters(op),
            "responses": _responses(op),
        }
        if op.body is not None:
            entry["requestBody"] = {"required": True, "content": {JSON: {"schema": op.body}}}
        if op.method == "POST":
            entry["parameters"].append(
                {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "required": False,
                    "schema": {"type": "string", "maxLength": 100},
                }
            )
        paths.setdefault("/api/v1" + op.path, {})[op.method.lower()] = entry
    return {
        "openapi": "3.1.0",
        "info": {"title": "Conference bridge REST API", "version": version},
        "servers": [{"url": "/"}],
        "components": {"securitySchemes": {"token": {"type": "http", "scheme": "bearer"}}},
        "security": [{"token": []}],
        "paths": paths,
    }
