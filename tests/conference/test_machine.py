"""The conference state machine with a fake clock: presence, hysteresis, callbacks, DTMF, controls."""

from __future__ import annotations

import pytest

from bridge.conference import NotAllowed, UnknownLeg
from bridge.conference.machine import (
    Callback,
    Conference,
    Dial,
    DialPacer,
    Ended,
    Hangup,
    Join,
    LegFinished,
    LegStatus,
    Play,
    Policy,
    SetMuted,
    SetRecording,
    State,
    plan_launch,
)

SUB = "+15551230001"


def ic(**kwargs: object) -> Conference:
    policy = Policy(
        subscriber_number=SUB,
        calling_number=SUB,
        hysteresis_s=10.0,
        callback_retries=2,
        callback_delay_s=1.0,
        **kwargs,  # type: ignore[arg-type]
    )
    return Conference(1, policy, now=0.0)


def launched(conf: Conference, members: int = 2) -> Conference:
    conf.dial(1, SUB, "subscriber", 0.0)
    for i in range(members):
        conf.dial(10 + i, f"+1555000{i}", "participant", 0.0)
    for leg in [1] + [10 + i for i in range(members)]:
        conf.answered(leg, 1.0)
    return conf


def test_plan_launch_puts_subscriber_first_dedupes_and_caps() -> None:
    plan = plan_launch(SUB, [SUB, "+1", "+2", "+1", " +3 "], max_participants=3)
    assert plan == [(SUB, "subscriber"), ("+1", "participant"), ("+2", "participant")]


def test_dial_uses_subscriber_mobile_as_calling_number() -> None:
    conf = ic()
    assert conf.dial(1, "+1999", "participant", 0.0) == [Dial(1, "+1999", SUB)]
    assert conf.legs[1].status is LegStatus.DIALING
    conf.ringing(1, 0.5)
    assert conf.legs[1].status is LegStatus.RINGING


def test_answer_joins_with_tone_and_subscriber_makes_it_active() -> None:
    conf = ic()
    conf.dial(1, SUB, "subscriber", 0.0)
    conf.dial(2, "+1", "participant", 0.0)
    first = conf.answered(2, 1.0)
    assert first == [Join(2, False), Play(("first_participant",), 2)]
    assert conf.state is State.STARTING
    second = conf.answered(1, 1.5)
    assert second == [Join(1, False), Play(("join",))]
    assert conf.state is State.ACTIVE and conf.subscriber_present


def test_failed_leg_records_cause_once() -> None:
    conf = launched(ic())
    conf.dial(20, "+1777", "participant", 2.0)
    assert conf.failed(20, "busy", 3.0) == [LegFinished(20, LegStatus.FAILED, "busy")]
    assert conf.failed(20, "busy", 3.0) == []
    assert conf.legs[20].cause == "busy"


def test_subscriber_leaves_then_callbacks_then_end_after_hysteresis() -> None:
    conf = launched(ic())
    actions = conf.ended_by_peer(1, "normal", 5.0)
    assert conf.state is State.AWAY
    assert Play(("conference_will_end",)) in actions
    assert conf.end_at == 15.0
    assert conf.poll(5.5) == []
    assert conf.poll(6.0) == [Callback(SUB)]
    conf.dial(2, SUB, "subscriber", 6.0, callback=True)
    assert conf.failed(2, "no answer", 8.0)[-1] == LegFinished(2, LegStatus.FAILED, "no answer")
    assert conf.poll(9.0) == [Callback(SUB)]
    conf.dial(3, SUB, "subscriber", 9.0, callback=True)
    conf.failed(3, "no answer", 11.0)
    assert conf.callbacks_left == 0
    assert conf.poll(12.5) == []
    actions = conf.poll(15.0)
    assert conf.state is State.ENDED and actions[-1] == Ended("subscriber did not return")
    assert {a.leg_id for a in actions if isinstance(a, Hangup)} == {10, 11}
    assert all(conf.legs[leg].status is LegStatus.LEFT for leg in (10, 11))


def test_subscriber_returning_within_hysteresis_keeps_conference() -> None:
    conf = launched(ic())
    conf.ended_by_peer(1, "normal", 5.0)
    conf.join_inbound(4, SUB, "subscriber", 8.0)
    assert conf.state is State.ACTIVE and conf.end_at is None
    assert conf.poll(100.0) == []
    assert not conf.ended


