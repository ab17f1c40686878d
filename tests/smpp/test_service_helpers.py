from __future__ import annotations

import asyncio

from bridge.config import Config
from bridge.db import make_engine, make_session_factory
from bridge.smpp.bind import address_range
from bridge.smpp.feed import address as _address
from bridge.smpp.service import SmppService


def test_address_range_for_the_short_codes() -> None:
    assert address_range(["2663"]) == "2663"
    assert address_range(["2663", "1000"]) == "^(2663|1000)$"
    assert address_range([str(10_000 + i) for i in range(10)]) == ""  # too long for 40 characters


def test_mt_addresses_ton_npi() -> None:
    assert _address("+15551230001") == (1, 1, "15551230001")
    assert _address("2663") == (0, 1, "2663")
    assert _address("BRIDGE") == (0, 0, "BRIDGE")


def test_a_service_stopped_before_it_started_releases_everything(config: Config, db_url: str) -> None:
    engine = make_engine(db_url)
    service = SmppService(config, make_session_factory(engine))
    asyncio.run(service.stop())
    assert service.status()["state"] == "closed"
    assert all(link._wake_r.fileno() == -1 for link in service.links)
    engine.dispose()
