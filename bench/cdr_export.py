"""Benchmark: streamed CSV export of 1,000,000 generated CDRs (target: < 15 s, flat memory).

    .venv/bin/python bench/cdr_export.py [--rows 1000000] [--keep DIR]

Generates the CDRs into a temporary SQLite database (migrated schema, raw sqlite3 inserts), then runs
each measurement in a fresh child process so its peak RSS is its own:

- ``bridge``      : :func:`bridge.cdr.export.export_csv` over all rows (time-zone rendering, derived columns):
                    SQLite fast path, chunk queries overlapped with the formatting thread;
- ``bridge-serial``: the same with ``overlap=False`` (one thread: what a machine with one free core gets);
- ``bridge-10%``  : the same as ``bridge`` over a tenth of the rows: equal peak RSS at 10x the rows = flat memory;
- ``raw``         : baseline, the fastest bare Python export of the same rows in the same order: raw ``sqlite3``
                    cursor handed to ``csv.writer.writerows`` (a C loop: no Python per row), stored values as they
                    are (no time zones, no derived columns);
- ``sql-floor``   : floor, not an export: SQLite joins each row's stored values with commas (one ``format()``,
                    no quoting, no time zones) and Python only writes the lines: the least any SQLite export
                    in Python can cost here;
- ``naive``       : baseline, ORM ``session.scalars(select(Cdr)).all()`` then format (fetch-all), on 10%
                    of the rows, time extrapolated x10; its RSS shows what fetch-all costs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMPANIES = [(1, "Acme", "Europe/Paris"), (2, "Globex", "America/New_York"), (3, "Initech", "UTC")]


def generate(db: Path, rows: int) -> None:
    from bridge.db.session import upgrade

    upgrade(f"sqlite:///{db}")
    con = sqlite3.connect(db)
    con.executemany("INSERT INTO company (id, name, timezone, created_at) VALUES (?, ?, ?, '2026-01-01')", COMPANIES)
    rng = random.Random(7)
    base = dt.datetime(2026, 1, 1)

    def ts(value: dt.datetime) -> str:  # SQLAlchemy's SQLite storage format
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")

    def batch(start: int, stop: int) -> list[tuple[object, ...]]:
        out = []
        for i in range(start, stop):
            called = base + dt.timedelta(seconds=i * 7, microseconds=rng.randint(0, 999_999))
            joined = called + dt.timedelta(seconds=rng.randint(3, 20))
            gone = joined + dt.timedelta(seconds=rng.randint(10, 3600))
            cid, cname, _ = COMPANIES[i % 3]
            out.append(
                (
                    i + 1, ts(gone), cid, cname, f"mod{i % 500}", f"Moderator {i % 500}",
                    f"+1555{i % 500:07d}", i % 500 + 1, i % 30 + 1, i // 8 + 1, "completed", "IC", "Weekly sync",
                    ts(called), ts(gone), 0, f"+1444{i:07d}", "out", "participant",
                    "+15550000", "+15550101", ts(called), ts(joined), ts(gone), f"1:{i % 30 + 1}", 0, i % 2,
                    f"{i:x}@bridge", "normal", "PCMU", 0.25,
                )
            )  # fmt: skip
        return out

    sql = (
        "INSERT INTO cdr (id, created_at, company_id, company_name, moderator_ident, moderator_name, "
        "moderator_phone, subscriber_id, ic_id, service_id, service_result, service_type, service_subject, "
        "service_started_at, service_completed_at, scheduled, destination, direction, role, cli, dnis, "
        "called_at, joined_at, disconnected_at, port_id, activation_pin_used, recording, call_id, cause, "
        "codec, packet_loss) VALUES (" + ",".join("?" * 31) + ")"
    )
    for start in range(0, rows, 50_000):
        con.executemany(sql, batch(start, min(rows, start + 50_000)))
    con.commit()
    con.close()


def period(db: Path, fraction: float) -> tuple[dt.datetime, dt.datetime]:
    con = sqlite3.connect(db)
    lo, hi, n = con.execute("SELECT min(disconnected_at), max(disconnected_at), count(*) FROM cdr").fetchone()
    end = con.execute(
        "SELECT disconnected_at FROM cdr ORDER BY disconnected_at LIMIT 1 OFFSET ?", (max(0, int(n * fraction) - 1),)
    ).fetchone()[0]
    con.close()
    start = dt.datetime.fromisoformat(lo)
    stop = dt.datetime.fromisoformat(hi if fraction >= 1 else end) + dt.timedelta(microseconds=1)
    return start, stop


def phase(name: str, db: Path, out: Path) -> dict[str, float]:
    """Run in the child: one measurement."""
    t0, c0 = time.perf_counter(), time.process_time()
    if name in ("bridge", "bridge-10%", "bridge-serial"):
        from bridge.cdr.export import export_csv, scope_filter, write_fast
        from bridge.db.session import make_engine, make_session_factory

        start, end = period(db, 0.1 if name == "bridge-10%" else 1.0)
        t0, c0 = time.perf_counter(), time.process_time()
        with make_session_factory(make_engine(f"sqlite:///{db}"))() as session, out.open("w", newline="") as f:
            if name == "bridge-serial":
                rows = write_fast(session, f, start=start, conditions=scope_filter(end), overlap=False)
            else:
                rows = export_csv(session, f, start=start, end=end)
    elif name == "raw":
        import csv

        start, end = period(db, 1.0)
        con = sqlite3.connect(db)
        bounds = (f"{start:%Y-%m-%d %H:%M:%S.%f}", f"{end:%Y-%m-%d %H:%M:%S.%f}")
        where = "WHERE disconnected_at >= ? AND disconnected_at < ?"
        rows = con.execute(f"SELECT count(*) FROM cdr {where}", bounds).fetchone()[0]
        t0, c0 = time.perf_counter(), time.process_time()
        with out.open("w", newline="") as f:
            writer = csv.writer(f, lineterminator="\n")
            cur = con.execute(f"SELECT * FROM cdr {where} ORDER BY disconnected_at, id", bounds)
            writer.writerow([d[0] for d in cur.description])
            writer.writerows(cur)
    elif name == "sql-floor":
        start, end = period(db, 1.0)
        con = sqlite3.connect(db)
        bounds = (f"{start:%Y-%m-%d %H:%M:%S.%f}", f"{end:%Y-%m-%d %H:%M:%S.%f}")
        names = [r[1] for r in con.execute("PRAGMA table_info(cdr)")]
        line = "format('" + ",".join(["%s"] * len(names)) + "', " + ", ".join(names) + ")"
        t0, c0 = time.perf_counter(), time.process_time()
        rows = 0
        with out.open("w", newline="") as f:
            f.write(",".join(names) + "\n")
            cur = con.execute(
                f"SELECT {line} FROM cdr WHERE disconnected_at >= ? AND disconnected_at < ? "
                "ORDER BY disconnected_at, id",
                bounds,
            )
            while chunk := cur.fetchmany(5000):
                f.write("\n".join([r[0] for r in chunk]))
                f.write("\n")
                rows += len(chunk)
    elif name == "naive":
        import csv

        from sqlalchemy import select

        from bridge.cdr.csvformat import HEADER, SOURCE_COLUMNS, format_row
        from bridge.db.models import Cdr
        from bridge.db.session import make_engine, make_session_factory

        start, end = period(db, 0.1)
        t0, c0 = time.perf_counter(), time.process_time()
        with make_session_factory(make_engine(f"sqlite:///{db}"))() as session, out.open("w", newline="") as f:
            cdrs = session.scalars(
                select(Cdr).where(Cdr.disconnected_at >= start, Cdr.disconnected_at < end).order_by(Cdr.id)
            ).all()
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(HEADER)
            for cdr in cdrs:
                writer.writerow(format_row([getattr(cdr, c) for c in SOURCE_COLUMNS], "Europe/Paris"))
            rows = len(cdrs)
    else:
        raise SystemExit(f"unknown phase {name}")
    seconds = time.perf_counter() - t0
    cpu = time.process_time() - c0
    return {"rows": rows, "seconds": seconds, "cpu_s": cpu, "peak_rss_mib": peak_rss_mib(), "bytes": out.stat().st_size}


def peak_rss_mib() -> float:
    """This process's peak RSS (VmHWM: unlike ru_maxrss it is not inherited across fork + exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--keep", help="keep the generated database in this directory")
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        db = Path(args.db)
        print(json.dumps(phase(args.phase, db, db.with_suffix(f".{args.phase}.csv"))))
        return

    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="cdr-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    db = work / "bench.db"
    try:
        if not db.exists():
            t0 = time.perf_counter()
            generate(db, args.rows)
            print(f"generated {args.rows:,} CDRs in {time.perf_counter() - t0:.1f} s ({db.stat().st_size >> 20} MiB)")
        results = {}
        for name in ("bridge", "bridge-serial", "bridge-10%", "raw", "sql-floor", "naive"):
            out = subprocess.run(
                [sys.executable, __file__, "--phase", name, "--db", str(db)], check=True, capture_output=True, text=True
            )
            results[name] = json.loads(out.stdout)
            r = results[name]
            print(
                f"{name:13s} {int(r['rows']):>9,} rows  {r['seconds']:6.2f} s (CPU {r['cpu_s']:6.2f} s)  "
                f"{r['rows'] / r['seconds']:>9,.0f} rows/s  peak RSS {r['peak_rss_mib']:6.1f} MiB"
            )
        b, serial, small, raw, floor, naive = (
            results[k] for k in ("bridge", "bridge-serial", "bridge-10%", "raw", "sql-floor", "naive")
        )
        naive_full = naive["seconds"] * b["rows"] / max(1, naive["rows"])
        print(f"naive fetch-all extrapolated to {int(b['rows']):,} rows: {naive_full:.1f} s")
        print(f"target < 15 s: {'MET' if b['seconds'] < 15 else 'MISSED'} ({b['seconds']:.2f} s)")
        print(
            f"ratio bridge / raw sqlite3+csv: {b['seconds'] / raw['seconds']:.2f}x wall, "
            f"{b['cpu_s'] / raw['cpu_s']:.2f}x CPU; bridge-serial / raw: {serial['seconds'] / raw['seconds']:.2f}x wall"
        )
        floor_ratio = b["seconds"] / floor["seconds"]
        print(f"ratio bridge / sql-floor (SQLite-only rendering, no time zones): {floor_ratio:.2f}x wall")
        print(
            f"load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (wall times scale with it)"
        )
        print(f"ratio naive (extrapolated) / bridge: {naive_full / b['seconds']:.2f}x")
        print(
            f"memory: peak RSS at 100% {b['peak_rss_mib']:.1f} MiB vs at 10% {small['peak_rss_mib']:.1f} MiB "
            f"(ratio {b['peak_rss_mib'] / small['peak_rss_mib']:.2f}; naive fetch-all of 10%: "
            f"{naive['peak_rss_mib']:.1f} MiB)"
        )
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
