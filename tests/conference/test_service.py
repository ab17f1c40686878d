"""The conference service glue with a fake SIP stack, fake media and a fake clock, over a real SQLite DB."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bridge.conference.interfaces import MediaEndpoint, MediaQuality
from bridge.conference.service import ConferenceService
from bridge.config import Config, from_dict
from bridge.db.models import (
    Cdr,
    Company,
    ConferenceRun,
    Contact,
    DnisKind,
    DnisNumber,
    EventLog,
    IcMember,
    InstantConference,
    Leg,
    Room,
    Subscriber,
)
from bridge.db.session import make_engine, make_session_factory, upgrade
from bridge.sip.events import IncomingCall, LegAnswered, LegDtmf, LegEnded, LegFailed, LegHold, LegRinging
from bridge.sip.leg import LegState, SipLeg

SUB = "+15551230001"
ALICE = "+15551230002"
BOB = "+15551230003"
COMMON = "+15550100"
POOL1 = "+15550101"


class FakeSip:
    def __init__(self) -> None:
        self.ids = itertools.count(1)
        self.dialled: list[SipLeg] = []
        self.answered: list[SipLeg] = []
        self.rejected: list[tuple[SipLeg, int]] = []
        self.hung_up: list[tuple[SipLeg, str]] = []
        self.endpoints: dict[str, MediaEndpoint] = {}
        self.groups: dict[str, str] = {}

    def dial(self, *, called: str, calling: str, trunk_group: str | None = None, display_name: str = "") -> SipLeg:
        leg = SipLeg(f"out-{next(self.ids)}", "out", calling, called, LegState.DIALING, call_id=f"c{len(self.dialled)}")
        self.dialled.append(leg)
        return leg

    def incoming(self, calling: str, called: str) -> SipLeg:
        return SipLeg(f"in-{next(self.ids)}", "in", calling, called, LegState.OFFERED, call_id="in")

    def answer(self, leg: SipLeg) -> None:
        self.answered.append(leg)

    def reject(self, leg: SipLeg, status: int, reason: str) -> None:
        self.rejected.append((leg, status))

    def hangup(self, leg: SipLeg, cause: str = "normal") -> None:
        self.hung_up.append((leg, cause))

    def media_endpoint(self, leg: SipLeg) -> MediaEndpoint | None:
        return self.endpoints.get(leg.leg_id)

    def first_group(self, number: str) -> str | None:
        return self.groups.get(number, "pstn")


class FakeMedia:
    def __init__(self) -> None:
        self.pids = itertools.count(1)
        self.members: dict[int, int] = {}
        self.plays: list[tuple[tuple[str, ...], int | None, int | None]] = []
        self.muted: dict[int, bool] = {}
        self.recording: dict[int, str] = {}
        self.endpoints: dict[int, MediaEndpoint | None] = {}

    def attach(self, conference: int, endpoint: MediaEndpoint | None, *, muted: bool = False) -> int:
        pid = next(self.pids)
        self.members[pid] = conference
        self.muted[pid] = muted
        self.endpoints[pid] = endpoint
        return pid

    def detach(self, pid: int) -> None:
        del self.members[pid]
        del self.endpoints[pid]

    def quality(self, pid: int) -> MediaQuality:
        return MediaQuality("PCMA", 0.25) if self.endpoints[pid] is not None else MediaQuality()

    def set_muted(self, pid: int, muted: bool) -> None:
        self.muted[pid] = muted

    def play(self, prompts: tuple[str, ...], *, pid: int | None = None, conference: int | None = None) -> float:
        self.plays.append((prompts, pid, conference))
        return 1.0

    def start_recording(self, conference: int, path: str) -> None:
        self.recording[conference] = path

    def stop_recording(self, conference: int) -> None:
        self.recording.pop(conference, None)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def factory(tmp_path: Path) -> sessionmaker[Session]:
    url = "sqlite:///" + str(tmp_path / "t.db")
    upgrade(url)
    factory = make_session_factory(make_engine(url))
    with factory() as s:
        company = Company(name="Co")
        sub = Subscriber(company=company, name="Sam", mobile=SUB)
        s.add_all([company, sub, Contact(subscriber=sub, nickname="alice", phone=ALICE)])
        s.add(DnisNumber(number=COMMON, kind=DnisKind.COMMON, position=0))
        pool = DnisNumber(number=POOL1, kind=DnisKind.POOL, position=1)
        s.add(pool)
        s.flush()
        ic = InstantConference(
            subscriber=sub, slot=1, name="team", dnis_id=pool.id, activation_pin="111111", user_pin="222222"
        )
        ic.members = [IcMember(position=0, phone=ALICE), IcMember(position=1, phone=BOB)]
        s.add(ic)
        s.add(Room(number="1001", name="Open"))
        s.commit()
    return factory


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return from_dict(
        {
            "node": {"data_dir": str(tmp_path)},
            "dnis": {"common": COMMON, "pool": [POOL1], "digit_timeout_s": 2.0},
            "conference": {"hysteresis_s": 30.0, "callback_retries": 2, "callback_delay_s": 1.0},
        }
    )


class Rig:
    def __init__(self, config: Config, factory: sessionmaker[Session]) -> None:
        self.sip = FakeSip()
        self.media = FakeMedia()
        self.clock = Clock()
        self.cdrs: list[int] = []
        self.service = ConferenceService(
            config, factory, sip=self.sip, media=self.media, clock=self.clock, on_cdr=self.cdrs.append
        )
        self.factory = factory

    def advance(self, seconds: float) -> None:
        self.clock.now += seconds
        self.service.poll(self.clock.now)

    def event(self, event: Any) -> None:
        self.service.on_sip_event(event)

    def leg_rows(self, run_id: int) -> list[Leg]:
        with self.factory() as s:
            return list(s.scalars(select(Leg).where(Leg.run_id == run_id).order_by(Leg.id)))

    def digits(self, leg: SipLeg, digits: str) -> None:
        for d in digits:
            self.event(LegDtmf(leg, d, "rfc4733"))

    def dial_in(self, called: str, calling: str, pin: str) -> SipLeg:
        leg = self.sip.incoming(calling, called)
        self.event(IncomingCall(leg))
        assert leg in self.sip.answered
        self.event(LegAnswered(leg))
        self.digits(leg, pin)
        return leg


@pytest.fixture
def rig(config: Config, factory: sessionmaker[Session]) -> Rig:
    return Rig(config, factory)


def launch_and_answer(rig: Rig) -> int:
    run_id = rig.service.launch(subscriber_id=1, numbers=[SUB, ALICE, BOB, ALICE], ic_id=1)
    assert rig.sip.dialled == []  # dials leave on the next poll (media tick)
    rig.advance(0.02)
    assert [leg.called for leg in rig.sip.dialled] == [SUB, ALICE, BOB]
    assert {leg.calling for leg in rig.sip.dialled} == {SUB}
    for leg in rig.sip.dialled:
        rig.event(LegRinging(leg))
        rig.event(LegAnswered(leg))
    return run_id


def test_launch_dials_everyone_once_and_lists_live_legs(rig: Rig) -> None:
    run_id = launch_and_answer(rig)
    view = rig.service.describe(run_id)
    assert view["service_type"] == "IC" and view["ic_id"] == 1 and view["subject"] == "team"
    assert [(leg["number"], leg["role"], leg["status"]) for leg in view["legs"]] == [
        (SUB, "subscriber", "connected"), (ALICE, "participant", "connected"), (BOB, "participant", "connected"),
    ]  # fmt: skip
    assert view["legs"][1]["name"] == "alice"
    assert len(rig.media.members) == 3 and set(rig.media.members.values()) == {run_id}
    assert all(row.status == "connected" and row.joined_at for row in rig.leg_rows(run_id))
    with pytest.raises(Exception, match="already running"):
        rig.service.launch(subscriber_id=1, numbers=[], ic_id=1)


def test_subscriber_drop_callbacks_then_end_with_cdrs(rig: Rig) -> None:
    run_id = launch_and_answer(rig)
    rig.event(LegEnded(rig.sip.dialled[0], "normal", "remote"))
    rig.advance(1.0)
    rig.advance(0.1)
    assert rig.sip.dialled[-1].called == SUB and len(rig.sip.dialled) == 4  # first callback
    rig.event(LegFailed(rig.sip.dialled[-1], "", 486))
    rig.advance(1.0)
    rig.advance(0.1)
    assert len(rig.sip.dialled) == 5  # second callback
    rig.event(LegFailed(rig.sip.dialled[-1], "no answer", 0))
    rig.advance(5.0)
    assert len(rig.sip.dialled) == 5  # retries exhausted
    assert run_id in rig.service.conferences
    rig.advance(30.0)
    assert run_id not in rig.service.conferences
    rows = rig.leg_rows(run_id)
    assert [(r.called, r.status) for r in rows] == [
        (SUB, "left"), (ALICE, "left"), (BOB, "left"), (SUB, "failed"), (SUB, "failed"),
    ]  # fmt: skip
    assert rows[3].cause == "SIP 486" and all(r.disconnected_at for r in rows)
    with rig.factory() as s:
        cdrs = list(s.scalars(select(Cdr).order_by(Cdr.leg_id)))
        run = s.get(ConferenceRun, run_id)
        assert run is not None and run.result == "subscriber did not return" and run.ended_at
    assert len(cdrs) == 5 == len(rig.cdrs)
    assert {c.service_result for c in cdrs} == {"subscriber did not return"}
    assert [c.direction for c in cdrs] == ["out"] * 5 and cdrs[1].cli == SUB and cdrs[1].destination == ALICE
    assert {leg for leg, _ in rig.sip.hung_up} == {rig.sip.dialled[1], rig.sip.dialled[2]}


def test_subscriber_dials_back_in_within_hysteresis(rig: Rig) -> None:
    run_id = launch_and_answer(rig)
    rig.event(LegEnded(rig.sip.dialled[0], "normal", "remote"))
    gone = rig.service.describe(run_id)["legs"][0]
    assert (gone["status"], gone["name"]) == ("left", "Sam") and gone["joined_at"]
    back = rig.dial_in(COMMON, SUB, "222222")
    assert rig.service.conferences[run_id].subscriber_present
    rig.advance(100.0)
    assert run_id in rig.service.conferences
    row = rig.leg_rows(run_id)[-1]
    assert (row.direction, row.role, row.dnis, row.calling) == ("in", "subscriber", COMMON, SUB)
    assert str(back.leg_id) not in rig.service.lobby.calls


def test_dial_in_with_user_pin_joins_as_participant(rig: Rig) -> None:
    run_id = launch_and_answer(rig)
    caller = rig.dial_in(COMMON, "+15559990000", "222222")
    assert (("enter_pin",), None, None) not in rig.media.plays
    legs = rig.service.describe(run_id)["legs"]
    assert legs[-1]["direction"] == "in" and legs[-1]["role"] == "participant" and legs[-1]["status"] == "connected"
    rig.event(LegDtmf(caller, "*", "rfc4733"))
    rig.event(LegDtmf(caller, "6", "rfc4733"))
    assert rig.service.describe(run_id)["legs"][-1]["muted"]


def test_user_pin_before_start_hears_not_started(rig: Rig) -> None:
    caller = rig.dial_in(COMMON, "+15559990000", "222222")
    assert any(p[0] == ("not_started",) for p in rig.media.plays)
    rig.advance(2.0)
    assert (caller, "normal") in rig.sip.hung_up


def test_three_wrong_pins_disconnect_and_throttle(rig: Rig) -> None:
    caller = rig.dial_in(COMMON, "+15559990000", "999999" * 3)
    assert any(p[0] == ("goodbye",) for p in rig.media.plays)
    rig.advance(2.0)
    assert (caller, "normal") in rig.sip.hung_up and not rig.service.lobby.calls
    with rig.factory() as s:
        assert s.scalars(select(EventLog).where(EventLog.kind == "dial_in_refused")).first() is not None
    for _ in range(2):
        rig.dial_in(COMMON, "+15559990000", "999999" * 3)
        rig.advance(2.0)
    blocked = rig.sip.incoming("+15559990000", COMMON)
    rig.event(IncomingCall(blocked))
    assert (blocked, 403) in rig.sip.rejected


def test_unknown_number_is_rejected(rig: Rig) -> None:
    leg = rig.sip.incoming("+1", "+19999999")
    rig.event(IncomingCall(leg))
    assert (leg, 404) in rig.sip.rejected


def test_speed_dial_launches_and_second_holder_attends(rig: Rig) -> None:
    caller = rig.dial_in(POOL1, SUB, "111111")
    (run_id,) = rig.service.conference_ids()
    rig.advance(0.1)
    assert [leg.called for leg in rig.sip.dialled] == [ALICE, BOB]
    rows = rig.leg_rows(run_id)
    assert (rows[0].role, rows[0].activation_pin_used, rows[0].direction) == ("subscriber", True, "in")
    attendee = rig.dial_in(POOL1, "+15558880000", "111111")
    assert rig.leg_rows(run_id)[-1].role == "participant"
    members = len(rig.media.members)
    rig.event(LegDtmf(caller, "*", "rfc4733"))
    rig.event(LegDtmf(caller, "*", "rfc4733"))
    assert run_id not in rig.service.conferences
    assert (("goodbye",), None, run_id) in rig.media.plays
    # Everyone hears "goodbye" before the BYE: media and calls stay up for the prompt (1 s here).
    assert rig.sip.hung_up == [] and len(rig.media.members) == members
    assert all(row.disconnected_at for row in rig.leg_rows(run_id))
    rig.advance(1.1)
    assert (attendee, "ended by subscriber") in rig.sip.hung_up and rig.media.members == {}


def test_room_without_pin_and_controls(rig: Rig) -> None:
    caller = rig.sip.incoming("+1555", "1001")
    rig.event(IncomingCall(caller))
    rig.event(LegAnswered(caller))
    (run_id,) = rig.service.conference_ids()
    view = rig.service.describe(run_id)
    assert view["service_type"] == "room" and view["room_id"] == 1
    leg_id = view["legs"][0]["leg_id"]
    rig.service.set_recording(run_id, True)
    assert run_id in rig.media.recording
    rig.service.set_muted(run_id, leg_id, True)
    assert rig.service.describe(run_id)["legs"][0]["muted"]
    new_leg = rig.service.dial(run_id, "+15557770000")
    rig.advance(0.1)
    assert rig.sip.dialled[-1].called == "+15557770000" and new_leg > leg_id
    rig.service.kick(run_id, new_leg)
    kicked = rig.service.describe(run_id)["legs"][-1]
    assert (kicked["status"], kicked["cause"]) == ("failed", "kicked")
    assert rig.service.describe(run_id)["legs"][0]["joined_at"] is not None
    rig.event(LegEnded(caller, "normal", "remote"))
    assert run_id not in rig.service.conferences and run_id not in rig.media.recording
    with rig.factory() as s:
        run = s.get(ConferenceRun, run_id)
        assert run is not None and run.recorded


def test_recover_closes_legs_left_open(rig: Rig, config: Config, factory: sessionmaker[Session]) -> None:
    run_id = launch_and_answer(rig)
    fresh = Rig(config, factory)
    assert fresh.service.records.recover() == 3
    rows = fresh.leg_rows(run_id)
    assert {r.cause for r in rows} == {"system restart"} and all(r.disconnected_at for r in rows)
    with factory() as s:
        assert len(list(s.scalars(select(Cdr)))) == 3
        run = s.get(ConferenceRun, run_id)
        assert run is not None and run.ended_at is not None


def test_sms_actions_launch_and_blast(rig: Rig) -> None:
    from bridge.commands.actions import LaunchConference, SmsBlast
    from bridge.db.models import SmsMessage

    rig.service.on_actions([LaunchConference(1, (SUB, ALICE)), SmsBlast(1, (ALICE, BOB), "hello")])
    rig.advance(0.1)
    assert [leg.called for leg in rig.sip.dialled] == [SUB, ALICE]
    with rig.factory() as s:
        assert sorted(m.destination for m in s.scalars(select(SmsMessage))) == [ALICE, BOB]


def test_participant_sms_carries_dial_back_number_and_user_pin(rig: Rig) -> None:
    from bridge.db.models import SmsMessage

    with rig.factory() as s:
        ic = s.get(InstantConference, 1)
        assert ic is not None
        ic.participant_sms = True
        s.commit()
    rig.service.launch_ic(1, launched_by="portal")
    with rig.factory() as s:
        texts = {m.destination: m.text for m in s.scalars(select(SmsMessage))}
    assert set(texts) == {ALICE, BOB}  # the members, not the subscriber
    assert all(COMMON in text and "222222" in text for text in texts.values())


def test_second_sms_launch_of_a_running_ic_is_refused_by_sms(rig: Rig) -> None:
    from bridge.commands.actions import LaunchConference
    from bridge.db.models import SmsMessage

    rig.service.on_actions([LaunchConference(1, (SUB, ALICE), ic_id=1)])
    rig.service.on_actions([LaunchConference(1, (SUB, ALICE), ic_id=1)])
    assert len(rig.service.conference_ids()) == 1
    with rig.factory() as s:
        (sms,) = s.scalars(select(SmsMessage)).all()
    assert sms.destination == SUB and "already running" in sms.text


def test_incoming_call_failing_inside_is_rejected_503(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    import bridge.dnis.lobby as lobby_module

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("database gone")

    monkeypatch.setattr(lobby_module, "classify", broken)
    leg = rig.sip.incoming("+1555", COMMON)
    rig.event(IncomingCall(leg))
    assert (leg, 503) in rig.sip.rejected and not rig.service.lobby.calls


def test_prepaid_subscriber_without_balance_cannot_launch(rig: Rig) -> None:
    from bridge.commands.actions import LaunchConference
    from bridge.db.models import SmsMessage

    with rig.factory() as s:
        sub = s.get(Subscriber, 1)
        assert sub is not None
        sub.prepaid, sub.balance = True, 0
        s.commit()
    rig.service.on_actions([LaunchConference(1, (SUB, ALICE))])
    assert rig.service.conference_ids() == []
    with rig.factory() as s:
        assert "no prepaid balance" in s.scalars(select(SmsMessage)).one().text
        sub = s.get(Subscriber, 1)
        assert sub is not None
        sub.balance = 5
        s.commit()
    rig.service.on_actions([LaunchConference(1, (SUB, ALICE))])
    assert len(rig.service.conference_ids()) == 1


def test_prepaid_subscriber_without_balance_cannot_speed_dial(rig: Rig) -> None:
    with rig.factory() as s:
        sub = s.get(Subscriber, 1)
        assert sub is not None
        sub.prepaid, sub.balance = True, None
        s.commit()
    caller = rig.dial_in(POOL1, SUB, "111111")
    assert rig.service.conference_ids() == [] and rig.sip.dialled == []
    rig.advance(2.0)
    assert (caller, "normal") in rig.sip.hung_up


def test_a_phone_that_holds_the_call_is_muted_until_it_resumes(rig: Rig) -> None:
    run_id = launch_and_answer(rig)
    alice = rig.sip.dialled[1]
    view = rig.service.describe(run_id)
    alice_leg = view["legs"][1]["leg_id"]
    pid = rig.service.legs[alice_leg].pid
    assert pid is not None and rig.media.muted[pid] is False
    rig.event(LegHold(alice, True))  # her phone's music-on-hold must not play into the conference
    assert rig.media.muted[pid] is True
    assert rig.service.describe(run_id)["legs"][1]["on_hold"] is True
    rig.event(LegHold(alice, False))
    assert rig.media.muted[pid] is False and rig.service.describe(run_id)["legs"][1]["on_hold"] is False
    # Muted by the conference while held: resuming keeps the conference's mute; unmuting while held does not
    # let the hold music in.
    rig.event(LegHold(alice, True))
    rig.service.set_muted(run_id, alice_leg, True)
    rig.event(LegHold(alice, False))
    assert rig.media.muted[pid] is True
    rig.event(LegHold(alice, True))
    rig.service.set_muted(run_id, alice_leg, False)
    assert rig.media.muted[pid] is True
    rig.event(LegHold(alice, False))
    assert rig.media.muted[pid] is False


def _dial_in_records(rig: Rig) -> list[tuple[ConferenceRun, Leg, Cdr]]:
    with rig.factory() as s:
        runs = s.scalars(select(ConferenceRun).where(ConferenceRun.service_type == "dial-in")).all()
        out = []
        for run in runs:
            (leg,) = s.scalars(select(Leg).where(Leg.run_id == run.id)).all()
            cdr = s.scalars(select(Cdr).where(Cdr.leg_id == leg.id)).one()
            out.append((run, leg, cdr))
        s.expunge_all()
        return out


def test_every_answered_call_that_ends_in_the_pin_prompt_has_a_cdr(rig: Rig) -> None:
    # 1. Three wrong PINs on the common number: no company is known.
    rig.dial_in(COMMON, "+15559990000", "999999" * 3)
    rig.advance(2.0)
    # 2. A wrong PIN three times on an IC number: no IC is known (slot-x ICs of all subscribers share it).
    rig.dial_in(POOL1, "+15559990001", "999999" * 3)
    rig.advance(2.0)
    # 3. The caller hangs up while entering the PIN.
    quitter = rig.dial_in(COMMON, "+15559990002", "12")
    rig.event(LegEnded(quitter, "normal", "remote"))
    # 4. A valid user PIN before the IC started: "not started" (the PIN names the IC and its company).
    rig.dial_in(COMMON, "+15559990003", "222222")
    rig.advance(2.0)
    records = _dial_in_records(rig)
    assert [(leg.calling, leg.status, leg.cause, run.result) for run, leg, _ in records] == [
        ("+15559990000", "failed", "wrong pin", "refused"),
        ("+15559990001", "failed", "wrong pin", "refused"),
        ("+15559990002", "failed", "caller hung up at the PIN prompt", "abandoned"),
        ("+15559990003", "failed", "conference not started", "refused"),
    ]
    assert [(run.company_id, run.ic_id) for run, _, _ in records] == [(None, None), (None, None), (None, None), (1, 1)]
    for run, leg, cdr in records:
        assert cdr.leg_id == leg.id and cdr.cli == leg.calling
        assert cdr.service_type == "dial-in" and cdr.service_id == run.id and cdr.direction == "in"
        assert cdr.joined_at is None and cdr.disconnected_at is not None and cdr.called_at <= cdr.disconnected_at
        assert cdr.company_name == ("Co" if run.company_id else "")
    assert sorted(rig.cdrs) == sorted(cdr.id for _, _, cdr in records)
    assert not rig.service.lobby.calls and rig.service.conference_ids() == []


def test_calls_refused_before_answer_have_no_cdr(rig: Rig) -> None:
    leg = rig.sip.incoming("+1", "+19999999")
    rig.event(IncomingCall(leg))
    assert (leg, 404) in rig.sip.rejected
    assert _dial_in_records(rig) == [] and rig.cdrs == []


def test_dials_are_paced_per_trunk_group(tmp_path: Path, factory: sessionmaker[Session]) -> None:
    config = from_dict(
        {
            "node": {"data_dir": str(tmp_path)},
            "trunk_group": [
                {"name": "slow", "gateways": ["10.0.0.1:5060"], "calls_per_second": 1},
                {"name": "fast", "gateways": ["10.0.0.2:5060"], "calls_per_second": 10, "role": "alternate"},
            ],
        }
    )
    rig = Rig(config, factory)
    members = [f"+1555000{i:04d}" for i in range(6)]
    rig.sip.groups = {n: "slow" for n in members[:3]} | {n: "fast" for n in members[3:]} | {SUB: "fast"}
    rig.service.launch(subscriber_id=1, numbers=members)
    rig.advance(0.02)
    assert [leg.called for leg in rig.sip.dialled] == [SUB, *members[3:], members[0]]  # slow: 1/s, fast: at once
    rig.advance(1.0)
    assert [leg.called for leg in rig.sip.dialled][-1] == members[1]
    rig.advance(1.0)
    assert len(rig.sip.dialled) == 7 and rig.service.pacer.pending() == 0
