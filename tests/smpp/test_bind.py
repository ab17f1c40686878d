from __future__ import annotations

import random

import pytest

from bridge.smpp.bind import TRANSITIONS, BindEvent, BindMachine, BindState
from bridge.smpp.errors import StateError


def machine() -> BindMachine:
    return BindMachine(name="t", reconnect_min_s=1.0, reconnect_max_s=8.0, rng=random.Random(1))


def test_happy_path_and_clean_unbind() -> None:
    m = machine()
    for event, state in [
        (BindEvent.START, BindState.CONNECTING),
        (BindEvent.CONNECTED, BindState.BINDING),
        (BindEvent.BIND_OK, BindState.BOUND),
        (BindEvent.STOP, BindState.UNBINDING),
        (BindEvent.UNBOUND, BindState.STOPPED),
    ]:
        assert m.handle(event, now=1.0) is state
    assert m.since == 1.0


def test_refused_bind_waits_with_growing_capped_backoff_reset_by_a_bind() -> None:
    m = machine()
    m.handle(BindEvent.START, 0)
    delays = []
    for _ in range(6):
        m.handle(BindEvent.CONNECTED, 0)
        m.handle(BindEvent.BIND_REFUSED, 0, "ESME_RBINDFAIL")
        assert m.state is BindState.WAITING and m.reason == "ESME_RBINDFAIL"
        assert m.retry_at is not None
        delays.append(m.retry_at)
        m.handle(BindEvent.RETRY, 0)
    ceilings = [1, 2, 4, 8, 8, 8]  # doubling, capped at reconnect_max_s; jitter draws from [c/2, c]
    assert all(c / 2 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    m.handle(BindEvent.CONNECTED, 0)
    m.handle(BindEvent.BIND_OK, 0)
    assert m.backoff.failures == 0 and m.retry_at is None and m.reason == ""


def test_link_loss_while_bound_waits_then_reconnects() -> None:
    m = machine()
    for e in (BindEvent.START, BindEvent.CONNECTED, BindEvent.BIND_OK, BindEvent.LINK_LOST, BindEvent.RETRY):
        m.handle(e, 0)
    assert m.state is BindState.CONNECTING


@pytest.mark.parametrize("state", list(BindState))
@pytest.mark.parametrize("event", list(BindEvent))
def test_every_event_is_either_in_the_table_or_refused(state: BindState, event: BindEvent) -> None:
    m = machine()
    m.state = state
    if event in TRANSITIONS[state]:
        assert m.handle(event, 0) is TRANSITIONS[state][event]
    else:
        with pytest.raises(StateError, match=f"{event.value} is not allowed in state {state.value}"):
            m.handle(event, 0)
