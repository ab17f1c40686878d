"""The per-tick media glue (the media owner, ``MixerMedia``): every leg's frame into the mixer, one mix, every
frame out.

Run by hand: ``.venv/bin/python bench/engine_tick.py [legs ...]``. Legs are fake RTP endpoints (a
ready 160-byte frame in, a counter out) so the figure is the glue plus the mix, not the sockets.
Printed per size: microseconds per 20 ms tick for (1) the mixer's tick alone, (2) the engine's
``MixerMedia.mix`` (batched ``write_rows`` + one output copy) and (3) the baseline measured in the same run:
the straightforward glue (one ``mixer.write`` and one ``out[i].tobytes()`` per leg); then the glue's
own cost (tick minus mix) for both and their ratio.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from bridge.conference.media import MixerMedia
from bridge.mixer.mixer import Mixer

ROUNDS = 200


class FakeRtp:
    def __init__(self, seed: int) -> None:
        self.frame = bytes((seed + i) % 256 for i in range(160))
        self.sent = 0

    def read_frame(self, now: float) -> bytes:
        return self.frame

    def write_frame(self, payload: bytes) -> None:
        self.sent += 1

    def send_dtmf(self, digit: str, duration_ms: int = 160) -> None: ...

    def stats(self) -> dict[str, Any]:
        return {"codec": "PCMU"}

    def close(self) -> None: ...


def naive(mixer: Mixer, legs: dict[int, FakeRtp]) -> None:
    for pid, rtp in legs.items():
        mixer.write(pid, rtp.read_frame(0.0))
    result = mixer.tick()
    for index, pid in enumerate(result.pids.tolist()):
        rtp = legs.get(pid)
        if rtp is not None:
            rtp.write_frame(result.out[index].tobytes())


def timed(fn: Any) -> float:
    fn()  # warm-up (layout rebuild)
    start = time.perf_counter()
    for _ in range(ROUNDS):
        fn()
    return (time.perf_counter() - start) / ROUNDS * 1e6


def main(sizes: list[int]) -> None:
    head = ("legs", "mix us", "media us", "naive us", "glue us", "naive glue", "ratio")
    print("".join(f"{h:>11}" for h in head))
    for legs_count in sizes:
        media = MixerMedia(Mixer())
        mixer = media.mixer
        endpoints = [FakeRtp(i) for i in range(legs_count)]
        legs = {media.attach(i % max(1, legs_count // 5), rtp): rtp for i, rtp in enumerate(endpoints)}
        mix = timed(mixer.tick)
        ours = timed(lambda media=media: media.mix(0.0))
        base = timed(lambda mixer=mixer, legs=legs: naive(mixer, legs))
        glue, base_glue = ours - mix, base - mix
        ratio = base_glue / glue if glue > 0 else float("inf")
        row = (legs_count, f"{mix:.0f}", f"{ours:.0f}", f"{base:.0f}", f"{glue:.0f}", f"{base_glue:.0f}")
        print("".join(f"{v:>11}" for v in row) + f"{ratio:>10.1f}x")
    print("(20 ms = 20000 us per tick; the machine is shared, so run it twice and compare ratios, not absolutes)")


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [100, 500, 1000, 2000])
