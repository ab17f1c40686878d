"""The heartbeat wire format: round trip, HMAC, truncation, replay, and any bytes either parse or raise ours."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.ha.errors import HeartbeatError, ReplayError
from bridge.ha.heartbeat import MAC_LENGTH, MIN_LENGTH, Heartbeat, ReplayGuard, seal, unseal
from bridge.ha.role import Role

KEY = b"k" * 32
HB = Heartbeat("node-a", Role.ACTIVE, 7, 1_700_000_000_000_000_000, 42, 1, True)

heartbeats = st.builds(
    Heartbeat,
    node_id=st.text(min_size=1, max_size=16),
    role=st.sampled_from(Role),
    term=st.integers(0, 2**64 - 1),
    boot=st.integers(0, 2**64 - 1),
    seq=st.integers(0, 2**64 - 1),
    path=st.integers(0, 255),
    healthy=st.booleans(),
    resign=st.booleans(),
)


@given(heartbeats)
def test_round_trip(heartbeat: Heartbeat) -> None:
    assert Heartbeat.parse(bytes(heartbeat)) == heartbeat
    assert unseal(seal(heartbeat, KEY), KEY) == heartbeat


def test_layout() -> None:
    data = seal(HB, KEY)
    assert data[:4] == b"BRHA" and data[4] == 1 and data[5] == 2 and data[6] == 0x01 and data[7] == 1
    assert len(data) == 33 + len("node-a") + MAC_LENGTH


def test_wrong_key_or_altered_byte_is_refused() -> None:
    data = seal(HB, KEY)
    with pytest.raises(HeartbeatError, match="HMAC does not verify"):
        unseal(data, b"x" * 32)
    for index in (0, 9, len(data) - 1):
        altered = bytearray(data)
        altered[index] ^= 0x01
        with pytest.raises(HeartbeatError, match="HMAC does not verify"):
            unseal(bytes(altered), KEY)


def test_truncated() -> None:
    data = seal(HB, KEY)
    with pytest.raises(HeartbeatError, match=f"truncated: 10 bytes, need at least {MIN_LENGTH}"):
        unseal(data[:10], KEY)
    with pytest.raises(HeartbeatError, match="header needs 33"):
        Heartbeat.parse(bytes(HB)[:20])
    with pytest.raises(HeartbeatError, match="node id length 6 makes 39"):
        Heartbeat.parse(bytes(HB)[:-1])


@pytest.mark.parametrize(
    ("index", "value", "message"),
    [(0, 0x58, "not a heartbeat: magic"), (4, 9, "version 9 not supported"), (5, 7, "unknown role code 7"),
     (6, 0x80, "unknown flags 0x80"), (32, 0, "node id length 0")],
)  # fmt: skip
def test_bad_fields_are_named(index: int, value: int, message: str) -> None:
    body = bytearray(bytes(HB))
    body[index] = value
    with pytest.raises(HeartbeatError, match=message):
        Heartbeat.parse(bytes(body))


def test_node_id_must_be_utf8_and_short() -> None:
    body = bytes(HB)[:-6] + b"\xff" * 6
    with pytest.raises(HeartbeatError, match="not UTF-8"):
        Heartbeat.parse(body)
    with pytest.raises(HeartbeatError, match="1..64 bytes"):
        Heartbeat("n" * 65, Role.INIT, 0, 0, 0, 0, False)


def test_replay_guard_refuses_old_sequences_per_path() -> None:
    guard = ReplayGuard(forget_after_s=10.0)
    guard.check(HB, 0.0)
    with pytest.raises(ReplayError, match="seq 42 is not after boot .* seq 42"):
        guard.check(HB, 0.1)
    with pytest.raises(ReplayError):
        guard.check(Heartbeat("node-a", Role.ACTIVE, 7, HB.boot, 41, 1, True), 0.2)
    guard.check(Heartbeat("node-a", Role.ACTIVE, 7, HB.boot, 42, 0, True), 0.2)  # the other path has its own
    guard.check(Heartbeat("node-a", Role.ACTIVE, 7, HB.boot, 43, 1, True), 0.3)


def test_replay_guard_accepts_a_restart_and_refuses_the_old_boot() -> None:
    guard = ReplayGuard(forget_after_s=10.0)
    guard.check(HB, 0.0)
    restarted = Heartbeat("node-a", Role.INIT, 0, HB.boot + 5, 1, 1, True)
    guard.check(restarted, 1.0)
    with pytest.raises(ReplayError):
        guard.check(Heartbeat("node-a", Role.ACTIVE, 7, HB.boot, 999, 1, True), 2.0)


def test_replay_guard_forgets_after_silence() -> None:
    """A sender whose clock stepped back across a restart is heard again after ``forget_after_s``."""
    guard = ReplayGuard(forget_after_s=10.0)
    guard.check(HB, 0.0)
    earlier = Heartbeat("node-a", Role.INIT, 0, HB.boot - 1, 1, 1, True)
    with pytest.raises(ReplayError):
        guard.check(earlier, 5.0)
    guard.check(earlier, 10.5)


@given(st.binary(max_size=200))
def test_any_bytes_parse_or_raise_our_error(data: bytes) -> None:
    for candidate in (data, seal_raw(data)):
        try:
            unseal(candidate, KEY)
        except HeartbeatError:
            pass
        try:
            Heartbeat.parse(candidate)
        except HeartbeatError:
            pass


@given(heartbeats, st.data())
def test_every_prefix_of_a_valid_datagram_raises_our_error(heartbeat: Heartbeat, data: st.DataObject) -> None:
    datagram = seal(heartbeat, KEY)
    cut = data.draw(st.integers(0, len(datagram) - 1))
    with pytest.raises(HeartbeatError):
        unseal(datagram[:cut], KEY)


def seal_raw(body: bytes) -> bytes:
    """Garbage with a valid MAC, so the parser behind the HMAC check gets fuzzed too."""
    return body + hmac.new(KEY, body, hashlib.sha256).digest()
