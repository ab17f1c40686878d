"""Launch latency of an Instant Conference texted by SMS (issue 16): time from the MO ``deliver_sm`` on the
wire to the first and the last INVITE on the wire. Run by hand, as root (raw capture socket):

    .venv/bin/python bench/ic_launch.py                          # 100 members, 10 launches, both sizes
    .venv/bin/python bench/ic_launch.py --members 100 --launches 20 --cps 1000
    .venv/bin/python bench/ic_launch.py --profile /tmp/ic-prof   # py-spy the engine over the launches

The real appliance (``bridge run --no-web``, the IC harness's config with SMPP on), the node SMSC simulator
(``tests/peers/smsc_sim.js``) and one SIPp UAS answering every number behind the trunk. IC slot 1 has
``--members`` phone numbers, slot 2 one (the same-run baseline: the fixed cost of a launch). The trunk group's
``calls_per_second`` is ``--cps`` (default 1000: the dial pacer lets a second's worth through at once, so it
does not pace 100 calls). Each launch is ``IC1`` (or ``IC2``) texted from the subscriber's mobile; the bench
waits until every leg is connected, ends the conference over the control API, waits until it is gone, and
launches again. Times come from a capture on ``lo`` (``bench/capture.py``, kernel timestamps): the TCP segment
carrying the ``deliver_sm`` with the text, the first copy of each INVITE (by Call-ID) to the trunk's port, and
the ``submit_sm`` carrying the reply.

``--profile DIR`` runs ``py-spy record --nonblocking`` on the engine over the big launches and prints the
engine functions with the most samples (inclusive); a profiled run is slower, measure and profile apart.
Measurements take the lock ``/tmp/bridge-conference-load.lock`` (the CPU benchmarks' lock).
"""

from __future__ import annotations

import argparse
import fcntl
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root, for bench.* and tests.* helpers

from bench.capture import IPPROTO_TCP, IPPROTO_UDP, Capture, Packet, Rule  # noqa: E402
from bridge.db.models import Company, DnisKind, DnisNumber, IcMember, InstantConference, Subscriber  # noqa: E402
from tests.integration import ic_harness  # noqa: E402
from tests.integration.ic_harness import POOL1, SUB, Appliance, Phones, free_rtp_range, wait_for  # noqa: E402
from tests.integration.smpp_harness import Smsc  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LOCK = Path(tempfile.gettempdir()) / "bridge-conference-load.lock"
PY_SPY = ROOT / ".venv" / "bin" / "py-spy"
DELIVER_SM, SUBMIT_SM = 0x00000005, 0x00000004
POOL2 = "+15550102"


def answering_after(ms: int) -> None:
    """Make the harness's phones ring at once and answer ``ms`` later (0: at once, as the IC tests' phones)."""
    plain = ic_harness.uas_scenario
    if ms <= 0:
        return

    def scenario(refuse: str | None) -> str:
        text = plain(refuse)
        ringing_sent = text.index("  </send>\n") + len("  </send>\n")
        return text[:ringing_sent] + f'  <pause milliseconds="{ms}"/>\n' + text[ringing_sent:]

    ic_harness.uas_scenario = scenario


def member_numbers(count: int, base: int = 15552000000) -> tuple[str, ...]:
    return tuple(f"+{base + i}" for i in range(1, count + 1))


def seed(bridge: Appliance, members: int) -> None:
    """Company, subscriber, IC1 with ``members`` phones on POOL1, IC2 with one phone on POOL2."""
    with bridge.sessions() as s:
        sub = Subscriber(company=Company(name="Bench Co"), name="Sam", mobile=SUB)
        s.add(sub)
        for slot, number, phones, pins in (
            (1, POOL1, member_numbers(members), ("111111", "222222")),
            (2, POOL2, member_numbers(1, 15553000000), ("333333", "444444")),
        ):
            pool = DnisNumber(number=number, kind=DnisKind.POOL, position=slot)
            s.add(pool)
            s.flush()
            ic = InstantConference(
                subscriber=sub, slot=slot, name=f"ic{slot}", dnis_id=pool.id, activation_pin=pins[0], user_pin=pins[1]
            )
            ic.members = [IcMember(position=i, phone=n) for i, n in enumerate(phones)]
            s.add(ic)
        s.commit()  # fmt: skip


