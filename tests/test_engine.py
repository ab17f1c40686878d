"""The engine in-process with SIP and SMPP disabled: control API contract, launch without SIP, recovery."""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
from pathlib import Path
from typing import Any

from sqlalchemy import select

from bridge.cdr.csvformat import duration_s
from bridge.config import from_dict
from bridge.control_client import ControlClient, ControlRequestError
from bridge.db.models import Cdr, Company, ConferenceRun, EngineAlive, Leg, Subscriber
from bridge.db.session import make_engine, make_session_factory, upgrade
from bridge.engine import Engine

SUB = "+15551230001"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _engine(tmp_path: Path, **options: Any) -> tuple[Engine, ControlClient, str]:
    config = from_dict(
        {
            "node": {"data_dir": str(tmp_path)},
            "smpp": {"enabled": False},
            "sip": {"enabled": False},
            "web": {"enabled": False},
            "cdr": {"feed_listen": ""},
            "control": {"listen": f"127.0.0.1:{_port()}"},
            "dnis": {"common": "+15550100", "pool": ["+15550101-+15550102"]},
            "room": [{"number": "1001", "name": "Open"}],
        }
    )
    upgrade(config.database_url)
    with make_session_factory(make_engine(config.database_url))() as s:
        company = Company(name="Co")
        s.add_all([company, Subscriber(company=company, name="Sam", mobile=SUB)])
        s.commit()
    engine = Engine(config, **options)
    token = (tmp_path / "control.token").read_text().strip() if (tmp_path / "control.token").exists() else ""
    return engine, ControlClient(f"http://{config.control.listen}", token, timeout=5), config.database_url


def test_status_contract_and_launch_without_sip(tmp_path: Path) -> None:
    engine, client, url = _engine(tmp_path)

    async def scenario() -> None:
        await engine.start()
        client.token = (tmp_path / "control.token").read_text().strip()
        assert engine.service is not None and engine.service.media is engine.media  # one owner of media
        assert engine.media.on_talking == engine.service.set_talking  # its one talker callback
        loop = asyncio.get_running_loop()
        status = await loop.run_in_executor(None, client.status)
        assert status["role"] == "active" and status["node"] == "bridge-a"
        assert status["services"]["sip"] == "disabled" and status["services"]["smpp"] == "disabled"
        assert set(status["mixer"]) >= {"conferences", "participants", "ticks", "lateness_p99_ms", "late_ticks"}
        assert {"state", "since"} <= set(status["smpp"]) and "trunk_groups" in status["sip"]
        conf = await loop.run_in_executor(None, lambda: client.launch_numbers(1, ["5551230002"]))
        assert [leg["number"] for leg in conf["legs"]] == [SUB, "+15551230002"]
        await asyncio.sleep(0.3)  # the dial pacer hands the dials to the (disabled) SIP port
        assert await loop.run_in_executor(None, client.conferences) == []
        try:
            await loop.run_in_executor(None, lambda: client.conference(conf["run_id"]))
        except ControlRequestError as exc:
            assert exc.status == 404
        else:
            raise AssertionError("an ended conference must be 404")
        try:
            await loop.run_in_executor(None, lambda: client.launch_numbers(1, ["not a number"]))
        except ControlRequestError as exc:
            assert exc.status == 400
        else:
            raise AssertionError("a bad number must be 400")
        await engine.stop()

    asyncio.run(scenario())
    with make_session_factory(make_engine(url))() as s:
        legs = s.scalars(select(Leg).order_by(Leg.id)).all()
        assert [(leg.status, leg.cause) for leg in legs] == [
            ("failed", "dial error: SIP is disabled"),  # the subscriber's call could not be placed...
            ("failed", "subscriber left"),  # ...so the conference ended and the member's dial was dropped
        ]
        run = s.scalars(select(ConferenceRun)).one()
        assert run.result == "subscriber left" and run.ended_at is not None


