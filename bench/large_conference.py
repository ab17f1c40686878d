"""Large conferences with real SIP (issue 16): 500, 1,000 and 2,000 legs against ``bridge run``.

    .venv/bin/python bench/large_conference.py                         # 1x500 1x1000 1x2000 400x5
    .venv/bin/python bench/large_conference.py 1x500 --media-path socket   # the per-socket path, same sizes
    .venv/bin/python bench/large_conference.py 1x2000 --profile /tmp/prof  # + py-spy over the window

The load: SIPp places the calls (``bench/load/uac_pcmu_conf_extmedia.xml``, SIP only, split over
``--sipp`` processes on their own SIP ports), ``bench/rtp_load.py`` plays every call's 20 ms PCMU from one
socket (each call its own loopback address 127.1.a.b, ``sendmmsg``/``recvmmsg``) and scores what the
bridge sends back per leg. ``bench/load``'s ``play_pcap_audio`` runs a thread per call and collapsed at 1,000
calls on this machine; SIPp's ``rtp_stream`` keeps the return stream on SIPp's own sockets, out of a
scorer's reach. Engine config, start and the idle baseline as ``bench/conference_load.py`` (its helpers),
plus ``[metrics]``: over the window the engine's own counters (tick lateness and duration histograms, RTP
packets in/out/lost, late and skipped ticks) are read from ``/metrics`` before and after, and the kernel's
receive-buffer drops of the engine's UDP sockets from ``/proc/PID/net/udp``.

Reported per size: engine CPU (% of one core, all threads), per leg and net of the idle engine; tick
lateness p50/p99 over the window (from the engine's histogram: the upper edge of the bucket, 0.5/1/2/5 ms)
and ``/status``'s exact p99 over the last 60 s; packets/s per leg received back, sequence gaps and
inter-arrival p99/max at the generator (kernel timestamps); engine-side loss (kernel drops on the engine's
sockets, the engine's sequence-gap count of what it received); the generator's and SIPp's CPU (so a starved
generator is not blamed on the bridge: its skipped ticks and the packets/s it sent per leg are printed too);
machine busy (% of one core, 200 = both cores) and the load average. Runs take
``/tmp/bridge-conference-load.lock`` as ``conference_load.py`` does.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent / "load"))

import cpu_sample  # noqa: E402
from conference_load import (  # noqa: E402
    BRIDGE,
    LOAD,
    LOCK,
    PROFILE_RATE,
    control_status,
    free_tcp_port,
    free_udp_port,
    idle_cpu,
    profile_window,
    summarize_profile,
    thread_ticks,
    wait_until_idle,
    write_config,
)
from rtp_load import host_text, leg_host  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SIZES = ["1x500", "1x1000", "1x2000", "400x5"]
SCENARIO = "uac_pcmu_conf_extmedia.xml"
HZ = os.sysconf("SC_CLK_TCK")


def large_config(
    work: Path, sip_port: int, control_port: int, metrics_port: int, rooms: int, media: str | None, priority: int
) -> Path:
    """``conference_load``'s config (rooms 1001..1040, 2,500 members each), plus rooms up to ``rooms`` and
    the Prometheus exporter."""
    path = write_config(work, sip_port, control_port, media, priority)
    extra = "".join(
        f'\n[[room]]\nnumber = "{1000 + r}"\nname = "Load room {r}"\nmax_members = 2500\n' for r in range(41, rooms + 1)
    )
    path.write_text(path.read_text() + extra + f'\n[metrics]\nlisten = "127.0.0.1:{metrics_port}"\n')
    return path


_SAMPLE = re.compile(r"^([a-z_]+)(?:\{([^}]*)\})? ([-+0-9.eE]+|NaN|\+Inf)$")


def scrape(port: int) -> dict[str, float]:
    """``/metrics`` as {``name`` or ``name{le="x"}``: value} for the engine's tick and RTP families."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as response:
        text = response.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match and match.group(1).startswith(("bridge_tick", "bridge_rtp", "bridge_ticks")):
            name, labels, value = match.groups()
            out[f"{name}{{{labels}}}" if labels else name] = float(value)
    return out


def bucket_percentile(before: dict[str, float], after: dict[str, float], family: str, q: float) -> str:
    """The upper edge (ms) of the histogram bucket holding the ``q``-th percentile of the window's ticks."""
    edges = sorted(
        (float(key.split('le="')[1].rstrip('"}')), after[key] - before.get(key, 0.0))
        for key in after
        if key.startswith(f"{family}_bucket") and "+Inf" not in key
    )
    total = after.get(f"{family}_count", 0.0) - before.get(f"{family}_count", 0.0)
    if total <= 0:
        return "?"
    for edge, cumulative in edges:
        if cumulative >= q / 100 * total:
            return f"≤{edge * 1000:g}"
    return f">{edges[-1][0] * 1000:g}" if edges else "?"


