"""The standard SIPp conference load against the appliance (issue 9). Run by hand, as root:

    .venv/bin/python bench/conference_load.py                    # every size below
    .venv/bin/python bench/conference_load.py 1x200 40x5         # chosen sizes
    .venv/bin/python bench/conference_load.py --legs 500 1000    # big single-room... sizes ("as many as sustained")

It writes a config with meet-me rooms 1001..1040 (no PIN) into a temporary data dir, starts ``bridge run``
(SIP on a free port, SMPP and the portal off), and for each size runs ``bench/load/run_load.sh`` — the
bridge-agnostic load from ``../shared/peers/load`` copied verbatim: N SIPp calls into R rooms, continuous 20 ms
PCMU, an RTP sink scoring what the bridge sends back and a /proc CPU sampler. After each CPU window it asks
the engine's control API for the mixer's tick lateness. Figures are printed as a table next to the
reference measured for a widely deployed C bridge on this kind of machine with exactly this load
(0.21 % of one core per participant at 1x200, 0.26 % at 40x5).

Baseline measured in the same run: the idle engine's CPU (no calls, ``--idle-window`` s) right after start;
``net%/part`` subtracts it. ``busy`` is the whole machine (% of one core, from /proc/stat idle time) over the
window: on a shared machine it shows how much else was running. Runs of this script are serialised by a
lock file (two loads at once would collide on SIPp's media ports 30000-39999).

``--profile DIR`` also runs ``py-spy record`` (``.venv/bin/py-spy``, --threads --nonblocking) over each
window and writes ``DIR/<size>.txt`` (collapsed stacks) and ``DIR/<size>.svg``; profiled runs cost more
CPU, so measure and profile in separate runs.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
LOAD = ROOT / "bench" / "load"
BRIDGE = ROOT / ".venv" / "bin" / "bridge"
SIZES = ["1x10", "1x50", "1x100", "1x200", "10x5", "40x5"]
REFERENCE = {"1x200": 0.21, "40x5": 0.26}  # % of one core per participant, C bridge, same load, same machine kind
LOCK = Path(tempfile.gettempdir()) / "bridge-conference-load.lock"
PY_SPY = ROOT / ".venv" / "bin" / "py-spy"
PROFILE_RATE = 200


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(
    data_dir: Path, sip_port: int, control_port: int, media_path: str | None = None, media_priority: int = 0
) -> Path:
    """Rooms 1001..1040 without PIN. The bridge's RTP range 20000-29999 stays below the kernel's ephemeral
    range (32768-60999: every other program's port-0 sockets land there and made whole calls fail with
    PortsExhausted when the range was 40000-49999) and away from SIPp's media ports 30000-39999."""
    rooms = "\n".join(
        f'[[room]]\nnumber = "{1000 + r}"\nname = "Load room {r}"\nmax_members = 2500\n' for r in range(1, 41)
    )
    path = data_dir / "bridge.toml"
    path.write_text(
        f"""
[node]
name = "bench"
data_dir = "{data_dir}"
[smpp]
enabled = false
[sip]
listen = "127.0.0.1:{sip_port}"
public_address = "127.0.0.1"
rtp_ports = "20000-29999"
{f'media_path = "{media_path}"' if media_path else ""}
media_priority = {media_priority}
antiflood_requests = 100000
rtp_timeout_s = 120
[[trunk_group]]
name = "load"
gateways = ["127.0.0.1:25060"]
[conference]
max_participants = 2500
[web]
enabled = false
[control]
listen = "127.0.0.1:{control_port}"
token = "bench"
[cdr]
push_enabled = false
feed_listen = ""
{rooms}
"""
    )
    return path


def control_status(control_port: int) -> dict[str, object]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{control_port}/status", headers={"Authorization": "Bearer bench"}
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return dict(json.load(response))


