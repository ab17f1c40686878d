"""Client of the engine's local JSON control API (CONTRACTS §3), used by the web portal.

One method per endpoint. Transport problems (engine stopped, connection refused, timeout, garbage
instead of JSON) raise :class:`EngineUnreachable`; an answer with an error status raises
:class:`ControlRequestError` carrying the HTTP status and the engine's ``error`` message.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any


class ControlError(Exception):
    """Base of every control-client error."""


class EngineUnreachable(ControlError):
    """The engine did not answer (stopped, refused, timed out, or answered with something not JSON)."""


class ControlRequestError(ControlError):
    """The engine answered with an error status (400 bad body, 401 bad token, 404 unknown id, 409 not now)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class ControlClient:
    """``ControlClient("http://127.0.0.1:8181", token)``; every call is one HTTP request."""

    def __init__(self, base_url: str, token: str, timeout: float = 2.0) -> None:
        if "://" not in base_url:
            base_url = "http://" + base_url
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout

    # --- endpoints ---------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return self._request("GET", "/status")

    def conferences(self) -> list[dict[str, Any]]:
        conferences: list[dict[str, Any]] = self._request("GET", "/conferences").get("conferences", [])
        return conferences

    def conference(self, run_id: int) -> dict[str, Any]:
        return self._request("GET", f"/conferences/{int(run_id)}")

    def launch_ic(self, ic_id: int) -> dict[str, Any]:
        return self._request("POST", "/conferences", {"ic_id": int(ic_id)})

    def launch_numbers(self, subscriber_id: int, numbers: list[str]) -> dict[str, Any]:
        return self._request("POST", "/conferences", {"subscriber_id": int(subscriber_id), "numbers": list(numbers)})

    def end(self, run_id: int) -> dict[str, Any]:
        return self._request("POST", f"/conferences/{int(run_id)}/end", {})

    def recording(self, run_id: int, on: bool) -> dict[str, Any]:
        return self._request("POST", f"/conferences/{int(run_id)}/recording", {"on": bool(on)})

    def lock(self, run_id: int, locked: bool) -> dict[str, Any]:
        return self._request("POST", f"/conferences/{int(run_id)}/lock", {"locked": bool(locked)})

    def dial(self, run_id: int, number: str) -> dict[str, Any]:
        return self._request("POST", f"/conferences/{int(run_id)}/dial", {"number": number})

    def mute(self, run_id: int, leg_id: int, muted: bool) -> dict[str, Any]:
        return self._request("POST", f"/conferences/{int(run_id)}/legs/{int(leg_id)}/mute", {"muted": bool(muted)})

    def kick(self, run_id: int, leg_id: int) -> dict[str, Any]:
        return self._request("POST", f"/conferences/{int(run_id)}/legs/{int(leg_id)}/kick", {})

    def ha_status(self) -> dict[str, Any]:
        return self._request("GET", "/ha")

    def ha_switchover(self) -> dict[str, Any]:
        return self._request("POST", "/ha/switchover", {})

    # --- transport ---------------------------------------------------------------------------------

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base_url + path, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self.token}")
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raise ControlRequestError(exc.code, _error_message(exc)) from exc
        except (OSError, ValueError) as exc:  # URLError, refused, reset, timeout, bad URL
            raise EngineUnreachable(f"{self.base_url}: {exc}") from exc
        if not raw.strip():
            return {}
        try:
            decoded = json.loads(raw)
        except ValueError as exc:
            raise EngineUnreachable(f"{self.base_url}{path}: answer is not JSON") from exc
        if not isinstance(decoded, dict):
            raise EngineUnreachable(f"{self.base_url}{path}: answer is not a JSON object")
        return decoded


def _error_message(exc: urllib.error.HTTPError) -> str:
    try:
        decoded = json.loads(exc.read() or b"{}")
    except (ValueError, OSError):
        return exc.reason if isinstance(exc.reason, str) else str(exc.code)
    message = decoded.get("error") if isinstance(decoded, dict) else None
    if isinstance(message, str):
        return message
    return str(exc.reason)
