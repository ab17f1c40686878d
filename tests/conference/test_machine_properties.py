"""Property tests: any sequence of leg events, DTMF, controls and timer polls keeps the machine's invariants."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.conference import ConferenceError
from bridge.conference.machine import LIVE, Action, Conference, Ended, Hangup, LegFinished, Policy, State

EVENTS = st.lists(
    st.tuples(
        st.sampled_from(
            ["dial", "join", "ring", "answer", "fail", "end", "dtmf", "kick", "mute", "record", "lock", "poll", "stop"]
        ),  # fmt: skip
        st.integers(0, 7),  # leg key
        st.sampled_from(list("0123456789*#")),
        st.floats(0.0, 5.0),  # time step
    ),
    max_size=60,
)


def _step(conf: Conference, kind: str, leg: int, digit: str, now: float) -> list[Action]:
    if kind == "ring":
        return conf.ringing(leg, now)
    if kind == "answer":
        return conf.answered(leg, now)
    if kind == "fail":
        return conf.failed(leg, "busy", now)
    if kind == "end":
        return conf.ended_by_peer(leg, "normal", now)
    if kind == "dtmf":
        return conf.dtmf(leg, digit, now)
    if kind == "kick":
        return conf.kick(leg, now)
    if kind == "mute":
        return conf.set_muted(leg, digit == "1")
    if kind == "record":
        return conf.set_recording(digit in "01234")
    if kind == "lock":
        return conf.set_locked(digit == "1")
    if kind == "poll":
        return conf.poll(now)
    return conf.end("operator", now)


@settings(max_examples=300, deadline=None)
@given(EVENTS, st.booleans())
def test_invariants(events: list[tuple[str, int, str, float]], room: bool) -> None:
    conf = Conference(
        1,
        Policy(require_subscriber=not room, subscriber_number="+1", calling_number="+1", hysteresis_s=10.0,
               callback_retries=2, callback_delay_s=1.0, max_participants=6),
    now=0.0)  # fmt: skip
    now = 0.0
    finished: dict[int, int] = {}
    hangups: set[int] = set()
    ended = 0
    next_leg = 100
    for kind, key, digit, step in events:
        now += step
        role = "subscriber" if key == 0 else ("moderator" if key == 1 and room else "participant")
        try:
            if kind == "dial":
                actions = conf.dial(next_leg, f"+1{key}", role, now)
                next_leg += 1
            elif kind == "join":
                actions = conf.join_inbound(next_leg, f"+1{key}", role, now)
                next_leg += 1
            else:
                legs = sorted(conf.legs)
                leg = legs[key % len(legs)] if legs else 0
                actions = _step(conf, kind, leg, digit, now)
        except ConferenceError:
            continue  # refusals (unknown leg, not live, ended, full) are our errors, never anything else
        for action in actions:
            if isinstance(action, LegFinished):
                finished[action.leg_id] = finished.get(action.leg_id, 0) + 1
            elif isinstance(action, Hangup):
                hangups.add(action.leg_id)
            elif isinstance(action, Ended):
                ended += 1
        assert len(conf.live_legs()) <= conf.policy.max_participants
        if conf.state is State.ENDED:
            assert not conf.live_legs() and conf.end_at is None
    assert all(count == 1 for count in finished.values()), "a leg finishes exactly once"
    assert {leg for leg, info in conf.legs.items() if info.status not in LIVE} == set(finished)
    assert hangups <= set(finished), "we only hang up legs we also close"
    assert ended == (1 if conf.state is State.ENDED else 0)
