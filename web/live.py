"""Access to the engine's control API from the portal (live conferences, system status)."""

from __future__ import annotations

from typing import Any, Protocol

from flask import Flask, current_app

from bridge.config import Config
from bridge.control_client import ControlClient


class Control(Protocol):
    """What the portal needs of :class:`bridge.control_client.ControlClient` (tests inject fakes)."""

    def status(self) -> dict[str, Any]: ...
    def conferences(self) -> list[dict[str, Any]]: ...
    def conference(self, run_id: int) -> dict[str, Any]: ...
    def launch_ic(self, ic_id: int) -> dict[str, Any]: ...
    def end(self, run_id: int) -> dict[str, Any]: ...
    def recording(self, run_id: int, on: bool) -> dict[str, Any]: ...
    def lock(self, run_id: int, locked: bool) -> dict[str, Any]: ...
    def dial(self, run_id: int, number: str) -> dict[str, Any]: ...
    def mute(self, run_id: int, leg_id: int, muted: bool) -> dict[str, Any]: ...
    def kick(self, run_id: int, leg_id: int) -> dict[str, Any]: ...


def control_token(config: Config) -> str:
    """``control.token`` or the engine's ``<data_dir>/control.token`` (``bridge.control.control_token``)."""
    from bridge.control import control_token as shared

    return shared(config)


def engine_client(config: Config) -> Control:
    """The engine's control API for a child process (the portal, the CRM API)."""
    return _LazyTokenClient(config)


def init_app(app: Flask, config: Config) -> None:
    client = app.config.get("CONTROL_CLIENT")
    if client is None:
        client = engine_client(config)
    app.extensions["control"] = client


class _LazyTokenClient(ControlClient):
    """Re-reads the token file when the engine rejects the token (it may have started after the portal)."""

    def __init__(self, config: Config) -> None:
        super().__init__("http://" + config.control.listen, control_token(config))
        self._config = config

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        if not self.token:
            self.token = control_token(self._config)
        return super()._request(method, path, body)


def control() -> Control:
    client: Control = current_app.extensions["control"]
    return client
