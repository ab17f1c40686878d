"""Instant Conferences end to end, dial-in side: speed dial, user PIN, wrong PIN, tones both ways,
subscriber presence (callbacks + hysteresis, or return), CDRs -- against SIPp and baresip on loopback.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from bridge.db.models import Cdr, ConferenceRun, Leg
from tests.integration.ic_harness import (
    ACTIVATION_PIN,
    COMMON,
    MEMBERS,
    POOL1,
    SUB,
    USER_PIN,
    Appliance,
    Baresip,
    Phones,
    band_share,
    dominant,
    wait_for,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def peers(tmp_path: Path) -> Iterator[dict[str, object]]:
    started: list[object] = []
    yield {"dir": tmp_path, "started": started}
    for item in reversed(started):
        try:
            item.stop()  # type: ignore[attr-defined]
        except Exception:  # best effort teardown; the test already asserted
            pass


def _setup(peers: dict[str, object], *, refuse: str | None, conference: dict[str, object]) -> tuple[Appliance, Phones]:
    workdir = peers["dir"]
    assert isinstance(workdir, Path)
    started = peers["started"]
    assert isinstance(started, list)
    phones = Phones(workdir, refuse=refuse)
    started.append(phones)
    bridge = Appliance(workdir, trunk_port=phones.port, conference=conference)
    bridge.seed(ic_members=MEMBERS)
    bridge.start()
    started.append(bridge)
    return bridge, phones


def _phone(peers: dict[str, object], name: str, user: str, freq: float) -> Baresip:
    workdir = peers["dir"]
    assert isinstance(workdir, Path)
    phone = Baresip(workdir, name, user=user, freq=freq)
    started = peers["started"]
    assert isinstance(started, list)
    started.append(phone)
    return phone


def _one_conference(bridge: Appliance) -> dict[str, object]:
    confs = wait_for(bridge.conferences, 10, "a running conference")
    assert len(confs) == 1
    return confs[0]


def _connected(bridge: Appliance, count: int) -> list[dict[str, object]]:
    def legs() -> list[dict[str, object]] | None:
        confs = bridge.conferences()
        if not confs:
            return None
        live = [leg for leg in confs[0]["legs"] if leg["status"] == "connected"]
        return live if len(live) >= count else None

    return wait_for(legs, 20, f"{count} connected legs")


def test_speed_dial_user_pin_wrong_pin_and_tones(peers: dict[str, object]) -> None:
    bridge, phones = _setup(peers, refuse=None, conference={})
    sub = _phone(peers, "sub", SUB.lstrip("+"), 440.0)
    guest = _phone(peers, "guest", "15559990000", 880.0)
    intruder = _phone(peers, "intruder", "15558880000", 1000.0)

    # Speed dial: the subscriber calls the IC's own DNIS and types the activation PIN (RFC 4733).
    sub.dial(bridge.sip_uri(POOL1))
    time.sleep(0.5)
    sub.digits(ACTIVATION_PIN)
    invites = wait_for(lambda: [i for i in phones.invites() if "+" + i["to"].lstrip("+") in MEMBERS], 15,
                       "INVITEs to the members")  # fmt: skip
    wait_for(lambda: len(phones.invites()) >= len(MEMBERS), 15, "all member INVITEs")
    invites = phones.invites()
    assert sorted("+" + i["to"].lstrip("+") for i in invites) == sorted(MEMBERS)
    assert {i["from"].lstrip("+") for i in invites} == {SUB.lstrip("+")}  # the subscriber's mobile as calling
    conf = _one_conference(bridge)
    assert conf["service_type"] == "IC" and conf["ic_id"] == 1

    # A participant joins on the common DNIS with the user PIN.
    guest.dial(bridge.sip_uri(COMMON))
    time.sleep(0.5)
    guest.digits(USER_PIN)
    legs = _connected(bridge, 2 + len(MEMBERS))
    roles = sorted((leg["direction"], leg["role"]) for leg in legs)
    assert roles == sorted([("in", "subscriber"), ("in", "participant")] + [("out", "participant")] * len(MEMBERS))

    # Wrong PIN three times: goodbye and disconnected.
    closed = intruder.count("CALL_CLOSED")
    intruder.dial(bridge.sip_uri(COMMON))
    time.sleep(0.5)
    for _ in range(3):
        intruder.digits("999999")
        time.sleep(0.8)
    wait_for(lambda: intruder.count("CALL_CLOSED") > closed, 15, "the intruder disconnected")
    assert len([leg for leg in bridge.conferences()[0]["legs"] if leg["direction"] == "in"]) == 2

    # Let audio flow, then measure what each phone received.
    time.sleep(6.0)
    sub_heard = sub.received()[-8000 * 4 :]
    guest_heard = guest.received()[-8000 * 4 :]
    assert abs(dominant(guest_heard) - 440.0) < 10, "the subscriber's 440 Hz must reach the guest"
    assert abs(dominant(sub_heard) - 880.0) < 10, "the guest's 880 Hz must reach the subscriber"
    assert band_share(sub_heard, 440.0) < 0.05, "the subscriber must not hear their own 440 Hz"
    assert band_share(guest_heard, 880.0) < 0.05, "the guest must not hear their own 880 Hz"

    # ** from the subscriber ends the conference for everyone.
    sub.digits("**")
    wait_for(lambda: not bridge.conferences(), 10, "the conference to end")
    assert bridge.stop() == 0
    with bridge.sessions() as s:
        (run, refused) = s.scalars(select(ConferenceRun).order_by(ConferenceRun.id)).all()
        assert run.result == "ended by subscriber" and run.service_type == "IC"
        assert (refused.service_type, refused.result) == ("dial-in", "refused")  # the intruder's call
        legs_rows = s.scalars(select(Leg).where(Leg.run_id == run.id).order_by(Leg.id)).all()
        cdrs = {c.leg_id: c for c in s.scalars(select(Cdr).where(Cdr.service_id == run.id))}
        (intruder_cdr,) = s.scalars(select(Cdr).where(Cdr.service_id == refused.id)).all()
    assert (intruder_cdr.cli, intruder_cdr.dnis, intruder_cdr.cause, intruder_cdr.joined_at) == (
        "+15558880000", COMMON, "wrong pin", None,
    )  # fmt: skip
    assert len(legs_rows) == 2 + len(MEMBERS) == len(cdrs)
    first = cdrs[legs_rows[0].id]
    assert (first.direction, first.role, first.cli, first.dnis, first.activation_pin_used) == (
        "in", "subscriber", SUB, POOL1, True,
    )  # fmt: skip
    outs = [c for c in cdrs.values() if c.direction == "out"]
    assert sorted(c.destination for c in outs) == sorted(MEMBERS) and {c.cli for c in outs} == {SUB}
    guest_cdr = next(c for c in cdrs.values() if c.cli == "+15559990000")
    assert guest_cdr.dnis == COMMON and not guest_cdr.activation_pin_used
    assert all(c.joined_at and c.disconnected_at and c.ic_id == 1 for c in cdrs.values())


def test_subscriber_leaves_callbacks_then_conference_ends(peers: dict[str, object]) -> None:
    bridge, phones = _setup(peers, refuse=SUB, conference={"hysteresis_s": 5, "callback_retries": 2})
    sub = _phone(peers, "sub", SUB.lstrip("+"), 440.0)
    sub.dial(bridge.sip_uri(POOL1))
    time.sleep(0.5)
    sub.digits(ACTIVATION_PIN)
    _connected(bridge, 1 + len(MEMBERS))
    sub.hangup()
    # The bridge calls the subscriber back (SIPp answers 480 for that number), twice, then gives up.
    wait_for(lambda: sum(i["to"].lstrip("+") == SUB.lstrip("+") for i in phones.invites()) >= 2, 15, "callbacks")
    wait_for(lambda: not bridge.conferences(), 20, "the conference to end after the hysteresis")
    callbacks = [i for i in phones.invites() if i["to"].lstrip("+") == SUB.lstrip("+")]
    assert len(callbacks) == 2 and {i["from"].lstrip("+") for i in callbacks} == {SUB.lstrip("+")}
    bridge.stop()
    with bridge.sessions() as s:
        (run,) = s.scalars(select(ConferenceRun)).all()
        assert run.result == "subscriber did not return"
        rows = s.scalars(select(Leg).order_by(Leg.id)).all()
        assert [r.status for r in rows if r.role == "subscriber" and r.direction == "out"] == ["failed", "failed"]
        assert len(s.scalars(select(Cdr)).all()) == len(rows) == 1 + len(MEMBERS) + 2


def test_subscriber_dials_back_within_hysteresis(peers: dict[str, object]) -> None:
    bridge, phones = _setup(peers, refuse=SUB, conference={"hysteresis_s": 6, "callback_retries": 1})
    sub = _phone(peers, "sub", SUB.lstrip("+"), 440.0)
    sub.dial(bridge.sip_uri(POOL1))
    time.sleep(0.5)
    sub.digits(ACTIVATION_PIN)
    _connected(bridge, 1 + len(MEMBERS))
    run_id = bridge.conferences()[0]["run_id"]
    sub.hangup()
    time.sleep(1.5)
    sub.dial(bridge.sip_uri(COMMON))
    time.sleep(0.5)
    sub.digits(USER_PIN)
    wait_for(
        lambda: any(leg["role"] == "subscriber" and leg["status"] == "connected" and leg["direction"] == "in"
                    for leg in bridge.conferences()[0]["legs"][1:]),
        10, "the subscriber back in",
    )  # fmt: skip
    time.sleep(7.0)  # longer than the hysteresis
    confs = bridge.conferences()
    assert [c["run_id"] for c in confs] == [run_id], "the conference must continue"
    assert bridge.stop() == 0  # SIGTERM ends it gracefully: a BYE to every member
    member_calls = set().union(*(phones.invite_call_ids(m) for m in MEMBERS))
    assert len(member_calls) == len(MEMBERS) and member_calls <= phones.byes()
    with bridge.sessions() as s:
        run = s.get(ConferenceRun, run_id)
        assert run is not None and run.result == "system shutdown"
        rows = s.scalars(select(Leg)).all()
        assert all(r.disconnected_at is not None for r in rows)
        assert len(s.scalars(select(Cdr)).all()) == len(rows)