def test_answered_callback_restores_presence() -> None:
    conf = launched(ic())
    conf.ended_by_peer(1, "normal", 5.0)
    conf.poll(6.0)
    conf.dial(2, SUB, "subscriber", 6.0, callback=True)
    conf.answered(2, 7.0)
    assert conf.state is State.ACTIVE and conf.poll(50.0) == []


def test_subscriber_hanging_up_after_everyone_left_ends() -> None:
    conf = launched(ic(), members=1)
    conf.ended_by_peer(10, "normal", 3.0)
    assert conf.state is State.ACTIVE
    actions = conf.ended_by_peer(1, "normal", 4.0)
    assert actions[-1] == Ended("everyone left") and conf.ended


def test_everyone_leaving_while_subscriber_away_ends() -> None:
    conf = launched(ic(), members=1)
    conf.ended_by_peer(1, "normal", 3.0)
    conf.poll(4.0)  # callback scheduled and handed out
    actions = conf.ended_by_peer(10, "normal", 4.5)
    assert actions[-1] == Ended("everyone left")


def test_star_star_from_subscriber_ends_for_everyone() -> None:
    conf = launched(ic())
    assert conf.dtmf(1, "*", 2.0) == []
    actions = conf.dtmf(1, "*", 2.5)
    assert actions[0] == Play(("goodbye",))
    assert actions[-1] == Ended("ended by subscriber")
    assert sum(isinstance(a, Hangup) for a in actions) == 3


def test_participant_cannot_end_or_record_but_can_mute_self() -> None:
    conf = launched(ic())
    conf.dtmf(10, "*", 1.0)
    assert conf.dtmf(10, "*", 1.1) == []
    conf.dtmf(10, "*", 1.2)
    assert conf.dtmf(10, "2", 1.3) == []
    conf.dtmf(10, "*", 1.4)
    assert conf.dtmf(10, "6", 1.5) == [SetMuted(10, True), Play(("muted",), 10)]
    conf.dtmf(10, "*", 1.6)
    assert conf.dtmf(10, "6", 1.7) == [SetMuted(10, False), Play(("unmuted",), 10)]
    assert not conf.ended


def test_star_expires_after_key_timeout() -> None:
    conf = launched(ic())
    conf.dtmf(1, "*", 1.0)
    assert conf.dtmf(1, "*", 10.0) == []  # too late: this star starts a new sequence
    assert not conf.ended


def test_subscriber_controls_recording_mute_all_lock_count() -> None:
    conf = launched(ic())
    conf.dtmf(1, "*", 1.0)
    assert conf.dtmf(1, "2", 1.1) == [SetRecording(True), Play(("recording_started",))]
    conf.dtmf(1, "*", 1.2)
    actions = conf.dtmf(1, "4", 1.3)
    assert SetMuted(10, True) in actions and SetMuted(11, True) in actions
    assert not conf.legs[1].muted
    conf.dtmf(1, "*", 1.4)
    conf.dtmf(1, "5", 1.5)
    assert conf.locked
    conf.dtmf(1, "*", 1.6)
    assert conf.dtmf(1, "3", 1.7) == [Play(("participant_count", "3"), 1)]
    conf.dtmf(1, "*", 1.8)
    assert conf.dtmf(1, "0", 1.9) == [Play(("help_moderator",), 1)]
    conf.dtmf(10, "*", 2.0)
    assert conf.dtmf(10, "9", 2.1) == [Play(("help_participant",), 10)]  # unknown key: help


def test_participant_joining_while_all_muted_is_muted() -> None:
    conf = launched(ic())
    conf.mute_all(True)
    assert conf.join_inbound(30, "+1888", "participant", 2.0)[0] == Join(30, True)


def test_full_conference_refuses_dials() -> None:
    conf = ic(max_participants=2)
    conf.dial(1, SUB, "subscriber", 0.0)
    conf.dial(2, "+1", "participant", 0.0)
    assert conf.full
    with pytest.raises(NotAllowed):
        conf.dial(3, "+2", "participant", 0.0)
    with pytest.raises(NotAllowed):  # a returning subscriber too (found by test_machine_properties)
        conf.join_inbound(4, SUB, "subscriber", 0.0)


def test_end_stops_recording_and_refuses_later_controls() -> None:
    conf = launched(ic())
    conf.set_recording(True)
    actions = conf.end("ended by operator", 3.0)
    assert actions[0] == SetRecording(False)
    with pytest.raises(NotAllowed):
        conf.set_recording(True)
    assert conf.end("again", 4.0) == []