def configure(bridge: Appliance, *, cps: float, media_path: str, legs: int) -> None:
    """The harness's config with this bench's pacing, media path and an RTP range for ``legs`` legs."""
    text = bridge.config_path.read_text()
    text = re.sub(r"calls_per_second = [0-9.]+", f"calls_per_second = {cps}", text)
    text = re.sub(r'media_path = "\w+"', f'media_path = "{media_path}"', text)
    text = re.sub(r'rtp_ports = "[0-9-]+"', f'rtp_ports = "{free_rtp_range(2 * legs + 20)}"', text)
    # The phones (a SIPp UAS scenario) answer INVITEs only: OPTIONS keepalives would mark the trunk down while
    # the bench waits for the CPU lock.
    text = text.replace("[sip]\n", "[sip]\noptions_interval_s = 86400\n", 1)
    bridge.config_path.write_text(text)


def smpp_command(payload: bytes) -> int | None:
    return int.from_bytes(payload[4:8], "big") if len(payload) >= 16 else None


def call_id(payload: bytes) -> str | None:
    match = re.search(rb"^(?:Call-ID|i)\s*:\s*(\S+)", payload, re.M | re.I)
    return match[1].decode() if match else None


def launch_times(packets: list[Packet], *, since: float, text: bytes, smsc_port: int) -> dict[str, Any] | None:
    """From the capture: the MO's time, each Call-ID's first INVITE and the first reply after ``since``."""
    mo = next((p.time for p in packets if p.time >= since and p.proto == IPPROTO_TCP and p.src[1] == smsc_port
               and smpp_command(p.payload) == DELIVER_SM and text in p.payload), None)  # fmt: skip
    if mo is None:
        return None
    invites: dict[str, float] = {}
    reply = None
    for p in packets:
        if p.time < mo:
            continue
        if p.proto == IPPROTO_UDP and p.payload.startswith(b"INVITE "):
            cid = call_id(p.payload)
            if cid is not None and cid not in invites:
                invites[cid] = p.time
        elif reply is None and p.proto == IPPROTO_TCP and p.dst[1] == smsc_port:
            if smpp_command(p.payload) == SUBMIT_SM:
                reply = p.time
    times = sorted(invites.values())
    return {"mo": mo, "invites": [t - mo for t in times], "reply": None if reply is None else reply - mo}


def invites_since(capture: Capture, since: float) -> int:
    packets = list(capture.packets)
    return len({call_id(p.payload) for p in packets if p.time >= since and p.payload.startswith(b"INVITE ")})


def one_launch(
    smsc: Smsc,
    bridge: Appliance,
    capture: Capture,
    *,
    slot: int,
    calls: int,
    smsc_port: int,
    spy_out: Path | None = None,
) -> dict[str, Any]:
    """Text ``IC<slot>``, wait for ``calls`` connected legs, end the conference, wait until it is gone. With
    ``spy_out``, py-spy records the engine from just before the MO until the last INVITE left."""
    text = f"IC{slot}"
    spy = None
    if spy_out is not None:
        assert bridge.proc is not None
        spy = profile(bridge.proc.pid, spy_out)
        time.sleep(1.0)  # py-spy attached
    assert bridge.proc is not None
    cpu = cpu_seconds(bridge.proc.pid)
    since = time.time()
    smsc.mo(text, source=SUB)
    deadline = time.monotonic() + 60
    while invites_since(capture, since) < calls:  # polled finely: the engine's CPU up to the last INVITE
        if time.monotonic() > deadline:
            raise SystemExit(f"{calls} INVITEs of {text} did not all leave within 60 s")
        time.sleep(0.005)
    cpu = cpu_seconds(bridge.proc.pid) - cpu
    if spy is not None:
        spy.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        spy.wait(30)

    def connected() -> list[dict[str, Any]] | None:
        confs = bridge.conferences()
        legs = [leg for leg in confs[0]["legs"] if leg["status"] == "connected"] if confs else []
        return confs if len(legs) >= calls else None

    (conf,) = wait_for(connected, 60, f"{calls} connected legs")
    bridge.client.end(conf["run_id"])
    wait_for(lambda: not bridge.conferences(), 30, "the conference to end")
    result = launch_times(capture.packets, since=since, text=text.encode(), smsc_port=smsc_port)
    if result is None or len(result["invites"]) < calls:
        raise SystemExit(f"capture missed the MO or INVITEs of {text}: {result}")
    time.sleep(0.5)  # the phones' BYE answers and the CDR writes settle before the next launch
    result["cpu"] = cpu
    return result


