"""Mixer benchmark: microseconds per 20 ms tick and participants per core at 50% of a core.

    .venv/bin/python bench/mixer.py [--seconds 2] [--layouts 1x1000,300x5,mixed]

Layouts: ``1x1000`` (one conference, everyone unmuted: the worst case, every output is a distinct
N-1), ``300x5`` (small ICs, all unmuted), ``mixed`` (1,500 people: ICs of 3-10, rooms of 20-50, a
300-seat webinar with 5 talkers; about 25% muted overall). Input is speech-level noise (-20 dBov),
a different frame per participant and tick, PCMU (10% PCMA in ``mixed``), written with
``write_rows`` like a batch receiver would.

Baselines, measured in the same run:
- ``naive``: per-sample pure-Python N-1 mixer on a small layout, extrapolated per participant;
- ``per-conference``: the audioop way, one numpy decode/N-1/clip/encode call per participant and
  per conference (a Python loop per participant, numpy inside);
- ``audioop`` (Python <= 3.12 only): the same with the stdlib ``audioop`` calls.

"Participants per core at 50%": how many participants one core mixes while spending at most half
of every 20 ms tick (10 ms) on it: ``P * 10 ms / tick_time(P)``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bridge.mixer import Mixer, g711, limiter  # noqa: E402

BUDGET = 0.010  # half of a 20 ms tick
U8 = npt.NDArray[np.uint8]


def speech_like(rng: np.random.Generator, frames: int, dbov: float = -20.0) -> U8:
    """µ-law frames of band-limited noise at ``dbov`` RMS (codes distributed like speech, not uniformly)."""
    noise = rng.standard_normal((frames, 160))
    noise = noise + np.roll(noise, 1, axis=1)  # a touch of low-pass
    noise *= 32768 * 10 ** (dbov / 20) / noise.std()
    return g711.ulaw_encode(np.clip(noise, -32768, 32767).astype(np.int16))


def layout(name: str, rng: np.random.Generator) -> list[tuple[int, str, bool]]:
    """(conference, codec, muted) per participant."""
    if name != "mixed":
        confs, size = (int(v) for v in name.split("x"))
        return [(c, "PCMU", False) for c in range(confs) for _ in range(size)]
    else:
        people: list[tuple[int, str, bool]] = []
        conf = 0
        for _ in range(120):  # ICs of 3..10, everyone talks
            conf += 1
            people += [(conf, "PCMU", False) for _ in range(int(rng.integers(3, 11)))]
        for _ in range(8):  # rooms of 20..50, half muted
            conf += 1
            people += [(conf, "PCMU", bool(i % 2)) for i in range(int(rng.integers(20, 51)))]
        conf += 1
        people += [(conf, "PCMU", i >= 5) for i in range(300)]  # webinar
        people = [(c, "PCMA" if rng.random() < 0.1 else codec, m) for c, codec, m in people]
        return people[:1500]


def timeit(step: Callable[[], None], seconds: float) -> tuple[float, float]:
    """CPU seconds of this thread per call (median, 10th percentile) over ``seconds`` of repeated calls.

    The 10th percentile approximates the cost when no other process competes for the core's caches.

    CPU time, not wall time: the machine is shared, so wall time would include other processes.
    (Contention for caches and cores still inflates CPU time; see the README for the conditions.)
    """
    for _ in range(5):
        step()
    samples = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or len(samples) < 5:
        t0 = time.thread_time()
        step()
        samples.append(time.thread_time() - t0)
    return float(np.median(samples)), float(np.percentile(samples, 10))


def bench_batched(people: list[tuple[int, str, bool]], pool: U8, seconds: float) -> tuple[tuple[float, float], float]:
    mixer = Mixer()
    pids = np.array([mixer.add(c, codec=codec, muted=m) for c, codec, m in people], dtype=np.int64)
    n = len(pids)
    offsets = np.arange(n) * 7
    state = {"t": 0}

    def write() -> None:
        state["t"] += 1
        mixer.write_rows(pids, pool[(offsets + state["t"]) % len(pool)])

    def tick() -> None:
        write()
        mixer.tick()

    write_only = timeit(write, seconds / 4)[0]
    median, p10 = timeit(tick, seconds)
    return (median - write_only, p10 - write_only), write_only


def per_conference_mixer(people: list[tuple[int, str, bool]]) -> Callable[[list[bytes]], list[bytes]]:
    """The audioop-style baseline: per conference, per participant numpy calls."""
    confs: dict[int, list[int]] = {}
    for i, (c, _, _) in enumerate(people):
        confs.setdefault(c, []).append(i)
    dec = {codec: g711.DECODE_TABLES[codec].astype(np.int32) for codec in g711.CODECS}
    enc = dict(g711.ENCODE_TABLES)

    def mix(frames: list[bytes]) -> list[bytes]:
        out: list[bytes] = [b""] * len(frames)
        for members in confs.values():
            lin = {}
            total = np.zeros(160, dtype=np.int32)
            for i in members:
                codec, muted = people[i][1], people[i][2]
                x = dec[codec].take(np.frombuffer(frames[i], dtype=np.uint8))
                lin[i] = x
                if not muted:
                    total += x
            for i in members:
                codec, muted = people[i][1], people[i][2]
                own = total if muted else total - lin[i]
                out[i] = enc[codec].take(np.clip(own, -32768, 32767).astype(np.int16).view(np.uint16)).tobytes()
        return out

    return mix


def audioop_mixer(people: list[tuple[int, str, bool]]) -> Callable[[list[bytes]], list[bytes]] | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import audioop
        except ImportError:
            return None
    confs: dict[int, list[int]] = {}
    for i, (c, _, _) in enumerate(people):
        confs.setdefault(c, []).append(i)
    silence = bytes(320)

    def mix(frames: list[bytes]) -> list[bytes]:
        out: list[bytes] = [b""] * len(frames)
        for members in confs.values():
            lin = {i: audioop.ulaw2lin(frames[i], 2) for i in members}
            total = silence
            for i in members:
                if not people[i][2]:
                    total = audioop.add(total, lin[i], 2)  # saturating 16-bit add
            for i in members:
                own = total if people[i][2] else audioop.add(total, audioop.mul(lin[i], 2, -1), 2)
                out[i] = audioop.lin2ulaw(own, 2)
        return out

    return mix


def naive_mixer(people: list[tuple[int, str, bool]]) -> Callable[[list[bytes]], list[bytes]]:
    dec = {codec: [int(v) for v in g711.DECODE_TABLES[codec]] for codec in g711.CODECS}
    enc = {codec: [int(v) for v in limiter.LIMIT_ENCODE[codec]] for codec in g711.CODECS}

    members: dict[int, list[int]] = {}
    for i, (conf, _, _) in enumerate(people):
        members.setdefault(conf, []).append(i)

    def mix(frames: list[bytes]) -> list[bytes]:
        lin = [[dec[codec][b] for b in frames[i]] for i, (_, codec, _) in enumerate(people)]
        out = []
        for i, (conf, codec, _) in enumerate(people):
            frame = bytearray(160)
            for k in range(160):
                total = 0
                for j in members[conf]:
                    if j != i and not people[j][2]:
                        total += lin[j][k]
                frame[k] = enc[codec][min(max((total >> 2) + 32768, 0), 65535)]
            out.append(bytes(frame))
        return out

    return mix


def bench_frames_baseline(
    make: Callable[[list[tuple[int, str, bool]]], Callable[[list[bytes]], list[bytes]] | None],
    people: list[tuple[int, str, bool]],
    pool: U8,
    seconds: float,
) -> tuple[float, float] | None:
    mix = make(people)
    if mix is None:
        return None
    rows = [bytes(pool[(i * 7) % len(pool)]) for i in range(len(people))]
    return timeit(lambda: mix(rows) and None, seconds)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=2.0, help="measuring time per figure")
    parser.add_argument("--layouts", default="1x1000,300x5,mixed")
    args = parser.parse_args()
    rng = np.random.default_rng(5)
    pool = speech_like(rng, 4096)
    print(
        f"numpy {np.__version__}, python {sys.version.split()[0]}, load average {os.getloadavg()[0]:.2f}; "
        "CPU time per tick of this thread: median (and 10th percentile)"
    )
    print(
        f"{'layout':>8} {'P':>5} {'mixer':>15} {'us/tick':>9} {'(p10)':>8} {'us/particip.':>12} "
        f"{'P/core@50%':>11} {'(p10)':>7} {'ratio':>7}"
    )

    naive_small = layout("2x5", rng)
    naive_t = bench_frames_baseline(naive_mixer, naive_small, pool, min(args.seconds, 1.0))
    assert naive_t is not None
    for name in args.layouts.split(","):
        people = layout(name, rng)
        n = len(people)
        batched, write_cost = bench_batched(people, pool, args.seconds)
        rows: list[tuple[str, tuple[float, float]]] = [("batched", batched)]
        per_conf = bench_frames_baseline(per_conference_mixer, people, pool, args.seconds / 2)
        assert per_conf is not None
        rows.append(("per-conference", per_conf))
        audioop_t = bench_frames_baseline(audioop_mixer, people, pool, args.seconds / 2)
        if audioop_t is not None:
            rows.append(("audioop", audioop_t))
        # The naive mixer is O(P * conference size): extrapolate its per-(listener, talker, sample) cost.
        pairs_small = sum(sum(1 for c2, _, _ in naive_small if c2 == c) for c, _, _ in naive_small)
        pairs = sum(size * size for size in np.unique([c for c, _, _ in people], return_counts=True)[1])
        rows.append(("naive (extrap.)", (naive_t[0] * pairs / pairs_small, naive_t[1] * pairs / pairs_small)))
        for label, (median, p10) in rows:
            print(
                f"{name:>8} {n:>5} {label:>15} {median * 1e6:>9.0f} {p10 * 1e6:>8.0f} {median * 1e6 / n:>12.3f} "
                f"{n * BUDGET / median:>11.0f} {n * BUDGET / p10:>7.0f} {median / batched[0]:>6.1f}x"
            )
        print(f"{'':>8} {'':>5} {'(write_rows)':>15} {write_cost * 1e6:>9.0f} {write_cost * 1e6 / n:>12.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