def test_answer_after_end_is_hung_up() -> None:
    conf = ic()
    conf.dial(1, SUB, "subscriber", 0.0)
    conf.dial(2, "+1", "participant", 0.0)
    conf.answered(1, 1.0)
    conf.ended_by_peer(1, "normal", 2.0)
    assert conf.ended
    assert conf.legs[2].status is LegStatus.FAILED  # cancelled when the conference ended
    assert conf.answered(2, 3.0) == []


def test_kick_and_unknown_leg() -> None:
    conf = launched(ic())
    actions = conf.kick(10, 2.0)
    assert actions[:2] == [Hangup(10, "kicked"), LegFinished(10, LegStatus.LEFT, "kicked")]
    with pytest.raises(NotAllowed):
        conf.kick(10, 2.0)
    with pytest.raises(UnknownLeg):
        conf.kick(99, 2.0)


def test_room_ends_when_last_leg_leaves_and_needs_no_subscriber() -> None:
    room = Conference(7, Policy(require_subscriber=False), now=0.0)
    room.join_inbound(1, "+1", "participant", 0.0)
    assert room.state is State.ACTIVE
    room.join_inbound(2, "+2", "moderator", 1.0)
    room.ended_by_peer(2, "normal", 2.0)
    assert room.state is State.ACTIVE and room.end_at is None
    assert room.ended_by_peer(1, "normal", 3.0)[-1] == Ended("everyone left")


def test_moderator_may_end_a_room() -> None:
    room = Conference(7, Policy(require_subscriber=False), now=0.0)
    room.join_inbound(1, "+1", "participant", 0.0)
    room.join_inbound(2, "+2", "moderator", 0.0)
    room.dtmf(2, "*", 1.0)
    assert room.dtmf(2, "*", 1.1)[-1] == Ended("ended by moderator")


def test_dial_pacer_limits_rate_per_second() -> None:
    pacer: DialPacer[int] = DialPacer({"pstn": 2.0})
    for i in range(6):
        pacer.submit(i, "pstn")
    assert pacer.release(0.0) == [0, 1]
    assert pacer.release(0.4) == []
    assert pacer.release(0.5) == [2]
    assert pacer.release(1.5) == [3, 4]
    pacer.discard(lambda item: item == 5)
    assert pacer.pending() == 0


def test_dial_pacer_paces_each_trunk_group_on_its_own() -> None:
    pacer: DialPacer[str] = DialPacer({"slow": 1.0, "fast": 4.0}, default_rate=2.0)
    for i in range(6):
        pacer.submit(f"s{i}", "slow")
        pacer.submit(f"f{i}", "fast")
    pacer.submit("none", None)  # no route: paced at the default rate, dialled to fail with its cause
    first = pacer.release(0.0)
    assert [d for d in first if d.startswith("s")] == ["s0"]  # one second's worth of the slow group...
    assert [d for d in first if d.startswith("f")] == ["f0", "f1", "f2", "f3"]  # ...does not hold the fast one
    assert "none" in first
    assert pacer.release(0.5) == ["f4", "f5"]  # the fast group refills at 4/s while the slow one waits
    assert pacer.release(1.0) == ["s1"]
    assert pacer.pending() == 4
    pacer.discard(lambda d: d.startswith("s"))
    assert pacer.pending() == 0


def test_star_star_hangups_wait_for_the_goodbye_prompt_other_ends_do_not() -> None:
    conf = launched(ic())
    conf.dtmf(1, "*", 2.0)
    actions = conf.dtmf(1, "*", 2.5)
    hangups = [a for a in actions if isinstance(a, Hangup)]
    assert [(h.leg_id, h.after_prompt) for h in hangups] == [(1, True), (10, True), (11, True)]
    assert actions.index(Play(("goodbye",))) < actions.index(hangups[0])  # the prompt they wait for
    assert sum(isinstance(a, LegFinished) for a in actions) == 3  # the rows and CDRs close at once
    other = launched(ic())
    assert all(not a.after_prompt for a in other.end("ended by operator", 3.0) if isinstance(a, Hangup))
    assert other.legs[1].status is LegStatus.LEFT
    kicked = launched(ic())
    assert kicked.kick(10, 3.0)[0] == Hangup(10, "kicked", after_prompt=False)