def udp_drops(pid: int) -> int:
    """Datagrams the kernel dropped on ``pid``'s UDP sockets (receive buffer full), from /proc/PID/net/udp."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    drops = 0
    for line in Path(f"/proc/{pid}/net/udp").read_text().splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 13 and fields[9] in inodes:
            drops += int(fields[-1])
    return drops


def proc_cpu(pids: dict[str, int]) -> dict[str, int]:
    out = {}
    for name, pid in pids.items():
        try:
            out[name] = sum(cpu_sample.proc_ticks(pid))
        except (FileNotFoundError, ProcessLookupError):
            out[name] = -1
    return out


class Window:
    """Every counter the report needs, read at the window's start and end."""

    def __init__(self, bridge: int, others: dict[str, int], metrics_port: int) -> None:
        self.bridge, self.others, self.metrics_port = bridge, others, metrics_port

    def read(self) -> dict[str, Any]:
        return {
            "t": time.monotonic(),
            "metrics": scrape(self.metrics_port),
            "cpu": proc_cpu({"bridge": self.bridge, **self.others}),
            "bridge_user_sys": cpu_sample.proc_ticks(self.bridge),
            "threads": thread_ticks(self.bridge),
            "stat": cpu_sample.sys_ticks(),
            "drops": udp_drops(self.bridge),
            "gen_drops": udp_drops(self.others["gen"]),
        }

    @staticmethod
    def figures(a: dict[str, Any], b: dict[str, Any], legs: int) -> dict[str, Any]:
        dt = b["t"] - a["t"]
        pct = {name: round(100.0 * (b["cpu"][name] - a["cpu"][name]) / (HZ * dt), 2) for name in a["cpu"]}
        sipp = sum(v for k, v in pct.items() if k.startswith("sipp"))
        stat = [y - x for x, y in zip(a["stat"], b["stat"], strict=True)]
        busy = round(100.0 * ((os.cpu_count() or 1) - (stat[3] + stat[4]) / (HZ * dt)), 1)
        m0, m1 = a["metrics"], b["metrics"]

        def delta(name: str) -> float:
            return m1.get(name, 0.0) - m0.get(name, 0.0)

        ticks = delta("bridge_tick_lateness_seconds_count")
        cpu_ms_per_tick = round(10.0 * pct["bridge"] * dt / ticks, 2) if ticks else None
        return {
            "window_s": round(dt, 2),
            "bridge_cpu_pct": pct["bridge"],
            "bridge_cpu_pct_per_leg": round(pct["bridge"] / legs, 4),
            "bridge_sys_pct": round(100.0 * (b["bridge_user_sys"][1] - a["bridge_user_sys"][1]) / (HZ * dt), 2),
            "main_thread_pct": round(100.0 * (b["threads"]["main"] - a["threads"]["main"]) / (HZ * dt), 2),
            "gen_cpu_pct": pct["gen"],
            "sipp_cpu_pct": round(sipp, 2),
            "machine_busy_pct_one_core": busy,
            "machine_softirq_pct_one_core": round(100.0 * stat[6] / (HZ * dt), 1),
            "loadavg": Path("/proc/loadavg").read_text().split()[:3],
            "ticks": int(ticks),
            "tick_lateness_p50_ms": bucket_percentile(m0, m1, "bridge_tick_lateness_seconds", 50),
            "tick_lateness_p99_ms": bucket_percentile(m0, m1, "bridge_tick_lateness_seconds", 99),
            "tick_duration_p50_ms": bucket_percentile(m0, m1, "bridge_tick_duration_seconds", 50),
            "tick_duration_p99_ms": bucket_percentile(m0, m1, "bridge_tick_duration_seconds", 99),
            "tick_duration_mean_ms": round(1000 * delta("bridge_tick_duration_seconds_sum") / ticks, 3)
            if ticks
            else None,
            "cpu_ms_per_tick": cpu_ms_per_tick,  # engine CPU over the window / ticks run (skipped ones cost none)
            "late_ticks": int(delta("bridge_ticks_late_total")),
            "skipped_ticks": int(delta("bridge_ticks_skipped_total")),
            "engine_rx_pps_per_leg": round(delta("bridge_rtp_packets_in_total") / dt / legs, 2),
            "engine_tx_pps_per_leg": round(delta("bridge_rtp_packets_out_total") / dt / legs, 2),
            "engine_rx_lost": int(delta("bridge_rtp_packets_lost_total")),
            "engine_socket_drops": b["drops"] - a["drops"],
            "gen_socket_drops": b["gen_drops"] - a["gen_drops"],
        }


