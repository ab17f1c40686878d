"""Any text from any sender gets exactly one reply and never an exception (STYLE.md rule 15)."""

from __future__ import annotations

import datetime as dt

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.orm import Session

from bridge.commands import INTERNAL_ERROR, CommandResult, execute
from bridge.config import Config
from bridge.db.models import Subscriber

WORDS = ["UC", "UE", "UD", "UL", "GC", "GL", "GD", "IC", "CC", "LC", "SB", "?", "??", "HELP", "IC3", "CC2", "LC1"]
TOKENS = [
    "bob",
    "ann",
    "Team",
    "-Team",
    "+Team",
    "5551230002",
    "+15551230003",
    "5551230001",
    "Bob.Smith",
    ":",
    "hi:",
    "3",
    "31",
    "0",
    "-",
    ".",
    "x" * 45,
    "\u00e9t\u00e9",
    "\U0001f600",
    "\x00",
]
SENDERS = ["+15551230001", "15551230001", "5551230001", "+15559990000", "", "abc", "+", "\x00\xff"]

command_like = st.builds(
    lambda word, args, sep: sep.join([word, *args]),
    st.sampled_from(WORDS).map(lambda w: w.lower() if len(w) % 2 else w),
    st.lists(st.sampled_from(TOKENS) | st.text(max_size=12), max_size=8),
    st.sampled_from([" ", "  ", "\n", "\t"]),
)
garbage = st.text(max_size=300) | st.binary(max_size=200).map(lambda b: b.decode("latin-1"))
senders = st.sampled_from(SENDERS) | st.text(max_size=20)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sender=senders, text=command_like | garbage)
def test_any_text_from_any_sender_gets_exactly_one_reply(
    session: Session, config: Config, subscriber: Subscriber, sender: str, text: str
) -> None:
    # State accumulates across examples (users and groups made by earlier ones), like a real subscriber.
    result = execute(session, sender=sender, text=text, config=config, now=dt.datetime(2026, 11, 22))
    assert isinstance(result, CommandResult)
    assert isinstance(result.reply, str) and result.reply.strip()
    assert result.reply != INTERNAL_ERROR
    assert result.subscriber_id in (None, subscriber.id)
    if result.subscriber_id is None:
        assert result.actions == ()
    session.flush()


@settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(["UC bob 5551230002 Bob.Smith Team -Old", "SB Team bob : see you at 3", "CC12 bob 5551230009"]))
def test_every_prefix_of_a_valid_command_gets_one_reply(
    session: Session, config: Config, subscriber: Subscriber, text: str
) -> None:
    for end in range(len(text) + 1):
        result = execute(session, sender="+15551230001", text=text[:end], config=config, now=dt.datetime(2026, 1, 1))
        assert result.reply.strip() and result.reply != INTERNAL_ERROR
