"""The engine's local control API (CONTRACTS §3): JSON over HTTP/1.1 on loopback, bearer token.

A deliberately tiny HTTP server on ``asyncio.start_server`` (aiohttp is not a dependency): one request
per connection (``Connection: close``), bodies up to 64 KiB, a 5 s read deadline. Handlers run on the
engine's loop thread, so they call the conference service directly. The router is pure
(:func:`route`), so it is tested without sockets.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from bridge.config import Config, parse_host_port

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024
MAX_DEPTH = 32
"""Deepest JSON nesting accepted; our bodies are two levels deep, and the parser recurses per level."""
MAX_ID = 2**63 - 1
"""Database ids are signed 64-bit integers (SQLite INTEGER, PostgreSQL BIGINT); 0 and below are never ids."""
READ_TIMEOUT_S = 5.0
TOKEN_FILE = "control.token"

_REASONS = {
    200: "OK",
    201: "Created",
    202: "Accepted",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Payload Too Large",
    500: "Internal Server Error",
}


def control_token(config: Config) -> str:
    """``control.token`` from the config, else ``<data_dir>/control.token`` (created with mode 0600)."""
    if config.control.token:
        return config.control.token
    path = config.data_path / TOKEN_FILE
    try:
        token = path.read_text(encoding="utf-8").strip()
        if token:
            return token
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(token + "\n")
    return token


class ControlTarget(Protocol):
    """What the API drives: the engine (status) and its conference service."""

    def status(self) -> dict[str, Any]: ...

    def conferences(self) -> list[dict[str, Any]]: ...

    def conference(self, run_id: int) -> dict[str, Any]: ...

    def launch(self, body: dict[str, Any]) -> dict[str, Any]: ...

    def end(self, run_id: int) -> None: ...

    def set_recording(self, run_id: int, on: bool) -> None: ...

    def set_locked(self, run_id: int, locked: bool) -> None: ...

    def dial(self, run_id: int, number: str) -> None: ...

    def set_muted(self, run_id: int, leg_id: int, muted: bool) -> None: ...

    def kick(self, run_id: int, leg_id: int) -> None: ...


class HaTarget(Protocol):
    """The HA pair's part of the target (``bridge.ha.node.HaNode`` through the engine)."""

    def ha_status(self) -> dict[str, Any]: ...

    def ha_switchover(self) -> dict[str, Any]: ...


