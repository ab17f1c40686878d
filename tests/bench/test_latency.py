"""bench/latency.py's pure part: the click signal, the jittered send times, RTP stream decoding and the
click detector / pairing that turn two captured streams into per-click delays."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from bench.latency import (
    CLICK_SAMPLES,
    FRAME,
    PTIME,
    RATE,
    click,
    click_audio,
    click_delays,
    click_offset,
    find_clicks,
    jittered_times,
    quantile,
    rtp_stream,
    ulaw_decode,
    ulaw_encode,
)


def packets(pcm: np.ndarray, times: list[float], *, first_seq: int = 0, skip: tuple[int, ...] = ()) -> list:
    codes = ulaw_encode(pcm)
    out = []
    for n, when in enumerate(times):
        if n in skip:
            continue
        head = struct.pack(">BBHII", 0x80, 0, (first_seq + n) & 0xFFFF, n * FRAME, 1)
        out.append((when, head + codes[n * FRAME : (n + 1) * FRAME]))
    return out


def test_clicks_are_found_where_they_were_put() -> None:
    pcm = click_audio(6.0)
    expected = [int(round((1 + k) / PTIME)) * FRAME + click_offset(k) for k in range(5)]
    assert find_clicks(pcm, click()) == expected
    assert all(0 < click_offset(k) and click_offset(k) + CLICK_SAMPLES <= FRAME for k in range(200))


def test_a_quieter_click_in_mu_law_is_still_found_and_noise_is_not() -> None:
    pcm = ulaw_decode(ulaw_encode((click_audio(3.0) * 0.25).astype(np.int16)))
    assert len(find_clicks(pcm, click())) == 2
    noise = np.random.default_rng(3).normal(0, 3000, RATE * 2).astype(np.int16)
    assert find_clicks(noise, click()) == []


def test_jittered_times_stay_in_order_within_the_bound() -> None:
    times = jittered_times(500, 0.04)
    assert times == sorted(times)
    late = np.array(times) - np.arange(500) * PTIME
    assert late.min() >= 0 and late.max() <= 0.04 and late.std() > 0.005
    assert jittered_times(3, 0) == [0.0, PTIME, 2 * PTIME]


def test_rtp_stream_orders_by_unwrapped_sequence_and_marks_losses() -> None:
    pcm = click_audio(1.0)
    raw = packets(pcm, [n * PTIME for n in range(50)], first_seq=65530, skip=(10,))
    raw.insert(3, raw[3])  # a duplicate
    raw.append((9.0, b"\x80\x65" + bytes(10)))  # not RTP of PT 0
    stream = rtp_stream(raw)
    assert len(stream.pcm) == 50 * FRAME and stream.seqs[0] == 65530 and stream.seqs[-1] == 65530 + 49
    assert np.isnan(stream.times[10]) and np.count_nonzero(np.isnan(stream.times)) == 1
    assert stream.time_of(FRAME * 4 + 80) == pytest.approx(4 * PTIME + 80 / RATE)


@pytest.mark.parametrize(("ticks", "phase"), [(1, 0.003), (3, 0.0151), (4, 0.0199)])
def test_click_delays_split_into_phase_and_whole_ticks(ticks: int, phase: float) -> None:
    """A bridge that reads on a 20 ms tick ``phase`` after each packet arrives and sends the frame
    ``ticks`` ticks later: added delay = phase + ticks x 20 ms, for every click."""
    pcm = click_audio(5.0)
    n = len(pcm) // FRAME
    t0 = 100.0
    sent = rtp_stream(packets(pcm, [t0 + i * PTIME for i in range(n)]))
    delayed = np.concatenate([np.zeros(ticks * FRAME, np.int16), pcm])[: len(pcm)]
    received = rtp_stream(packets(delayed, [t0 + phase + i * PTIME for i in range(n)]))
    delays = click_delays(sent, received, click())
    assert len(delays) == 4
    for d in delays:
        assert d.added == pytest.approx(phase + ticks * PTIME, abs=1e-6)
        assert d.scheduled == pytest.approx(d.added, abs=1e-6)
        assert d.phase == pytest.approx(phase, abs=1e-6) and d.ticks == ticks


def test_a_late_packet_counts_from_its_arrival_and_from_the_schedule() -> None:
    pcm = click_audio(3.0)
    n = len(pcm) // FRAME
    arrival = [i * PTIME + (0.012 if i == 50 else 0.0) for i in range(n)]  # the first click's packet is late
    sent = rtp_stream(packets(pcm, arrival))
    delayed = np.concatenate([np.zeros(2 * FRAME, np.int16), pcm])[: len(pcm)]
    received = rtp_stream(packets(delayed, [0.015 + i * PTIME for i in range(n)]))
    first = click_delays(sent, received, click())[0]
    assert first.scheduled == pytest.approx(first.added + 0.012, abs=1e-6)
    assert first.phase == pytest.approx(0.003, abs=1e-6)


def test_quantile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 21)]
    assert (quantile(values, 0.5), quantile(values, 0.95), quantile(values, 0), quantile(values, 1)) == (
        10.0, 19.0, 1.0, 20.0)  # fmt: skip
