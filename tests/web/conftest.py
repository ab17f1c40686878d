"""Fixtures for the portal (flaskr style): ``world`` (seeded temporary database), ``app``, ``client``, ``auth``."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from bridge.config import from_dict
from tests.web.portal_world import PASSWORD, FakeControl, World, build_world, copy_world
from web import create_app

NOW = dt.datetime(2026, 11, 22, 12, 0, 0)


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> dt.datetime:
        return self.now


@pytest.fixture(scope="session")
def _world_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[World, Path]:
    directory = tmp_path_factory.mktemp("world")
    return build_world(directory), directory


@pytest.fixture
def world(tmp_path: Path, _world_template: tuple[World, Path]) -> World:
    """A fresh copy of the seeded database (two companies, an operator) in ``tmp_path``."""
    template, directory = _world_template
    return copy_world(template, directory, tmp_path)


@pytest.fixture
def control(world: World) -> FakeControl:
    fake = FakeControl()
    fake.add(world.a)
    fake.add(world.b, names=("ZETA boss", "ZETA guest"))
    return fake


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make_app(tmp_path: Path, world: World, control: Any, clock: Clock, **overrides: Any) -> Flask:
    config = from_dict(
        {"node": {"data_dir": str(tmp_path)}, "dnis": {"common": "+15550100", "pool": ["+15550101-+15550103"]}},
        base_dir=str(tmp_path),
    )
    settings: dict[str, Any] = {
        "BRIDGE": config,
        "DATABASE_URL": world.url,
        "TESTING": True,
        "WTF_CSRF_ENABLED": False,
        "SECRET_KEY": "test-secret",
        "CONTROL_CLIENT": control,
        "CLOCK": clock,
        "SSE_INTERVAL_S": 0.01,
        "SSE_MAX_S": 0.05,
    }
    settings.update(overrides)
    return create_app(settings)


@pytest.fixture
def app(tmp_path: Path, world: World, control: FakeControl, clock: Clock) -> Flask:
    return make_app(tmp_path, world, control, clock)


class HttpsClient(FlaskClient):
    """Every request over https (the portal's cookies are Secure)."""

    def open(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("base_url", "https://localhost")
        return super().open(*args, **kwargs)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    app.test_client_class = HttpsClient
    return app.test_client()


class Auth:
    def __init__(self, client: FlaskClient) -> None:
        self.client = client

    def login(self, username: str, password: str = PASSWORD) -> Any:
        return self.client.post("/login", data={"username": username, "password": password})

    def logout(self) -> Any:
        return self.client.post("/logout")


@pytest.fixture
def auth(client: FlaskClient) -> Iterator[Auth]:
    yield Auth(client)