def wait_until_idle(control_port: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        mixer = control_status(control_port).get("mixer", {})
        if isinstance(mixer, dict) and mixer.get("participants", 0) == 0:
            return
        time.sleep(1)
    raise SystemExit("the bridge still has participants after the load ended")


def idle_cpu(pid: int, window: float, load_dir: Path) -> float:
    """% of one core the engine uses with no calls (the same-run baseline)."""
    out = subprocess.run(
        [sys.executable, "cpu_sample.py", "--window", str(window), f"bridge={pid}"],
        cwd=load_dir,
        check=True,
        capture_output=True,
        text=True,
    )
    return float(json.loads(out.stdout)["bridge"]["cpu_pct_of_one_core"])


def thread_ticks(pid: int) -> dict[str, int]:
    """utime+stime clock ticks of the main thread (asyncio: RTP, tick, service) and of the other threads
    together (sippy's SIP thread, the CDR scheduler...): Python does not name OS threads, so the main thread
    is told apart by its id."""
    out: dict[str, int] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            data = (task / "stat").read_text()
        except OSError:
            continue
        name = "main" if task.name == str(pid) else "other threads"
        rest = data[data.rindex(")") + 2 :].split()
        out[name] = out.get(name, 0) + int(rest[11]) + int(rest[12])
    return out


def wakeups(pid: int) -> int:
    """Voluntary context switches of the main thread: each is one sleep in epoll_wait (a loop wake-up)."""
    for line in Path(f"/proc/{pid}/task/{pid}/status").read_text().splitlines():
        if line.startswith("voluntary_ctxt_switches:"):
            return int(line.split()[1])
    return 0


def thread_window(pid: int, delay: float, window: int, into: dict[str, float]) -> threading.Thread:
    """Fill ``into`` with each thread's CPU (% of one core) over the window."""

    def run() -> None:
        time.sleep(delay)
        t0, a, w0 = time.monotonic(), thread_ticks(pid), wakeups(pid)
        time.sleep(window)
        b, dt, w1 = thread_ticks(pid), time.monotonic() - t0, wakeups(pid)
        hz = os.sysconf("SC_CLK_TCK")
        into.update({name: round(100.0 * (b[name] - a.get(name, 0)) / (hz * dt), 2) for name in b})
        into["main wake-ups/s"] = round((w1 - w0) / dt)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def profile_window(pid: int, delay: float, window: int, out: Path) -> threading.Thread:
    """py-spy over the CPU window: collapsed stacks (``.txt``) and a flame graph (``.svg``)."""

    def run() -> None:
        time.sleep(delay)
        for fmt, suffix in (("raw", ".txt"), ("flamegraph", ".svg")):
            subprocess.run(
                [str(PY_SPY), "record", "--pid", str(pid), "--duration", str(window // 2), "--rate", str(PROFILE_RATE),
                 "--threads", "--nonblocking", "--format", fmt, "--output", str(out) + suffix],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False,
            )  # fmt: skip

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


#: (category, substrings any of which puts a main-thread sample in it); first match wins, leaf side first.
CATEGORIES: list[tuple[str, tuple[str, ...]]] = [
    ("tick: rtp.read_frame (jitter buffer)", ("RtpEndpoint.read_frame",)),
    ("tick: rtp.write_frame (build + sendto)", ("RtpEndpoint.write_frame",)),
    ("tick: mixer.write (row copy)", ("Mixer.write ",)),
    ("tick: mixer.tick (N-1 mix)", ("Mixer.tick ",)),
    ("tick: service.poll", ("ConferenceService.poll",)),
    ("tick: engine loop over legs", ("Engine._tick",)),
    ("rx: MediaSession.receive_rtp", ("MediaSession.receive_rtp",)),
    ("rx: asyncio _read_ready + recvfrom", ("_SelectorDatagramTransport._read_ready",)),
    ("rtcp + 1 s housekeeping", ("_on_rtcp", "_housekeeping")),
    ("control API / db", ("control", "sqlalchemy")),
    ("asyncio loop (select, handles)", ("_run_once",)),
]


def summarize_profile(path: Path, rate: int, seconds: float) -> list[tuple[str, float]]:
    """% of one core per category from py-spy's collapsed stacks (``--format raw --threads``)."""
    totals: dict[str, float] = {}
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        frames = stack.split(";")
        thread = frames[0].split(": ", 1)[-1] if frames else "?"
        if thread != "MainThread":
            key = f"thread {thread}"
        else:
            key = "main: other"
            for frame in reversed(frames):
                hit = next((name for name, keys in CATEGORIES if any(k in frame + " " for k in keys)), None)
                if hit is not None:
                    key = hit
                    break
        totals[key] = totals.get(key, 0.0) + int(count)
    scale = 100.0 / (rate * seconds)
    return sorted(((k, v * scale) for k, v in totals.items()), key=lambda kv: -kv[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sizes", nargs="*", help="RxP sizes (rooms x per room); default: the standard set")
    parser.add_argument("--legs", nargs="*", type=int, default=[], help="extra single-room sizes, e.g. 500 1000 2000")
    parser.add_argument("--hold-ms", type=int, default=0, help="call hold time (default: fits the window)")
    parser.add_argument("--window", type=int, default=20, help="CPU window in seconds")
    parser.add_argument("--silent", action="store_true", help="replay silence instead of the tone")
    parser.add_argument("--idle-window", type=int, default=10, help="idle-engine baseline window in seconds")
    parser.add_argument("--profile", type=Path, default=None, help="py-spy each window into this directory")
    parser.add_argument(
        "--bridge-src", type=Path, default=None, help="run the engine from this source tree (an older revision)"
    )
    parser.add_argument(
        "--media-path", choices=("batched", "socket"), default=None,
        help="sip.media_path of the engine (default: the engine's default); run both for a same-window ratio",
    )
    parser.add_argument(
        "--media-priority", type=int, default=0, help="sip.media_priority of the engine (SCHED_RR 1-99; 0: off)"
    )  # fmt: skip
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: SIPp play_pcap_audio needs a raw socket")
    for tool in ("sipp",):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} not found: run `make deps`")
    sizes = [tuple(map(int, s.split("x"))) for s in (args.sizes or ([] if args.legs else SIZES))]
    sizes += [(r, legs // r) for legs in args.legs for r in (max(1, legs // 50),)]

    work = Path(tempfile.mkdtemp(prefix="confload-"))
    load_dir = work / "load"
    shutil.copytree(LOAD, load_dir)
    pcap = "pcmu_silence_180s.pcap" if args.silent else "pcmu_tone_180s.pcap"
    silence = ["--silence"] if args.silent else []
    subprocess.run(
        [sys.executable, "make_pcmu_pcap.py", "--seconds", "180", "--out", pcap, *silence],
        cwd=load_dir,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    sip_port, control_port = free_udp_port(), free_tcp_port()
    config = write_config(work, sip_port, control_port, args.media_path, args.media_priority)
    print(f"sip.media_path = {args.media_path or 'default'}, sip.media_priority = {args.media_priority}", flush=True)
    env = {**os.environ, "BRIDGE_CONFIG": str(config)}
    command = [str(BRIDGE)]
    if args.bridge_src is not None:  # another checkout of bridge/ (e.g. `git archive <rev> bridge web | tar -x`)
        env["PYTHONPATH"] = str(args.bridge_src)
        command = [sys.executable, "-m", "bridge.cli"]
        print(f"engine from {args.bridge_src}", flush=True)
    subprocess.run([*command, "db", "upgrade"], env=env, check=True, stdout=subprocess.DEVNULL)
    log = open(work / "bridge.log", "w")
    bridge = subprocess.Popen([*command, "run"], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=work)
    results: list[dict[str, Any]] = []
    try:
        for _ in range(100):
            try:
                control_status(control_port)
                break
            except OSError:
                time.sleep(0.2)
        else:
            raise SystemExit(f"bridge did not start; see {work / 'bridge.log'}")
        baseline = idle_cpu(bridge.pid, args.idle_window, load_dir)
        print(f"idle engine (baseline, same run): {baseline:.2f} % of one core", flush=True)
        if args.profile is not None:
            args.profile.mkdir(parents=True, exist_ok=True)
        for rooms, per_room in sizes:
            n = rooms * per_room
            rate = 50 if n > 200 else 20
            ramp = -(-n // rate)
            hold_ms = args.hold_ms or (ramp + 5 + args.window + 8) * 1000
            check = f"curl -s -H 'Authorization: Bearer bench' http://127.0.0.1:{control_port}/status"
            run_env = {
                **os.environ,
                "SERVER": f"127.0.0.1:{sip_port}",
                "HOLD_MS": str(hold_ms),
                "RATE": str(rate),
                "WINDOW": str(args.window),
                "OUTDIR": str(work / "runs"),
                "SIP_PORT": str(free_udp_port()),
                "CHECK_CMD": check,
                **({"SCENARIO": "uac_pcmu_conf_silent.xml"} if args.silent else {}),
            }
            label = f"{rooms}x{per_room}"
            print(f"== {label}: {n} calls at {rate}/s, hold {hold_ms / 1000:.0f} s", flush=True)
            with open(LOCK, "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)  # another load running now would share SIPp's media ports
                threads: dict[str, float] = {}
                thread_window(bridge.pid, ramp + 5, args.window, threads)
                if args.profile is not None:
                    profile_window(bridge.pid, ramp + 5 + args.window / 4, args.window, args.profile / label)
                out = subprocess.run(
                    ["bash", "run_load.sh", str(bridge.pid), str(rooms), str(per_room), label],
                    cwd=load_dir,
                    env=run_env,
                    capture_output=True,
                    text=True,
                )
                wait_until_idle(control_port)
            lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
            if out.returncode != 0 or not lines:
                print(out.stdout[-2000:], out.stderr[-2000:])
                results.append({"label": label, "error": f"run_load.sh exited {out.returncode}"})
                continue
            summary = json.loads(lines[-1])
            try:
                status = json.loads((Path(summary["run"]) / "check.out").read_text())
                mixer = status.get("mixer", {})
                summary["tick_lateness_p99_ms"] = mixer.get("lateness_p99_ms")
                summary["engine_participants"] = mixer.get("participants")
            except (OSError, ValueError):
                summary["tick_lateness_p99_ms"] = None
            per = summary.get("bridge_cpu_pct")
            if isinstance(per, float | int):
                summary["net_cpu_pct_per_participant"] = round((per - baseline) / n, 3)
            summary["threads"] = {name: pct for name, pct in threads.items() if pct > 0}
            results.append(summary)
    finally:
        bridge.send_signal(signal.SIGTERM)
        try:
            bridge.wait(30)
        except subprocess.TimeoutExpired:
            bridge.kill()
    print_table(results)
    print(f"\nbaseline: idle engine {baseline:.2f} % of one core (same run)")
    print("\nper-thread CPU over the window (% of one core):")
    for row in results:
        if "threads" in row:
            print(f"  {row['label']:>7}: " + ", ".join(f"{k} {v}" for k, v in sorted(row["threads"].items())))
    if args.profile is not None:
        for row in results:
            raw = args.profile / f"{row['label']}.txt"
            if raw.exists():
                print(f"\nprofile {row['label']} (py-spy, % of one core; {raw}):")
                for name, pct in summarize_profile(raw, PROFILE_RATE, args.window // 2):
                    print(f"  {pct:7.2f}  {name}")
    print(f"\nraw runs: {work / 'runs'}  bridge log: {work / 'bridge.log'}")


def print_table(results: list[dict[str, object]]) -> None:
    cols = [
        ("label", "size"),
        ("bridge_cpu_pct", "cpu%"),
        ("bridge_cpu_pct_per_participant", "cpu%/part"),
        ("net_cpu_pct_per_participant", "net%/part"),
        ("sipp_cpu_pct", "sipp%"),
        ("calls_ok", "ok"),
        ("calls_failed", "fail"),
        ("rx_pps_mean", "rx pps"),
        ("rx_seq_lost", "lost"),
        ("rx_iat_p99_ms", "iat p99"),
        ("rx_iat_max_ms", "iat max"),
        ("tick_lateness_p99_ms", "tick p99"),
        ("machine_busy_from_idle_pct_one_core", "busy"),
    ]
    print("\n" + "  ".join(f"{title:>9}" for _, title in cols) + "  vs C bridge")
    for row in results:
        if "error" in row:
            print(f"{row['label']:>9}  {row['error']}")
            continue
        cells = "  ".join(f"{_fmt(row.get(key)):>9}" for key, _ in cols)
        ref = REFERENCE.get(str(row["label"]))
        per = row.get("bridge_cpu_pct_per_participant")
        ratio = f"{per / ref:.2f}x the C bridge's {ref} %/part" if ref and isinstance(per, float) else ""
        print(f"{cells}  {ratio}")


def _fmt(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


if __name__ == "__main__":
    main()