class ApiError(Exception):
    """A request error with its HTTP status (400, 404, 409)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Response:
    status: int
    body: dict[str, Any]


_CONF = re.compile(r"^/conferences/([0-9]+)(?:/(end|recording|lock|dial))?$")
_LEG = re.compile(r"^/conferences/([0-9]+)/legs/([0-9]+)/(mute|kick)$")


def route(target: ControlTarget, method: str, path: str, body: dict[str, Any], errors: ErrorMap) -> Response:
    """Dispatch one authorised request; domain errors are mapped to statuses through ``errors``."""
    try:
        return _route(target, method, path.split("?", 1)[0], body)
    except ApiError as exc:
        return Response(exc.status, {"error": str(exc)})
    except Exception as exc:
        status = errors(exc)
        if status is None:
            log.exception("control API: %s %s failed", method, path)
            return Response(500, {"error": "internal error"})
        return Response(status, {"error": str(exc)})


ErrorMap = Callable[[Exception], int | None]


def _route(target: ControlTarget, method: str, path: str, body: dict[str, Any]) -> Response:
    if path == "/status":
        _method(method, "GET")
        return Response(200, target.status())
    if path in ("/ha", "/ha/switchover"):
        ha = _ha(target)
        if path == "/ha":
            _method(method, "GET")
            return Response(200, ha.ha_status())
        _method(method, "POST")
        return Response(202, ha.ha_switchover())  # started: GET /ha shows the hand-over
    if path == "/conferences":
        if method == "GET":
            return Response(200, {"conferences": target.conferences()})
        _method(method, "POST")
        if "ic_id" in body:
            _body_id(body, "ic_id")
        elif "subscriber_id" in body:
            _body_id(body, "subscriber_id")
        return Response(201, target.launch(body))
    match = _CONF.match(path)
    if match:
        run_id, verb = _path_id(match[1], "conference"), match[2]
        if verb is None:
            _method(method, "GET")
            return Response(200, target.conference(run_id))
        _method(method, "POST")
        if verb == "end":
            target.end(run_id)
        elif verb == "recording":
            target.set_recording(run_id, _bool(body, "on"))
        elif verb == "lock":
            target.set_locked(run_id, _bool(body, "locked"))
        else:
            number = body.get("number")
            if not isinstance(number, str) or not number.strip():
                raise ApiError(400, "body needs 'number' (string)")
            target.dial(run_id, number)
        return Response(200, target.conference(run_id) if verb != "end" else {"run_id": run_id, "ended": True})
    match = _LEG.match(path)
    if match:
        _method(method, "POST")
        run_id, leg_id = _path_id(match[1], "conference"), _path_id(match[2], "leg")
        if match[3] == "mute":
            target.set_muted(run_id, leg_id, _bool(body, "muted"))
        else:
            target.kick(run_id, leg_id)
        return Response(200, target.conference(run_id))
    raise ApiError(404, f"no such endpoint: {path}")


def _ha(target: ControlTarget) -> HaTarget:
    if not (hasattr(target, "ha_status") and hasattr(target, "ha_switchover")):
        raise ApiError(404, "this engine has no HA endpoints")
    return target  # type: ignore[return-value]  # checked just above


def _method(method: str, allowed: str) -> None:
    if method != allowed:
        raise ApiError(405, f"use {allowed}")


def _body_id(body: dict[str, Any], key: str) -> int:
    """A database id from the body: an int (not a bool) in ``1..MAX_ID``, else 400 before the service sees it."""
    value = body[key]
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_ID:
        raise ApiError(400, f"'{key}' must be an integer in 1..{MAX_ID}")
    return value


def _path_id(digits: str, what: str) -> int:
    value = int(digits)
    if not 1 <= value <= MAX_ID:
        raise ApiError(400, f"{what} id out of range (1..{MAX_ID})")
    return value


def json_depth_exceeds(raw: bytes, limit: int) -> bool:
    """True when ``raw`` nests arrays/objects deeper than ``limit`` (brackets inside strings do not count).

    Checked before ``json.loads``, whose recursion would otherwise end in a RecursionError. Pure.
    """
    depth, in_string, escaped = 0, False, False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > limit:
                return True
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return False


def _bool(body: dict[str, Any], key: str) -> bool:
    value = body.get(key)
    if not isinstance(value, bool):
        raise ApiError(400, f"body needs '{key}' (true or false)")
    return value


class ControlServer:
    """``await ControlServer(target, token, errors).start(host, port)``; ``port`` 0 picks a free one."""

    def __init__(self, target: ControlTarget, token: str, errors: ErrorMap) -> None:
        self.target = target
        self.token = token
        self.errors = errors
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(self._handle, host, port)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("control API listening on http://%s:%s", host, self.port)

    @classmethod
    def listen_address(cls, config: Config) -> tuple[str, int]:
        return parse_host_port(config.control.listen, "control.listen")

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            response = await asyncio.wait_for(self._request(reader), READ_TIMEOUT_S)
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError, ValueError, UnicodeDecodeError):
            response = Response(400, {"error": "bad request"})
        try:
            payload = json.dumps(response.body).encode()
            head = (
                f"HTTP/1.1 {response.status} {_REASONS.get(response.status, 'Error')}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode() + payload)
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def _request(self, reader: asyncio.StreamReader) -> Response:
        request_line = (await reader.readline()).decode("latin-1").strip()
        parts = request_line.split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            return Response(400, {"error": "bad request line"})
        method, path = parts[0].upper(), parts[1]
        headers: dict[str, str] = {}
        for _ in range(100):
            line = (await reader.readline()).decode("latin-1")
            if line in ("\r\n", "\n", ""):
                break
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        else:
            return Response(400, {"error": "too many headers"})
        length_text = headers.get("content-length", "0") or "0"
        if not length_text.isdigit():
            return Response(400, {"error": "bad Content-Length"})
        length = int(length_text)
        if length > MAX_BODY:
            return Response(413, {"error": "body too large"})
        raw = await reader.readexactly(length) if length else b""
        if not self._authorised(headers.get("authorization", "")):
            return Response(401, {"error": "bad or missing token"})
        body: Any = {}
        if raw.strip():
            if json_depth_exceeds(raw, MAX_DEPTH):
                return Response(400, {"error": f"body is nested too deeply (at most {MAX_DEPTH} levels)"})
            try:
                body = json.loads(raw)
            except ValueError:
                return Response(400, {"error": "body is not JSON"})
        if not isinstance(body, dict):
            return Response(400, {"error": "body must be a JSON object"})
        return route(self.target, method, path, body, self.errors)

    def _authorised(self, header: str) -> bool:
        scheme, _, token = header.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), self.token.encode())
