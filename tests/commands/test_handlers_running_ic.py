"""``ICx`` of an IC the conference service is running: the command language and the engine agree.

The real :class:`ConferenceService` (fake SIP and media) writes the run and leg rows; the command
language reads them to answer a second ``ICx`` with one reply in the subscriber's terms.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from bridge.commands import CommandResult, execute
from bridge.conference.interfaces import MediaEndpoint, MediaQuality
from bridge.conference.service import ConferenceService
from bridge.config import Config
from bridge.db import make_engine, make_session_factory
from bridge.db.models import InstantConference, SmsMessage
from bridge.sip.events import LegAnswered
from bridge.sip.leg import LegState, SipLeg

Sms = Callable[..., CommandResult]
MOBILE = "+15551230001"
NOW = dt.datetime(2026, 11, 22, 9, 30)


class FakeSip:
    def __init__(self) -> None:
        self.ids = itertools.count(1)
        self.dialled: list[SipLeg] = []

    def dial(self, *, called: str, calling: str, trunk_group: str | None = None, display_name: str = "") -> SipLeg:
        leg = SipLeg(f"out-{next(self.ids)}", "out", calling, called, LegState.DIALING, call_id=f"c{called}")
        self.dialled.append(leg)
        return leg

    def answer(self, leg: Any) -> None: ...

    def reject(self, leg: Any, status: int, reason: str) -> None: ...

    def hangup(self, leg: Any, cause: str = "normal") -> None: ...

    def media_endpoint(self, leg: SipLeg) -> MediaEndpoint | None:
        return None

    def first_group(self, number: str) -> str | None:
        return "pstn"


class FakeMedia:
    def __init__(self) -> None:
        self.pids = itertools.count(1)

    def attach(self, conference: int, endpoint: MediaEndpoint | None, *, muted: bool = False) -> int:
        return next(self.pids)

    def detach(self, pid: int) -> None: ...

    def quality(self, pid: int) -> MediaQuality:
        return MediaQuality()

    def set_muted(self, pid: int, muted: bool) -> None: ...

    def play(self, prompts: tuple[str, ...], *, pid: int | None = None, conference: int | None = None) -> float:
        return 0.0

    def start_recording(self, conference: int, path: str) -> None: ...

    def stop_recording(self, conference: int) -> None: ...


def test_second_icx_while_the_engine_runs_it_gets_one_reply(
    sms: Sms, session: Session, config: Config, db_url: str
) -> None:
    sms("UC bob 5551230002 Bob")
    sms("UC ann 5551230003 Ann")
    sms("CC1 bob ann")
    session.commit()
    ic = session.scalars(select(InstantConference)).one()
    first = sms("IC1")
    session.commit()
    factory = make_session_factory(make_engine(db_url))
    sip = FakeSip()
    clock = itertools.count(100)
    service = ConferenceService(config, factory, sip=sip, media=FakeMedia(), clock=lambda: float(next(clock)))
    service.on_actions(first.actions)
    service.poll(200.0)
    for leg in sip.dialled[:2]:  # the subscriber and bob answer, ann's phone rings on
        service.on_sip_event(LegAnswered(leg))

    second = execute(session, sender=MOBILE, text="IC1", config=config, now=NOW)
    assert second.reply == f"IC1 is already running: 2 connected. Rejoin: +15550100 PIN {ic.user_pin}"
    assert second.actions == ()

    # A launch that raced the check (the first launch not yet started when the second SMS was read) is
    # still refused by the engine, in the subscriber's terms: the slot, never the database id.
    service.on_actions(first.actions)
    with factory() as s:
        (refusal,) = s.scalars(select(SmsMessage).where(SmsMessage.destination == MOBILE)).all()
    assert refusal.text == "Conference not started: IC1 is already running"