def niced(increment: int) -> Any:
    """A ``preexec_fn`` giving the child (and every thread it starts) ``increment`` more niceness."""
    return (lambda: os.nice(increment)) if increment else None


def start_sipp(
    run: Path, server: str, legs: int, rooms: int, port: int, procs: int, rate: int, hold_ms: int, nice: int = 0
) -> list[int]:
    """``procs`` SIPp processes, call ``i`` on process ``i % procs``: INVITE room ``1001 + i % rooms`` with the
    generator's address for leg ``i`` in the SDP. Returns their pids."""
    pids = []
    for k in range(procs):
        mine = range(k, legs, procs)
        csv = run / f"calls{k}.csv"
        lines = [f"{1001 + i % rooms};{host_text(int(leg_host(i)))};{port};" for i in mine]
        csv.write_text("SEQUENTIAL\n" + "\n".join(lines) + "\n")
        out = subprocess.run(
            ["sipp", server, "-sf", str(run / SCENARIO), "-inf", str(csv), "-i", "127.0.0.1",
             "-p", str(free_udp_port()), "-mp", str(free_udp_port()), "-r", str(max(1, rate // procs)),
             "-m", str(len(mine)), "-l", str(len(mine)), "-d", str(hold_ms), "-aa", "-nostdin", "-bg",
             "-trace_screen", "-screen_file", str(run / f"sipp{k}_screen.log"),
             "-trace_err", "-error_file", str(run / f"sipp{k}_errors.log"), "-fd", "5"],
            cwd=run, capture_output=True, text=True, preexec_fn=niced(nice),
        )  # fmt: skip
        match = re.search(r"PID=\[(\d+)\]", out.stdout + out.stderr)
        if match is None:
            raise SystemExit(f"could not start sipp: {out.stdout}{out.stderr}")
        pids.append(int(match.group(1)))
    return pids


def sipp_counts(run: Path, procs: int) -> tuple[int, int]:
    ok = failed = 0
    for k in range(procs):
        path = run / f"sipp{k}_screen.log"
        screen = path.read_text(errors="replace") if path.exists() else ""
        for label, add in (("Successful call", 0), ("Failed call", 1)):
            hits = re.findall(rf"{label}\s*\|\s*\d+\s*\|\s*(\d+)", screen)
            if hits:
                if add:
                    failed += int(hits[-1])
                else:
                    ok += int(hits[-1])
    return ok, failed


def wait_participants(control_port: int, n: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    have = 0
    while time.monotonic() < deadline:
        try:
            mixer = control_status(control_port).get("mixer", {})
        except TimeoutError:  # the loop is busy setting calls up: ask again
            continue
        have = int(mixer.get("participants", 0)) if isinstance(mixer, dict) else 0
        if have >= n:
            break
        time.sleep(0.5)
    return have


def run_size(
    rooms: int, per_room: int, args: argparse.Namespace, work: Path, bridge: int, ports: dict[str, int]
) -> dict[str, Any]:
    n = rooms * per_room
    label = f"{rooms}x{per_room}"
    run = work / "runs" / label
    run.mkdir(parents=True, exist_ok=True)
    shutil.copy(LOAD / SCENARIO, run / SCENARIO)
    ramp = math.ceil(n / args.rate)
    budget = math.ceil(1.3 * ramp) + args.settle + args.window + 12  # the ramp may run slower than asked
    hold_ms = budget * 1000
    gen = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "rtp_load.py"), "--legs", str(n), "--duration", str(budget + 5),
         "--win-start", "0", "--win-len", str(args.window), "--control", "--out", str(run / "gen.json")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=open(run / "gen.err", "w"), text=True,
        preexec_fn=niced(args.nice),
    )  # fmt: skip
    assert gen.stdin is not None and gen.stdout is not None
    port = int(json.loads(gen.stdout.readline())["port"])
    started = time.monotonic()
    sipp = start_sipp(run, f"127.0.0.1:{ports['sip']}", n, rooms, port, args.sipp, args.rate, hold_ms, args.nice)
    print(f"== {label}: {n} calls at {args.rate}/s over {args.sipp} SIPp, generator port {port}", flush=True)
    have = wait_participants(ports["control"], n, 2 * ramp + 10)
    time.sleep(args.settle)
    ramp_s = time.monotonic() - started
    if ramp_s + args.window + 3 > budget:
        print(f"   ramp took {ramp_s:.0f} s: the window would reach the BYEs", flush=True)
    window = Window(bridge, {"gen": gen.pid, **{f"sipp{k}": p for k, p in enumerate(sipp)}}, ports["metrics"])
    if args.profile is not None:
        profile_window(bridge, args.window / 4, args.window, args.profile / label)
    gen.stdin.write("window\n")
    gen.stdin.flush()
    a = window.read()
    time.sleep(args.window)
    b = window.read()
    status = control_status(ports["control"])
    figures = Window.figures(a, b, n)
    gen.stdin.write("quit\n")
    gen.stdin.flush()
    gen_out = json.loads(gen.stdout.read().strip().splitlines()[-1])
    gen.wait(30)
    mixer = status.get("mixer", {}) if isinstance(status.get("mixer"), dict) else {}
    for pid in sipp:  # the calls end at the hold time; do not wait for it: stop SIPp, the bridge ends the legs
        try:
            os.kill(pid, signal.SIGUSR1)  # SIPp's "q": place no more calls, exit once the running ones end (BYE)
        except ProcessLookupError:
            pass
    deadline = started + budget + 60
    while any(os.path.exists(f"/proc/{p}") for p in sipp) and time.monotonic() < deadline:
        time.sleep(0.5)
    for pid in sipp:
        if os.path.exists(f"/proc/{pid}"):
            os.kill(pid, signal.SIGTERM)
    ok, failed = sipp_counts(run, args.sipp)
    return {
        "label": label, "legs": n, "participants_at_window": have, "calls_ok": ok, "calls_failed": failed,
        **figures,
        "status_lateness_p99_ms_60s": mixer.get("lateness_p99_ms"),
        "rx_pps_mean": gen_out["pps_mean"], "rx_pps_min": gen_out["pps_min"],
        "silent_streams": gen_out["streams_silent"], "rx_seq_lost": gen_out["seq_lost_total"],
        "rx_gaps_over_40ms": gen_out["gaps_over_2ptime"], "rx_iat_p50_ms": gen_out["interarrival_ms_p50"],
        "rx_iat_p99_ms": gen_out["interarrival_ms_p99"], "rx_iat_max_ms": gen_out["interarrival_ms_max"],
        "gen_sent_pps_per_leg": gen_out["gen_sent_pps_per_leg_window"],
        "gen_ticks_skipped": gen_out["gen_ticks_skipped"],
        "gen_lateness_p99_ms": gen_out["gen_lateness_ms_p99"], "gen_send_dropped": gen_out["gen_send_dropped"],
        "run": str(run),
    }  # fmt: skip


COLUMNS = [
    ("label", "size"), ("bridge_cpu_pct", "cpu%"), ("bridge_cpu_pct_per_leg", "%/leg"), ("net_pct_per_leg", "net%/leg"),
    ("tick_lateness_p50_ms", "late p50"), ("tick_lateness_p99_ms", "late p99"),
    ("status_lateness_p99_ms_60s", "p99 60s"), ("tick_duration_mean_ms", "tick ms"),
    ("rx_pps_mean", "rx pps"), ("rx_seq_lost", "rx lost"), ("rx_iat_p99_ms", "iat p99"), ("rx_iat_max_ms", "iat max"),
    ("engine_rx_pps_per_leg", "eng rx"), ("engine_rx_lost", "eng lost"), ("engine_socket_drops", "eng drop"),
    ("gen_cpu_pct", "gen%"), ("gen_sent_pps_per_leg", "gen pps"), ("sipp_cpu_pct", "sipp%"),
    ("machine_busy_pct_one_core", "busy"), ("calls_failed", "fail"),
]  # fmt: skip


def print_table(results: list[dict[str, Any]]) -> None:
    print("\n" + " ".join(f"{title:>9}" for _, title in COLUMNS) + "  load avg")
    for row in results:
        if "error" in row:
            print(f"{row['label']:>9} {row['error']}")
            continue
        print(" ".join(f"{row.get(key)!s:>9}" for key, _ in COLUMNS) + "  " + " ".join(row.get("loadavg", [])))


def engine_revision() -> str:
    """The commit the engine runs from, ``+dirty`` when bridge/ has uncommitted changes (the lead's tree)."""
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--short", "bridge"], cwd=ROOT, capture_output=True, text=True)
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sizes", nargs="*", default=SIZES, help="RxP sizes (rooms x per room)")
    parser.add_argument("--window", type=int, default=15, help="measurement window (s)")
    parser.add_argument("--settle", type=int, default=5, help="seconds after the last call joined")
    parser.add_argument("--rate", type=int, default=50, help="calls per second (all SIPp processes)")
    parser.add_argument("--sipp", type=int, default=2, help="SIPp processes sharing the calls")
    parser.add_argument("--idle-window", type=int, default=10, help="idle-engine baseline window (s)")
    parser.add_argument("--media-path", choices=("batched", "socket"), default=None)
    parser.add_argument("--media-priority", type=int, default=0, help="sip.media_priority (SCHED_RR 1-99; 0: off)")
    parser.add_argument("--profile", type=Path, default=None, help="py-spy each window into this directory")
    parser.add_argument(
        "--nice", type=int, default=0,
        help="niceness increment for the engine, the generator and SIPp (e.g. -5 on a machine where a stray "
        "process spins: the figures then show the load's own cost; say so next to them)",
    )  # fmt: skip
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args()
    if shutil.which("sipp") is None:
        raise SystemExit("sipp not found: run `make deps`")
    sizes = [tuple(map(int, s.split("x"))) for s in args.sizes]
    work = Path(tempfile.mkdtemp(prefix="largeconf-"))
    ports = {"sip": free_udp_port(), "control": free_tcp_port(), "metrics": free_tcp_port()}
    config = large_config(
        work, ports["sip"], ports["control"], ports["metrics"], max(r for r, _ in sizes), args.media_path,
        args.media_priority,
    )
    env = {**os.environ, "BRIDGE_CONFIG": str(config)}
    subprocess.run([str(BRIDGE), "db", "upgrade"], env=env, check=True, stdout=subprocess.DEVNULL)
    log = open(work / "bridge.log", "w")
    bridge = subprocess.Popen(
        [str(BRIDGE), "run"], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=work, preexec_fn=niced(args.nice)
    )
    results: list[dict[str, Any]] = []
    baseline = float("nan")
    try:
        for _ in range(150):
            try:
                control_status(ports["control"])
                break
            except OSError:
                time.sleep(0.2)
        else:
            raise SystemExit(f"bridge did not start; see {work / 'bridge.log'}")
        if args.profile is not None:
            args.profile.mkdir(parents=True, exist_ok=True)
        with open(LOCK, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            baseline = idle_cpu(bridge.pid, args.idle_window, LOAD)
        revision = engine_revision()
        print(f"idle engine (baseline, same run): {baseline:.2f} % of one core; media_path "
              f"{args.media_path or 'default'}, media_priority {args.media_priority}; engine {revision}",
              flush=True)  # fmt: skip
        for rooms, per_room in sizes:
            with open(LOCK, "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                try:
                    row = run_size(rooms, per_room, args, work, bridge.pid, ports)
                except (OSError, ValueError, subprocess.SubprocessError) as exc:
                    row = {"label": f"{rooms}x{per_room}", "error": repr(exc)}
                results.append(row)
                for _ in range(5):
                    try:
                        wait_until_idle(ports["control"])
                        break
                    except TimeoutError:  # a busy loop: ask again
                        continue
                    except SystemExit as exc:
                        print(f"   {exc}", flush=True)
                        break
            if "bridge_cpu_pct" in row:
                row["net_pct_per_leg"] = round((row["bridge_cpu_pct"] - baseline) / row["legs"], 4)
                row["idle_baseline_pct"] = baseline
                row["engine"], row["media_path"], row["nice"] = revision, args.media_path or "default", args.nice
                row["media_priority"] = args.media_priority
            print(json.dumps(row), flush=True)
    finally:
        bridge.send_signal(signal.SIGTERM)
        try:
            bridge.wait(30)
        except subprocess.TimeoutExpired:
            bridge.kill()
    print_table(results)
    print(f"\nbaseline: idle engine {baseline:.2f} % of one core (same run); late p50/p99: the engine's histogram "
          "bucket over the window; p99 60s: /status, last 60 s (includes the ramp)")  # fmt: skip
    if args.profile is not None:
        for row in results:
            raw = args.profile / f"{row['label']}.txt"
            if raw.exists():
                print(f"\nprofile {row['label']} (py-spy, % of one core; {raw}):")
                for name, pct in summarize_profile(raw, PROFILE_RATE, args.window // 2):
                    print(f"  {pct:7.2f}  {name}")
    if args.json is not None:
        args.json.write_text("".join(json.dumps(r) + "\n" for r in results))
    print(f"\nruns: {work / 'runs'}  bridge log: {work / 'bridge.log'}")


if __name__ == "__main__":
    main()