def cpu_seconds(pid: int) -> float:
    """utime + stime of every thread of ``pid`` (s)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def profile(pid: int, out: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [str(PY_SPY), "record", "--pid", str(pid), "--nonblocking", "--rate", "250", "--format", "raw",
         "--output", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def top_frames(paths: list[Path], limit: int = 30) -> list[tuple[str, int, int]]:
    """(frame, inclusive samples, self samples) of the engine's own code, most inclusive first."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    lines = [line for path in paths for line in path.read_text(errors="replace").splitlines()]
    for line in lines:
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [f for f in stack.split(";") if "bridge/" in f or "sippy" in f or "sqlalchemy" in f]
        for frame in set(frames):
            inclusive[frame] += n
        leaf = stack.split(";")[-1]
        own[leaf] += n
    rows = [(f, n, own.get(f, 0)) for f, n in inclusive.most_common(limit)]
    return [("(all samples)", total, 0), *rows]


def quantiles(values: list[float]) -> tuple[float, float, float]:
    """median, p95 (nearest rank), max in ms."""
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, max(0, round(0.95 * len(ordered)) - 1))]
    return 1000 * statistics.median(ordered), 1000 * p95, 1000 * ordered[-1]


def machine_busy(window: float = 1.0) -> float:
    """% of one core the whole machine is busy over ``window`` s (from /proc/stat)."""

    def read() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        return sum(fields), fields[3] + fields[4]

    total0, idle0 = read()
    time.sleep(window)
    total1, idle1 = read()
    cores = os.cpu_count() or 1
    return 100.0 * cores * (1 - (idle1 - idle0) / max(1, total1 - total0))


