"""Jitter buffer: playout order by timestamp, reordering, duplicates, late packets, concealment, adaptation."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.mixer.g711 import decode
from bridge.rtp.jitterbuffer import (
    CALM_GETS,
    MAX_CONCEALED,
    MAX_TARGET,
    MIN_TARGET,
    JitterBuffer,
    JitterState,
)

FRAME = 160


def rng_bytes(n: int) -> bytes:
    return random.Random(n).randbytes(n)


def frame(n: int) -> bytes:
    """A distinct, loud-ish PCMU frame per n (codes 0x00-0x3F are large negative samples)."""
    return bytes([n % 64]) * FRAME


def play(jb: JitterBuffer, ticks: int) -> list[bytes | None]:
    return [jb.get() for _ in range(ticks)]


def test_in_order_stream_plays_after_the_target_depth() -> None:
    jb = JitterBuffer()
    assert jb.target == 2
    jb.put(1000, frame(0))
    assert jb.get() is None  # still buffering: one frame < target
    jb.put(1000 + FRAME, frame(1))
    out = []
    for n in range(2, 20):
        out.append(jb.get())
        jb.put(1000 + n * FRAME, frame(n))
    assert out == [frame(n) for n in range(18)]
    assert jb.state is JitterState.PLAYING
    assert (jb.late, jb.duplicates, jb.concealed) == (0, 0, 0)


def test_reordered_packets_play_in_timestamp_order() -> None:
    jb = JitterBuffer()
    for n in (1, 0, 3, 2):
        jb.put(n * FRAME, frame(n))
    out = play(jb, 2)
    jb.put(5 * FRAME, frame(5))
    jb.put(4 * FRAME, frame(4))
    assert out + play(jb, 4) == [frame(n) for n in range(6)]


def test_reordering_before_the_first_frame_is_still_in_time() -> None:
    jb = JitterBuffer()
    jb.put(5 * FRAME, frame(5))
    jb.put(4 * FRAME, frame(4))
    assert play(jb, 2) == [frame(4), frame(5)]


def test_duplicates_are_dropped() -> None:
    jb = JitterBuffer()
    assert jb.put(0, frame(0))
    assert not jb.put(0, frame(9))
    jb.put(FRAME, frame(1))
    assert play(jb, 1) == [frame(0)]
    assert not jb.put(0, frame(0))  # already played: late or duplicate, dropped either way
    assert jb.duplicates == 1
    assert play(jb, 1) == [frame(1)]


def test_late_packet_is_dropped_and_grows_the_target() -> None:
    jb = JitterBuffer()
    for n in range(3):
        jb.put(n * FRAME, frame(n))
    assert play(jb, 1) == [frame(0)]
    jb.get()  # frame 1
    target = jb.target
    assert not jb.put(0, frame(0))
    assert jb.late == 1
    assert jb.target == target + 1


def test_target_never_exceeds_80_ms_nor_goes_below_20_ms() -> None:
    jb = JitterBuffer()
    jb.put(20 * FRAME, frame(0))
    jb.put(21 * FRAME, frame(1))
    jb.get()
    for n in range(10):
        jb.put(n * FRAME, frame(n))  # all behind the playout point
    assert jb.target == MAX_TARGET
    ts = 22
    for _ in range(CALM_GETS * (MAX_TARGET + 2)):
        jb.put(ts * FRAME, frame(ts))
        ts += 1
        jb.get()
    assert jb.target == MIN_TARGET


def test_loss_is_concealed_by_attenuated_repeats_then_silence() -> None:
    jb = JitterBuffer()
    tone = np.round(8000 * np.sin(2 * np.pi * 440 * np.arange(FRAME) / 8000)).astype(np.int16)
    from bridge.mixer.g711 import encode

    loud = encode(tone, "PCMU").tobytes()
    jb.put(0, loud)
    jb.put(FRAME, loud)
    jb.put(10 * FRAME, frame(10))  # frames 2..9 lost
    assert play(jb, 2) == [loud, loud]
    concealed = play(jb, MAX_CONCEALED)
    levels = [float(np.sqrt(np.mean(decode(f, "PCMU").astype(float) ** 2))) for f in concealed if f is not None]
    assert len(levels) == MAX_CONCEALED
    original = float(np.sqrt(np.mean(decode(loud, "PCMU").astype(float) ** 2)))
    for before, after in zip([original, *levels], levels, strict=False):
        assert 0.4 < after / before < 0.6  # 6 dB per concealed frame
    assert play(jb, 10 - 2 - MAX_CONCEALED) == [None] * 5
    assert jb.get() == frame(10)
    assert jb.concealed == MAX_CONCEALED


def test_underrun_goes_back_to_buffering_and_restarts_on_the_next_talk_spurt() -> None:
    jb = JitterBuffer()
    jb.put(0, frame(0))
    jb.put(FRAME, frame(1))
    assert play(jb, 2) == [frame(0), frame(1)]
    assert all(f is not None for f in play(jb, MAX_CONCEALED))
    assert jb.get() is None
    assert jb.state is JitterState.BUFFERING
    jb.put(500 * FRAME, frame(5))  # silence suppression: timestamps jumped
    jb.put(501 * FRAME, frame(6))
    assert play(jb, 2) == [frame(5), frame(6)]


def test_timestamp_wrap_around() -> None:
    jb = JitterBuffer()
    start = 2**32 - 2 * FRAME
    for n in range(4):
        jb.put((start + n * FRAME) % 2**32, frame(n))
    assert play(jb, 4) == [frame(n) for n in range(4)]


def test_timestamp_jump_resynchronises() -> None:
    jb = JitterBuffer()
    for n in range(3):
        jb.put(n * FRAME, frame(n))
    jb.get()
    jb.put(10**6, frame(40))  # a new stream far away
    jb.put(10**6 + FRAME, frame(41))
    assert play(jb, 2) == [frame(40), frame(41)]


def test_40_ms_packets_are_split_and_empty_ones_refused() -> None:
    jb = JitterBuffer()
    assert jb.put(0, frame(0) + frame(1))
    assert not jb.put(2 * FRAME, b"")
    assert jb.bad_size == 1
    assert play(jb, 2) == [frame(0), frame(1)]


@pytest.mark.parametrize("ptime_ms", [10, 30, 50])
def test_other_packet_times_are_recut_into_20_ms_frames(ptime_ms: int) -> None:
    stream = rng_bytes(FRAME * 30)
    size = ptime_ms * 8
    jb = JitterBuffer(min_target=4, max_target=4)  # 80 ms: room for a 50 ms packet's arrival pattern
    out: list[bytes | None] = []
    for ms in range(0, 30 * 20 + 200, 10):  # packets every ptime, one get every 20 ms
        if ms % ptime_ms == 0 and ms * 8 + size <= len(stream):
            jb.put(1000 + ms * 8, stream[ms * 8 : ms * 8 + size])
        if ms % 20 == 0:
            out.append(jb.get())
    played = [f for f in out if f is not None and f in stream]
    assert b"".join(played) == stream[: len(played) * FRAME]
    assert len(played) >= 30 - (ptime_ms + 19) // 20  # all but a tail shorter than one packet
    assert jb.late == jb.dropped == 0


def test_a_gap_in_30_ms_packets_loses_only_that_audio() -> None:
    stream = rng_bytes(240 * 6)
    jb = JitterBuffer(min_target=6, max_target=6)  # deep enough to hold it all without draining
    for i in (0, 1, 3, 4, 5):  # packet 2 (timestamps 480-719) lost
        jb.put(i * 240, stream[i * 240 : (i + 1) * 240])
    # frames 0 | 160, 320 | (gap) 720 | 880, 1040 | 1200 (+ 80 samples carried); after the gap the frames
    # are 80 samples off the playout grid and snap to 800, 960, 1120, 1280: the gap plays as 2 frames.
    assert jb.received == 7
    out = play(jb, 9)
    assert out[0:3] == [stream[0:160], stream[160:320], stream[320:480]]
    assert all(f is None or f not in stream for f in out[3:5])  # concealed
    assert out[5:9] == [stream[720:880], stream[880:1040], stream[1040:1200], stream[1200:1360]]


def test_off_grid_timestamps_snap_to_the_playout_grid() -> None:
    jb = JitterBuffer()
    jb.put(0, frame(0))
    jb.put(FRAME, frame(1))
    assert jb.get() == frame(0)
    jb.put(2 * FRAME + 70, frame(2))  # 70 samples past the grid: frame slot 2
    jb.put(3 * FRAME + 90, frame(3))  # 90 samples past slot 3: nearer slot 4
    out = play(jb, 4)
    assert out[:2] == [frame(1), frame(2)]
    assert out[2] is not None and out[2] != frame(2)  # slot 3 empty: concealed
    assert out[3] == frame(3)


def test_too_deep_buffer_drains_one_frame_per_tick() -> None:
    jb = JitterBuffer()
    for n in range(12):  # a burst after a stall
        jb.put(n * FRAME, frame(n))
    out = play(jb, 12)
    assert out[0] == frame(1)  # frame 0 skipped: 12 queued > target + slack
    assert jb.dropped >= 1
    assert [f for f in out if f is not None] == sorted({f for f in out if f is not None}, key=out.index)


@given(st.permutations(list(range(8))), st.integers(0, 2**32 - 1))
def test_any_reordering_within_the_target_depth_plays_in_order(order: list[int], base: int) -> None:
    jb = JitterBuffer(min_target=4, max_target=4)
    # packets arrive in pairs per tick, shuffled within a window of 4 frames
    arrivals = sorted(range(8), key=lambda n: (n // 4, order.index(n)))
    out: list[bytes | None] = []
    for i, n in enumerate(arrivals):
        jb.put((base + n * FRAME) % 2**32, frame(n))
        if i >= 4:
            out.append(jb.get())
    out += play(jb, 8 - len(out))
    assert out == [frame(n) for n in range(8)]
    assert jb.late == 0


@given(st.lists(st.tuples(st.integers(0, 2**32 - 1), st.binary(max_size=400)), max_size=40), st.integers(0, 40))
def test_arbitrary_input_never_raises(puts: list[tuple[int, bytes]], gets: int) -> None:
    jb = JitterBuffer("PCMA")
    for ts, payload in puts:
        jb.put(ts, payload)
        result = jb.get()
        assert result is None or len(result) == FRAME
    for _ in range(gets):
        jb.get()


@given(st.lists(st.integers(0, 4), min_size=1, max_size=120), st.integers(0, 2**32 - 1), st.integers(0, 2**32))
def test_network_jitter_never_reorders_or_repeats_played_frames(delays: list[int], base: int, seed: int) -> None:
    """Packet n is sent at tick n and arrives ``delays[n]`` ticks later; one ``get`` per tick."""
    rng = random.Random(seed)  # distinct noise payloads, so a played frame is recognised by its bytes
    payloads = [rng.randbytes(FRAME) for _ in delays]
    index = {p: n for n, p in enumerate(payloads)}
    arrivals: dict[int, list[int]] = {}
    for n, delay in enumerate(delays):
        arrivals.setdefault(n + delay, []).append(n)
    jb = JitterBuffer()
    played: list[int] = []
    for tick in range(len(delays) + 20):
        for n in arrivals.get(tick, []):
            jb.put((base + n * FRAME) % 2**32, payloads[n])
        out = jb.get()
        if out is not None and out in index:
            played.append(index[out])
    assert played == sorted(set(played))  # in order, each at most once
    assert len(played) + jb.late + jb.dropped + len(jb) == len(delays)
