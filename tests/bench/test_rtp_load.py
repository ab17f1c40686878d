"""The large-conference load's pure parts: the leg <-> loopback address map and the per-leg return score."""

from __future__ import annotations

import numpy as np

from bench.rtp_load import ReturnScore, host_leg, host_text, leg_host


def test_leg_addresses_round_trip_and_stay_in_127_1() -> None:
    legs = np.arange(5000)
    hosts = leg_host(legs)
    assert len(set(hosts.tolist())) == len(legs)
    assert host_text(int(hosts[0])) == "127.1.0.1"
    assert host_text(int(hosts[249])) == "127.1.0.250"
    assert host_text(int(hosts[250])) == "127.1.1.1"
    assert (host_leg(hosts) == legs).all()
    outside = np.array([int(leg_host(0)) - 1, 0x7F000001, int(leg_host(249)) + 1], dtype=np.uint32)
    assert (host_leg(outside) == -1).all()  # 127.1.0.0, 127.0.0.1, 127.1.0.251


def test_score_counts_per_leg_across_batches_in_any_order() -> None:
    score = ReturnScore(2, 10.0, 11.0)
    t = 10.0 + 0.02 * np.arange(50)
    seq = np.arange(100, 150)
    # leg 0: every packet, in two reads (arrival order across reads, any order inside one);
    # leg 1: packets 10 and 11 missing, and its sequence numbers wrap
    rng = np.random.default_rng(0)
    first, second = rng.permutation(20), 20 + rng.permutation(30)
    seq1 = (seq + 65500) & 0xFFFF
    keep1 = np.array([i not in (10, 11) for i in range(50)])
    for part in (first, second):
        score.add(np.zeros(len(part), dtype=np.int64), seq[part], t[part])
    score.add(np.ones(int(keep1.sum()), dtype=np.int64), seq1[keep1], t[keep1])
    summary = score.summary()
    assert score.count.tolist() == [50, 48]
    assert score.lost.tolist() == [0, 2]
    assert summary["seq_lost_total"] == 2
    assert summary["gaps_over_2ptime"] == 1  # the 60 ms hole of leg 1
    assert summary["pps_mean"] == 49.0 and summary["pps_min"] == 48.0
    assert summary["interarrival_ms_p50"] in (20.0, 20.1)  # upper edge of the 0.1 ms bin holding 20 ms
    assert abs(float(summary["interarrival_ms_max"]) - 60.0) < 1e-6


def test_score_ignores_packets_outside_the_window_and_unknown_legs() -> None:
    score = ReturnScore(3, 10.0, 11.0)
    score.add(np.array([0, 0, -1, 7, 1]), np.array([1, 2, 3, 4, 5]), np.array([9.99, 11.0, 10.5, 10.5, 10.5]))
    assert score.count.tolist() == [0, 1, 0]
    summary = score.summary()
    assert summary["streams_silent"] == 2
    assert summary["interarrival_ms_p99"] is None  # one packet per leg: no inter-arrival time yet