def report(label: str, runs: list[dict[str, Any]]) -> None:
    first = quantiles([r["invites"][0] for r in runs])
    last = quantiles([r["invites"][-1] for r in runs])
    replies = [r["reply"] for r in runs if r["reply"] is not None]
    reply = quantiles(replies) if replies else (float("nan"),) * 3
    calls = len(runs[0]["invites"])
    print(
        f"  {label:>22}  {calls:>5}  {first[0]:8.1f} {first[1]:8.1f}  {last[0]:8.1f} {last[1]:8.1f} {last[2]:8.1f}"
        f"  {reply[0]:8.1f}  {1000 * statistics.median(r['invites'][-1] - r['invites'][0] for r in runs):8.1f}"
        f"  {1000 * statistics.median(r['cpu'] for r in runs):8.0f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=100, help="phones in the big IC (plus the subscriber)")
    parser.add_argument("--launches", type=int, default=10, help="launches of each IC")
    parser.add_argument("--cps", type=float, default=1000.0, help="the trunk group's calls_per_second")
    parser.add_argument("--media-path", choices=("batched", "socket"), default="batched")
    parser.add_argument("--profile", type=Path, default=None, help="py-spy the big launches into DIR/launch.txt")
    parser.add_argument(
        "--answer-after-ms", type=int, default=0, help="the phones ring at once and answer this much later (0: at once)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: the capture uses a raw AF_PACKET socket on lo")
    for tool in ("sipp", "node"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} not found: run `make deps`")
    work = Path(tempfile.mkdtemp(prefix="iclaunch-"))
    smsc = Smsc(work)
    smsc.start()
    answering_after(args.answer_after_ms)
    phones = Phones(work)
    bridge = Appliance(work, trunk_port=phones.port, smpp_port=smsc.port,
                       conference={"max_participants": args.members + 10, "hysteresis_s": 5})  # fmt: skip
    configure(bridge, cps=args.cps, media_path=args.media_path, legs=args.members + 1)
    seed(bridge, args.members)
    rules = [Rule(IPPROTO_TCP, "src", smsc.port), Rule(IPPROTO_TCP, "dst", smsc.port),
             Rule(IPPROTO_UDP, "dst", phones.port)]  # fmt: skip
    capture = Capture(rules)
    results: dict[str, list[dict[str, Any]]] = {"big": [], "baseline": []}
    busy: list[float] = []
    try:
        bridge.start()
        wait_for(lambda: smsc.bound() >= 1, 30, "the bridge bound to the SMSC")
        assert bridge.proc is not None
        print(f"engine pid {bridge.proc.pid}, media path {args.media_path}, cps {args.cps}, work {work}", flush=True)
        with open(LOCK, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            busy.append(machine_busy())
            for i in range(args.launches):  # interleaved, so both sizes see the same machine
                for key, slot, calls in (("baseline", 2, 2), ("big", 1, args.members + 1)):
                    spy_out = None
                    if key == "big" and args.profile is not None:
                        args.profile.mkdir(parents=True, exist_ok=True)
                        spy_out = args.profile / f"launch-{i + 1}.txt"
                    results[key].append(one_launch(smsc, bridge, capture, slot=slot, calls=calls,
                                                   smsc_port=smsc.port, spy_out=spy_out))  # fmt: skip
                    run = results[key][-1]
                    print(
                        f"  launch {i + 1} IC{slot}: first INVITE {1000 * run['invites'][0]:.1f} ms, "
                        f"last {1000 * run['invites'][-1]:.1f} ms ({len(run['invites'])} INVITEs)",
                        flush=True,
                    )
            busy.append(machine_busy())
    finally:
        capture.stop()
        bridge.stop()
        phones.stop()
        smsc.stop()
    print(
        f"\nIC launch latency, {args.launches} launches each, media path {args.media_path}, "
        f"calls_per_second {args.cps}, phones answer after {args.answer_after_ms} ms;\n"
        f"  machine busy {busy[0]:.0f} / {busy[-1]:.0f} % of one core (before / after),"
        f" load average {os.getloadavg()[0]:.2f}"
    )
    print(
        f"  {'':>22}  {'calls':>5}  {'MO->first INVITE ms':>17}  {'MO->last INVITE ms':>26}  {'MO->reply':>8}"
        f"  {'spread':>8}  {'CPU ms':>8}"
    )
    print(
        f"  {'':>22}  {'':>5}  {'median':>8} {'p95':>8}  {'median':>8} {'p95':>8} {'max':>8}  {'median':>8}"
        f"  {'median':>8}  {'median':>8}"
    )
    report(f"IC of {args.members} members", results["big"])
    report("baseline: IC of 1", results["baseline"])
    print("  spread: first to last INVITE; CPU ms: the engine's CPU time (all threads) from the MO to the last INVITE")
    if args.profile is not None:
        print(
            f"\nengine frames with the most samples from 1 s before the MO to the last INVITE, inclusive and"
            f" self (py-spy at 250 Hz, {args.profile}/launch-*.txt):"
        )
        for frame, n, own in top_frames(sorted(args.profile.glob("launch-*.txt"))):
            print(f"  {n:6d} {own:6d}  {frame}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
