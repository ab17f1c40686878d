"""Dial-in routing over a real (temporary SQLite) database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from bridge.config import from_dict
from bridge.db.models import Company, DnisKind, DnisNumber, InstantConference, Room, Subscriber
from bridge.db.session import make_engine, make_session_factory, upgrade
from bridge.dnis.ivr import Verdict
from bridge.dnis.routing import RouteKind, RunningInfo, admit_without_pin, classify, resolve_pin

CONFIG = from_dict({"dnis": {"common": "+15550100", "pool": ["+15550101-+15550103"]}})
SUB = "+15551230001"


class Running:
    def __init__(self) -> None:
        self.ics: dict[int, RunningInfo] = {}
        self.rooms: dict[int, RunningInfo] = {}

    def for_ic(self, ic_id: int) -> RunningInfo | None:
        return self.ics.get(ic_id)

    def for_room(self, room_id: int) -> RunningInfo | None:
        return self.rooms.get(room_id)


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Session]:
    url = "sqlite:///" + str(tmp_path / "t.db")
    upgrade(url)
    with make_session_factory(make_engine(url))() as s:
        company = Company(name="Co")
        sub = Subscriber(company=company, name="Sam", mobile=SUB)
        common = DnisNumber(number="+15550100", kind=DnisKind.COMMON, position=0)
        pool1 = DnisNumber(number="+15550101", kind=DnisKind.POOL, position=1)
        s.add_all([company, sub, common, pool1])
        s.flush()
        s.add(InstantConference(subscriber=sub, slot=1, dnis_id=pool1.id, activation_pin="111111", user_pin="222222"))
        s.add(Room(number="1001", name="Open"))
        s.add(Room(number="1002", name="Closed", pin="4321", moderator_pin="9999", max_members=2))
        s.commit()
        yield s


def test_classify(session: Session) -> None:
    assert classify(session, CONFIG, "15550100").kind is RouteKind.COMMON  # type: ignore[union-attr]
    assert classify(session, CONFIG, "+15550101").kind is RouteKind.IC  # type: ignore[union-attr]
    assert classify(session, CONFIG, "+15550103").kind is RouteKind.IC  # type: ignore[union-attr]  # config pool
    room = classify(session, CONFIG, "1001")
    assert room is not None and room.kind is RouteKind.ROOM and not room.needs_pin
    assert classify(session, CONFIG, "1002").needs_pin  # type: ignore[union-attr]
    assert classify(session, CONFIG, "+19999999") is None
    assert classify(session, CONFIG, "garbage;<>") is None


def test_common_dnis_user_pin(session: Session) -> None:
    route = classify(session, CONFIG, "+15550100")
    assert route is not None
    running = Running()
    assert resolve_pin(session, route, "000000", calling="+1", running=running).verdict is Verdict.WRONG
    assert resolve_pin(session, route, "222222", calling="+1", running=running).verdict is Verdict.NOT_STARTED
    running.ics[1] = RunningInfo(run_id=5, subscriber_present=True, locked=False, full=False)
    decision = resolve_pin(session, route, "222222", calling="+1", running=running)
    assert (decision.verdict, decision.run_id, decision.role) == (Verdict.ACCEPT, 5, "participant")
    running.ics[1] = RunningInfo(run_id=5, subscriber_present=True, locked=True, full=False)
    assert resolve_pin(session, route, "222222", calling="+1", running=running).verdict is Verdict.LOCKED
    running.ics[1] = RunningInfo(run_id=5, subscriber_present=False, locked=True, full=False)
    decision = resolve_pin(session, route, "222222", calling=SUB, running=running)
    assert (decision.verdict, decision.role) == (Verdict.ACCEPT, "subscriber")


def test_pool_dnis_activation_pin_launches_then_second_holder_attends(session: Session) -> None:
    route = classify(session, CONFIG, "+15550101")
    assert route is not None
    running = Running()
    first = resolve_pin(session, route, "111111", calling="+1", running=running)
    assert (first.verdict, first.launch, first.role, first.activation_pin_used) == (
        Verdict.ACCEPT,
        True,
        "subscriber",
        True,
    )
    running.ics[first.ic_id or 0] = RunningInfo(run_id=9, subscriber_present=True, locked=False, full=False)
    second = resolve_pin(session, route, "111111", calling="+2", running=running)
    assert (second.verdict, second.launch, second.role, second.run_id) == (Verdict.ACCEPT, False, "participant", 9)
    other = classify(session, CONFIG, "+15550102")
    assert other is not None
    assert resolve_pin(session, other, "111111", calling="+1", running=running).verdict is Verdict.WRONG
    assert resolve_pin(session, route, "12ab", calling="+1", running=running).verdict is Verdict.WRONG


def test_rooms(session: Session) -> None:
    running = Running()
    open_room = classify(session, CONFIG, "1001")
    assert open_room is not None
    assert admit_without_pin(session, open_room, running).launch
    closed = classify(session, CONFIG, "1002")
    assert closed is not None
    assert resolve_pin(session, closed, "1111", calling="+1", running=running).verdict is Verdict.WRONG
    assert resolve_pin(session, closed, "4321", calling="+1", running=running).role == "participant"
    assert resolve_pin(session, closed, "9999", calling="+1", running=running).role == "moderator"
    running.rooms[closed.room_id or 0] = RunningInfo(run_id=3, subscriber_present=False, locked=False, full=True)
    assert resolve_pin(session, closed, "4321", calling="+1", running=running).verdict is Verdict.FULL


def test_any_pin_text_on_any_route_gives_a_decision(session: Session) -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    routes = [classify(session, CONFIG, n) for n in ("+15550100", "+15550101", "1001", "1002")]
    running = Running()

    @settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.text(max_size=12), st.text(max_size=16), st.sampled_from(routes))
    def check(pin: str, calling: str, route: object) -> None:
        assert route is not None
        decision = resolve_pin(session, route, pin, calling=calling, running=running)  # type: ignore[arg-type]
        assert isinstance(decision.verdict, Verdict)
        if decision.verdict is Verdict.ACCEPT:
            assert pin in {"111111", "4321", "9999"} and decision.launch

    check()
