"""RFC 4733: the receiver reports each key press exactly once; the sender's packets follow §2.5.1."""

from __future__ import annotations

import random
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.rtp.dtmf import DTMF_EVENTS, END_REPEATS, GAP_TICKS, DtmfReceiver, DtmfSender

SSRC = 0x1234ABCD


def event(code: int, duration: int, end: bool = False) -> bytes:
    return struct.pack("!BBH", code, (0x80 if end else 0) | 10, duration)


def press(digit: str, ts: int, ticks: int = 10, ends: int = 3) -> list[tuple[int, bytes]]:
    """The packets of one key press as a typical sender emits them (as rtp_tools.write_tone_dtmf_pcap)."""
    code = DTMF_EVENTS.index(digit)
    packets = [(ts, event(code, k * 160)) for k in range(1, ticks + 1)]
    return packets + [(ts, event(code, ticks * 160, end=True))] * ends


def feed_all(rx: DtmfReceiver, packets: list[tuple[int, bytes]]) -> str:
    return "".join(rx.feed(SSRC, ts, payload) for ts, payload in packets)


def test_each_digit_reported_once_on_its_first_end_packet() -> None:
    rx = DtmfReceiver()
    packets = [p for i, d in enumerate("1234#") for p in press(d, 1000 + i * 4000)]
    reports = [rx.feed(SSRC, ts, payload) for ts, payload in packets]
    assert "".join(reports) == "1234#"
    first_end = 10  # 10 updates, then the first of 3 end packets
    assert reports[first_end] == "1"
    assert rx.retransmits == 2 * 5


def test_the_same_digit_twice_is_two_presses() -> None:
    rx = DtmfReceiver()
    assert feed_all(rx, press("5", 0) + press("5", 2000)) == "55"


def test_lost_end_packets_report_on_the_next_event() -> None:
    rx = DtmfReceiver()
    assert feed_all(rx, press("7", 0, ends=0)) == ""
    assert rx.pending
    assert feed_all(rx, press("8", 4000)) == "78"


def test_lost_end_packets_report_when_audio_resumes_past_the_event() -> None:
    rx = DtmfReceiver()
    feed_all(rx, press("9", 8000, ticks=5, ends=0))  # duration 800 samples
    assert rx.audio(8000 + 400) == ""  # audio inside the event: keep waiting
    assert rx.audio(8000 + 800) == "9"
    assert rx.audio(8000 + 960) == ""
    assert feed_all(rx, [(8000, event(9, 800, end=True))]) == ""  # a late end: already reported


def test_only_end_packets_still_report() -> None:
    rx = DtmfReceiver()
    assert feed_all(rx, [(0, event(11, 800, end=True))] * 3) == "#"


def test_retransmit_after_a_newer_event_is_not_reported_again() -> None:
    rx = DtmfReceiver()
    assert feed_all(rx, press("1", 0) + press("2", 4000) + press("1", 0)) == "12"


def test_non_digit_events_and_short_payloads_are_ignored() -> None:
    rx = DtmfReceiver()
    assert rx.feed(SSRC, 0, event(16, 160, end=True)) == ""  # flash
    assert rx.feed(SSRC, 0, b"\x01\x80") == ""
    assert rx.malformed == 1


def test_flush_reports_a_pending_event() -> None:
    rx = DtmfReceiver()
    feed_all(rx, press("A", 0, ends=0))
    assert rx.flush() == "A"
    assert rx.flush() == ""


def test_events_of_another_ssrc_with_the_same_timestamp_are_distinct() -> None:
    rx = DtmfReceiver()
    assert rx.feed(1, 0, event(1, 160, end=True)) == "1"
    assert rx.feed(2, 0, event(1, 160, end=True)) == "1"


@given(st.binary(max_size=8), st.integers(0, 2**32 - 1))
def test_receiver_never_raises(payload: bytes, ts: int) -> None:
    DtmfReceiver().feed(SSRC, ts, payload)


def run_sender(tx: DtmfSender, ticks: int, start_ts: int = 0) -> list[list[tuple[bool, int, bytes]]]:
    out = []
    ts = start_ts
    for _ in range(ticks):
        out.append(tx.tick(ts))
        ts = (ts + 160) % 2**32
    return out


def test_sender_packets_for_one_digit() -> None:
    tx = DtmfSender()
    tx.add("5", 160)
    assert not tx.idle
    ticks = run_sender(tx, 8, start_ts=3200)
    assert [len(t) for t in ticks] == [1] * 7 + [END_REPEATS]
    marker, ts, payload = ticks[0][0]
    assert (marker, ts, payload) == (True, 3200, event(5, 160))
    assert [t[0][2] for t in ticks[1:7]] == [event(5, 160 * k) for k in range(2, 8)]
    rest = [packet for tick in ticks for packet in tick][1:]
    assert all(not marker and ts == 3200 for marker, ts, _ in rest)  # one timestamp, one marker per event
    assert ticks[-1] == [(False, 3200, event(5, 1280, end=True))] * END_REPEATS
    assert tx.sent == 1


def test_sender_pause_between_digits_and_idle_after() -> None:
    tx = DtmfSender()
    tx.add("1", 40)
    tx.add("1", 40)
    ticks = run_sender(tx, 2 + GAP_TICKS + 2 + GAP_TICKS + 1)
    kinds = ["event" if t else "audio" for t in ticks]
    assert kinds == ["event", "event"] + ["audio"] * GAP_TICKS + ["event", "event"] + ["audio"] * (GAP_TICKS + 1)
    assert ticks[0][0][1] != ticks[2 + GAP_TICKS][0][1]  # a new timestamp per press
    assert tx.idle


@pytest.mark.parametrize("digit", ["", "E", "12", "x", 5])
def test_sender_refuses_non_digits(digit: object) -> None:
    with pytest.raises(ValueError):
        DtmfSender().add(digit)  # type: ignore[arg-type]


@given(st.text(alphabet=DTMF_EVENTS + "abcd", max_size=8), st.integers(0, 2**32 - 1))
def test_sender_to_receiver_round_trip(digits: str, start_ts: int) -> None:
    tx, rx = DtmfSender(), DtmfReceiver()
    for digit in digits:
        tx.add(digit, 100)
    got = ""
    for tick in run_sender(tx, 12 * len(digits) + 1, start_ts):
        for _, ts, payload in tick:
            got += rx.feed(SSRC, ts, payload)
    assert got == digits.upper()


@given(
    st.lists(
        st.tuples(st.sampled_from(DTMF_EVENTS), st.integers(1, 12), st.integers(1, 5)),
        min_size=1,
        max_size=6,
    ),
    st.randoms(use_true_random=False),
)
def test_duplicated_and_reordered_packets_of_each_press_report_it_once(
    presses: list[tuple[str, int, int]], rng: random.Random
) -> None:
    rx = DtmfReceiver()
    got = ""
    ts = 1000
    for digit, ticks, ends in presses:
        packets = press(digit, ts, ticks=ticks, ends=ends)
        packets += [rng.choice(packets) for _ in range(rng.randrange(4))]  # network duplicates
        rng.shuffle(packets)  # reordered within the press
        got += feed_all(rx, packets)
        ts += ticks * 160 + 800
    got += rx.flush()
    assert got == "".join(digit for digit, _, _ in presses)
