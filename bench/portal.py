"""Benchmark: portal throughput over HTTPS (``bridge web``: gunicorn gthread + TLS) for DB-backed pages.

    .venv/bin/python bench/portal.py [--requests 300] [--workers 2] [--threads 4] [--clients 4]

Seeds a temporary database (one company, a subscriber with 30 Instant Conferences of 10 members each,
5,000 CDRs), starts ``bridge web`` on a free loopback port and signs in. Then ``--clients`` threads each send
``--requests`` GETs over their own keep-alive HTTPS connection to:

- ``static``  : baseline measured in the same run: ``/static/portal.css`` (TLS + gunicorn + Flask, no DB);
- ``ics``     : the subscriber's IC list (30 ICs, DNIS, PINs; tenant-filtered query);
- ``usage``   : the company admin's usage report (aggregates over 5,000 CDRs + a server-side SVG chart);
- ``live``    : the live-conference list with the engine stopped (control API refused, DB only).

Prints requests/s, mean and p95 latency per page and each page's throughput relative to ``static``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import re
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from werkzeug.security import generate_password_hash

from bridge.config import from_dict
from bridge.db import make_engine, make_session_factory, upgrade
from bridge.db.models import Account, Cdr, Company, IcMember, Role, Subscriber
from bridge.provisioning import assign_ic, load_dnis

REPO = Path(__file__).resolve().parents[1]
PASSWORD = "bench-password-1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def seed(url: str, data: Path) -> int:
    upgrade(url)
    config = from_dict({"node": {"data_dir": str(data)}})
    engine = make_engine(url)
    with make_session_factory(engine)() as session:
        load_dnis(session, common="+15550100", pool=[f"+155501{n:02d}" for n in range(1, 31)])
        company = Company(name="Bench Co")
        sub = Subscriber(company=company, name="Bench Moderator", mobile="+15551230001")
        session.add_all([company, sub])
        session.flush()
        for slot in range(1, 31):
            ic = assign_ic(session, sub, slot, config)
            ic.members = [IcMember(position=i, phone=f"+1555124{slot:02d}{i:02d}") for i in range(10)]
        start = dt.datetime(2026, 11, 1)
        for i in range(5000):
            joined = start + dt.timedelta(minutes=7 * i)
            session.add(
                Cdr(company_id=company.id, company_name=company.name, subscriber_id=sub.id,
                    moderator_name=sub.name, service_id=i // 5, service_type="IC", direction="out",
                    role="participant", destination=f"+1555125{i % 10000:04d}", called_at=joined,
                    joined_at=joined, disconnected_at=joined + dt.timedelta(seconds=30 + i % 600))
            )  # fmt: skip
        digest = generate_password_hash(PASSWORD)
        session.add_all([
            Account(username="sub", password_hash=digest, role=Role.SUBSCRIBER, company_id=company.id,
                    subscriber_id=sub.id),
            Account(username="admin", password_hash=digest, role=Role.COMPANY_ADMIN, company_id=company.id),
        ])  # fmt: skip
        session.commit()
        sid = sub.id
    engine.dispose()
    return sid


class Browser:
    """One keep-alive HTTPS connection with a cookie jar of one session cookie."""

    def __init__(self, port: int) -> None:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        self.conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=30)
        self.cookie = ""
        self.origin = f"https://127.0.0.1:{port}"

    def request(self, method: str, path: str, body: str | None = None) -> tuple[int, bytes]:
        headers = {"Cookie": self.cookie, "Referer": self.origin + "/login"}
        if body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            self.conn.request(method, path, body=body, headers=headers)
            response = self.conn.getresponse()
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            # gunicorn closed the idle keep-alive connection: reconnect once, as a browser would
            self.conn.close()
            self.conn.request(method, path, body=body, headers=headers)
            response = self.conn.getresponse()
        data = response.read()
        for name, value in response.getheaders():
            if name.lower() == "set-cookie" and value.startswith("bridge_session="):
                self.cookie = value.split(";", 1)[0]
        return response.status, data

    def login(self, username: str) -> None:
        _, page = self.request("GET", "/login")
        match = re.search(rb'name="csrf_token" type="hidden" value="([^"]+)"', page)
        assert match, "no CSRF token on /login"
        body = f"csrf_token={match[1].decode()}&username={username}&password={PASSWORD}"
        status, _ = self.request("POST", "/login", body)
        assert status == 302, f"login failed: {status}"


def measure(port: int, username: str, path: str, requests: int, clients: int) -> tuple[float, float, float]:
    latencies: list[float] = []
    lock = threading.Lock()
    browsers = []
    for _ in range(clients):
        browser = Browser(port)
        browser.login(username)
        status, _ = browser.request("GET", path)
        assert status == 200, f"{path} -> {status}"
        browsers.append(browser)

    def run(browser: Browser) -> None:
        mine = []
        for _ in range(requests):
            t0 = time.perf_counter()
            status, _ = browser.request("GET", path)
            mine.append(time.perf_counter() - t0)
            assert status == 200
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=run, args=(b,)) for b in browsers]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    latencies.sort()
    return len(latencies) / elapsed, statistics.fmean(latencies) * 1000, latencies[int(len(latencies) * 0.95)] * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=300, help="requests per client per page")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "var"
        url = f"sqlite:///{data / 'bridge.db'}"
        sid = seed(url, data)
        port = free_port()
        config = Path(tmp) / "etc" / "bridge.toml"
        config.parent.mkdir()
        config.write_text(
            f'[node]\ndata_dir = "{data}"\n[web]\nlisten = "127.0.0.1:{port}"\n'
            f'[control]\nlisten = "127.0.0.1:{free_port()}"\ntoken = "bench"\n'
        )
        log = open(Path(tmp) / "web.log", "wb")  # noqa: SIM115 - closed below
        proc = subprocess.Popen(
            [sys.executable, "-m", "bridge.cli", "--config", str(config), "web", "--workers", str(args.workers),
             "--threads", str(args.threads)],
            cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    Browser(port).request("GET", "/login")
                    break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise SystemExit(f"bridge web did not start: {(Path(tmp) / 'web.log').read_text()}") from None
                    time.sleep(0.2)
            pages = [
                ("static", "sub", "/static/portal.css"),
                ("ics", "sub", f"/s/{sid}/ics"),
                ("usage", "admin", "/company/usage?start=2026-11-01&end=2026-11-30"),
                ("live", "sub", "/live/"),
            ]
            print(f"bridge web: {args.workers} workers x {args.threads} threads, {args.clients} clients x "
                  f"{args.requests} requests per page, keep-alive HTTPS on loopback, 2-core machine")  # fmt: skip
            print(f"{'page':8} {'req/s':>8} {'mean ms':>8} {'p95 ms':>8} {'vs static':>10}")
            baseline = 0.0
            for name, user, path in pages:
                rate, mean, p95 = measure(port, user, path, args.requests, args.clients)
                baseline = baseline or rate
                print(f"{name:8} {rate:8.1f} {mean:8.1f} {p95:8.1f} {rate / baseline:9.2f}x")
        finally:
            proc.terminate()
            proc.wait(15)
            log.close()


if __name__ == "__main__":
    main()