def test_seeds_rooms_and_dnis_and_recovers_open_legs(tmp_path: Path) -> None:
    engine, _, url = _engine(tmp_path)
    factory = make_session_factory(make_engine(url))
    with factory() as s:
        run = ConferenceRun(service_type="IC", subscriber_id=1)
        s.add(run)
        s.flush()
        s.add(Leg(run_id=run.id, direction="out", role="subscriber", called=SUB, status="connected"))
        s.commit()

    async def scenario() -> None:
        await engine.start()
        assert engine._accept("1001") and engine._accept("15550100") and not engine._accept("999")
        await engine.stop()

    asyncio.run(scenario())
    with factory() as s:
        leg = s.scalars(select(Leg)).one()
        assert leg.cause == "system restart" and leg.disconnected_at is not None
        assert s.scalars(select(ConferenceRun)).one().ended_at is not None


class _Clock:
    """The wall clock the engine stamps and closes legs with (naive UTC, as stored)."""

    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


def test_a_crash_closes_open_legs_at_the_last_alive_stamp_not_at_the_restart(tmp_path: Path) -> None:
    """kill -9 then a restart 45 s later: legs end when the engine was last known alive, never before they
    were answered, and their CDRs say the end time is that instant; the downtime is not billed."""
    t0 = dt.datetime(2026, 11, 22, 6, 15, 0)
    clock = _Clock(t0)
    first, _, url = _engine(tmp_path, utc=clock, alive_interval_s=0.02)
    factory = make_session_factory(make_engine(url))
    last_alive = t0 + dt.timedelta(seconds=3)

    def stamped() -> dt.datetime | None:
        with factory() as s:
            return s.scalar(select(EngineAlive.seen_at).where(EngineAlive.node == "bridge-a"))

    async def crash_after_stamp() -> None:
        await first.start()
        assert stamped() == t0  # stamped at start
        clock.now = last_alive
        while stamped() != last_alive:  # the housekeeping loop stamps again
            await asyncio.sleep(0.02)
        with factory() as s:  # calls the first engine had when it died (not in its memory: never closed)
            run = ConferenceRun(service_type="IC", subscriber_id=1, started_at=t0 - dt.timedelta(seconds=10))
            s.add(run)
            s.flush()
            s.add_all(
                [
                    Leg(run_id=run.id, direction="out", role="subscriber", called=SUB, status="connected",
                        called_at=t0 - dt.timedelta(seconds=8), joined_at=t0 - dt.timedelta(seconds=6)),
                    Leg(run_id=run.id, direction="out", role="participant", called="+15551230002",
                        status="connected", called_at=t0, joined_at=last_alive + dt.timedelta(seconds=2)),
                    Leg(run_id=run.id, direction="out", role="participant", called="+15551230003",
                        status="dialing", called_at=t0 + dt.timedelta(seconds=1)),
                ]
            )  # fmt: skip
            s.commit()
        await first.stop()  # the legs above are unknown to it, so they stay open as after kill -9

    asyncio.run(crash_after_stamp())
    restart = last_alive + dt.timedelta(seconds=45)
    second = Engine(first.config, utc=_Clock(restart), alive_interval_s=0.02)

    async def restart_later() -> None:
        await second.start()
        await second.stop()

    asyncio.run(restart_later())
    cause = "system restart (end time = last seen alive)"
    with factory() as s:
        legs = s.scalars(select(Leg).order_by(Leg.id)).all()
        assert [(leg.status, leg.cause, leg.disconnected_at) for leg in legs] == [
            ("left", cause, last_alive),
            ("left", cause, last_alive + dt.timedelta(seconds=2)),  # answered after the stamp: its answer time
            ("failed", cause, last_alive),
        ]
        cdrs = {c.leg_id: c for c in s.scalars(select(Cdr))}
        assert [(cdrs[leg.id].cause, cdrs[leg.id].disconnected_at) for leg in legs] == [
            (leg.cause, leg.disconnected_at) for leg in legs
        ]
        assert [duration_s(c.joined_at, c.disconnected_at) for c in (cdrs[leg.id] for leg in legs)] == [9, 0, 0]
        run = s.scalars(select(ConferenceRun)).one()
        assert run.ended_at == last_alive + dt.timedelta(seconds=2) and run.result == "system restart"
        assert s.scalar(select(EngineAlive.seen_at)) == restart  # the new run stamps after recovering
