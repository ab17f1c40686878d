"""SIP call-setup benchmark: the bridge dialling a SIPp UAS, against SIPp UAC -> the same UAS (baseline).

    .venv/bin/python bench/sip_calls.py [--calls 300] [--concurrency 50]

Each call is INVITE -> 180 -> 200 -> ACK -> BYE -> 200, with an RTP endpoint opened per leg on the bridge
side (what a real dial-out costs). Figures: call setups per second (wall clock, first INVITE to last BYE
answered) and CPU seconds per call of the calling process (the bridge process: asyncio thread + sippy
thread; the baseline: the SIPp UAC process), plus the ratios. Both runs use the same UAS scenario,
concurrency and call count, in the same run of this script.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "integration"))

from sip_peers import (  # noqa: E402 - test helpers live with the integration tests
    SIPP,
    Recorder,
    free_udp_port,
    make_config,
    rtp_range,
    sipp_common,
    start_sipp,
    started_service,
    stop_process,
    uas_scenario,
    wait_process,
)

from bridge.sip.events import LegAnswered, LegEnded, LegEvent, LegFailed  # noqa: E402


async def bridge_run(workdir: Path, calls: int, concurrency: int) -> tuple[float, float, int]:
    uas_port = free_udp_port()
    uas = start_sipp(
        uas_scenario(), workdir, "uas_bridge", ["-m", str(calls), *sipp_common(uas_port, free_udp_port(even=True))]
    )
    config = make_config(
        sip_port=free_udp_port(),
        rtp=rtp_range(4 * concurrency + 40),
        trunk_groups=[{"name": "pstn", "gateways": [f"127.0.0.1:{uas_port}"]}],
    )
    recorder = Recorder()
    service = await started_service(config, recorder)
    await asyncio.sleep(0.5)
    state = {"dialed": 0, "done": 0, "failed": 0}
    finished = asyncio.Event()

    def dial() -> None:
        state["dialed"] += 1
        service.dial(called=f"1555{state['dialed']:07d}", calling="+15551230001")

    def on_event(event: LegEvent) -> None:
        if isinstance(event, LegAnswered):
            service.hangup(event.leg)
        elif isinstance(event, LegEnded | LegFailed):
            state["done"] += 1
            state["failed"] += isinstance(event, LegFailed)
            if state["dialed"] < calls:
                dial()
            elif state["done"] == calls:
                finished.set()

    recorder.hooks.append(on_event)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for _ in range(min(concurrency, calls)):
        dial()
    await asyncio.wait_for(finished.wait(), 300)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    uas_rc = await wait_process(uas, 30)
    await service.stop()
    stop_process(uas)
    return wall, cpu, state["failed"] if uas_rc == 0 else state["failed"] + 1000 * uas_rc


async def sipp_run(workdir: Path, calls: int, concurrency: int) -> tuple[float, float, int]:
    uas_port = free_udp_port()
    uas = start_sipp(
        uas_scenario(), workdir, "uas_sipp", ["-m", str(calls), *sipp_common(uas_port, free_udp_port(even=True))]
    )
    await asyncio.sleep(0.5)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall0 = time.perf_counter()
    uac_args = ["-sn", "uac", "-m", str(calls), "-l", str(concurrency), "-r", "10000", "-d", "0"]
    proc = await asyncio.create_subprocess_exec(
        SIPP, f"127.0.0.1:{uas_port}", *uac_args, *sipp_common(free_udp_port(), free_udp_port(even=True)),
        cwd=workdir, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    rc = await proc.wait()
    wall = time.perf_counter() - wall0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    await wait_process(uas, 30)
    stop_process(uas)
    return wall, cpu, 0 if rc == 0 else -1


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sip-bench-") as tmp:
        workdir = Path(tmp)
        b_wall, b_cpu, b_failed = await bridge_run(workdir, args.calls, args.concurrency)
        s_wall, s_cpu, s_rc = await sipp_run(workdir, args.calls, args.concurrency)
    n = args.calls
    print(f"calls={n} concurrency={args.concurrency}")
    print(
        f"bridge -> SIPp UAS : {n / b_wall:8.1f} setups/s  {1000 * b_cpu / n:7.2f} ms CPU/call  failed={b_failed}"
        " (+1000 x SIPp UAS exit code if it saw errors)"
    )
    print(
        f"SIPp UAC -> UAS    : {n / s_wall:8.1f} setups/s  {1000 * s_cpu / n:7.2f} ms CPU/call  (baseline, rc={s_rc})"
    )
    print(f"ratio bridge/baseline: rate x{(n / b_wall) / (n / s_wall):.2f}, CPU/call x{b_cpu / max(s_cpu, 1e-9):.2f}")


if __name__ == "__main__":
    asyncio.run(main())
