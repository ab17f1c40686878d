"""Benchmark: the provisioning APIs.

    .venv/bin/python bench/provisioning.py [--creates 300] [--subscribers 100000] [--cdrs 1000000] [--pages 200]

1. CRM XML API over mutual TLS (the real listener, ``bridge.api.server``, on loopback in this process):
   ``createSubscriber`` documents with a new TLS connection per request and on one keep-alive connection.
   Baseline in the same run: the same documents through the WSGI app without HTTP or TLS (parse, schema,
   provisioning core, audit, idempotency record, commit) -- the cost the transport adds is the difference.
2. REST list latency with ``--subscribers`` subscribers and ``--cdrs`` CDRs in the database (SQLite, WAL):
   pages of 100 at random cursors for ``/subscribers``, ``/cdrs`` (operator token), ``/cdrs?company_id=``
   and a company token's ``/cdrs`` (tenant filter), through the Flask app. Baseline: the bare SQL of the same
   page. Target: p95 < 100 ms for a page of 100.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import logging
import random
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import insert, select, text

from bridge.api.ca import ca_init, issue_client_cert
from bridge.api.server import make_server
from bridge.api.tokens import create_token
from bridge.config import Config, from_dict
from bridge.db import make_engine, make_session_factory
from bridge.db.models import Base, Cdr, Company, Subscriber, TokenScope
from bridge.provisioning import load_configured_dnis
from web import create_app
from web.crm import create_crm_app

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root, for the tests.* helpers
import tests.api.crm_docs as docs  # noqa: E402


def _port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _stats(samples: list[float]) -> str:
    ordered = sorted(samples)
    p = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000  # noqa: E731
    return f"p50 {p(0.50):6.2f} ms  p95 {p(0.95):6.2f} ms  p99 {p(0.99):6.2f} ms"


def _timed(calls: int, one: Callable[[int], Any]) -> tuple[float, list[float]]:
    samples = []
    start = time.perf_counter()
    for i in range(calls):
        t0 = time.perf_counter()
        one(i)
        samples.append(time.perf_counter() - t0)
    return time.perf_counter() - start, samples


def _fresh_db(directory: Path) -> str:
    url = f"sqlite:///{directory / 'bench.db'}"
    engine = make_engine(url)
    Base.metadata.create_all(engine)  # the models as they are (migrations are tested in tests/db)
    engine.dispose()
    return url


def _config(directory: Path) -> Config:
    return from_dict(
        {
            "node": {"data_dir": str(directory / "data")},
            "dnis": {"common": "+15550100", "pool": ["+15550101-+15550130"]},
            "smpp": {"enabled": False},
            "api": {"listen": f"127.0.0.1:{_port()}", "max_connections": 64},
        },
        base_dir=str(directory),
    )  # fmt: skip


def bench_xml(directory: Path, creates: int) -> None:
    config = _config(directory)
    url = _fresh_db(directory)
    engine = make_engine(url)
    with make_session_factory(engine)() as session:
        load_configured_dnis(session, config)
        session.add(Company(name="Acme"))
        session.commit()
    engine.dispose()
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    files = ca_init(config.data_path / "api-ca", now)
    cert = tuple(map(str, issue_client_cert(config.data_path / "api-ca", "crm-1", directory / "clients", now)))
    app = create_crm_app({"BRIDGE": config, "DATABASE_URL": url})
    server = make_server(config, app)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    target, ca = f"https://127.0.0.1:{server.server_port}/crm", str(files.ca_cert)

    def doc(tag: str, i: int) -> bytes:
        return docs.create_subscriber(
            f"{tag}-{i}", company="Acme", name=f"S {tag} {i}", mobile=f"+1555{hash(tag) % 9}{i:06d}"
        )

    local = app.test_client()
    base_s, base = _timed(creates, lambda i: local.post("/crm", data=doc("wsgi", i)).status_code == 200 or sys.exit(1))
    with requests.Session() as http:
        http.trust_env = False
        fresh_s, fresh = _timed(
            creates,
            lambda i: requests.post(target, data=doc("new", i), verify=str(files.ca_cert), cert=cert, timeout=30),
        )
        keep_s, keep = _timed(
            creates, lambda i: http.post(target, data=doc("keepalive", i), verify=ca, cert=cert, timeout=30)
        )
    server.shutdown()
    print(f"CRM XML createSubscriber x{creates}")
    for label, seconds, samples in (
        ("baseline, WSGI app only", base_s, base),
        ("mTLS, new connection", fresh_s, fresh),
        ("mTLS, keep-alive", keep_s, keep),
    ):
        ratio = f"  ({base_s / seconds:.2f}x baseline)" if samples is not base else ""
        print(f"  {label:24s}: {creates / seconds:7.1f} creates/s  {_stats(samples)}{ratio}")


def _seed(url: str, subscribers: int, cdrs: int) -> tuple[int, int]:
    engine = make_engine(url)
    t0 = time.perf_counter()
    with engine.begin() as connection:
        connection.execute(insert(Company), [{"name": f"Company {c}", "timezone": "UTC"} for c in range(1, 101)])
        for start in range(0, subscribers, 50_000):
            connection.execute(insert(Subscriber), [
                {"company_id": 1 + i % 100, "name": f"Subscriber {i}", "mobile": f"+1{i:010d}", "status": "active",
                 "prepaid": False, "email": ""}
                for i in range(start, min(subscribers, start + 50_000))
            ])  # fmt: skip
        base = dt.datetime(2026, 1, 1)
        for start in range(0, cdrs, 100_000):
            connection.execute(insert(Cdr), [
                {"created_at": base + dt.timedelta(seconds=20 * i), "company_id": 1 + i % 100, "company_name": "x",
                 "subscriber_id": 1 + i % subscribers, "destination": "+15551230000", "direction": "out",
                 "role": "participant", "called_at": base, "disconnected_at": base}
                for i in range(start, min(cdrs, start + 100_000))
            ])  # fmt: skip
    engine.dispose()
    print(f"seeded {subscribers:,} subscribers and {cdrs:,} CDRs in {time.perf_counter() - t0:.1f} s")
    return subscribers, cdrs


def bench_rest(directory: Path, subscribers: int, cdrs: int, pages: int) -> None:
    config = _config(directory)
    config = dataclasses.replace(config, api=dataclasses.replace(config.api, rest_rate_per_s=1e6, rest_burst=10**6))
    (directory / "rest").mkdir()
    url = _fresh_db(directory / "rest")
    _seed(url, subscribers, cdrs)
    engine = make_engine(url)
    with make_session_factory(engine)() as session:
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        _, operator = create_token(session, name="bench", scope=TokenScope.OPERATOR, now=now)
        _, company = create_token(session, name="bench-co", scope=TokenScope.COMPANY, company_id=7, now=now)
        session.commit()
    client = create_app({"BRIDGE": config, "DATABASE_URL": url, "SECRET_KEY": "bench"}).test_client()
    rng = random.Random(17)
    cases: list[tuple[str, str, int, Any]] = [
        ("/subscribers", operator, subscribers, select(Subscriber).where(Subscriber.status != "deleted")),
        ("/cdrs", operator, cdrs, select(Cdr)),
        ("/cdrs?company_id=7", operator, cdrs, select(Cdr).where(Cdr.company_id == 7)),
        ("/cdrs (company token)", company, cdrs, select(Cdr).where(Cdr.company_id == 7)),
        ("/cdrs?from=..&to=.. (1 week)", operator, cdrs, None),
    ]
    print(f"REST pages of 100 at {pages} random cursors (Flask app, SQLite WAL)")
    week = "from=2026-03-01T00:00:00Z&to=2026-03-08T00:00:00Z"
    queries = {
        "/subscribers": "/subscribers?",
        "/cdrs (company token)": "/cdrs?",
        "/cdrs?from=..&to=.. (1 week)": f"/cdrs?{week}&",
    }
    with make_session_factory(engine)() as session:
        for path, token, top, bare in cases:
            query = queries.get(path, path + ("&" if "?" in path else "?"))
            cursors = [rng.randrange(0, top) for _ in range(pages)]
            headers = {"Authorization": f"Bearer {token}"}
            print(f"  {path:30s} {bench_case(client, session, query, headers, cursors, bare)}")
    engine.dispose()


def bench_case(client: Any, session: Any, query: str, headers: dict[str, str], cursors: list[int], bare: Any) -> str:
    """The API page at each cursor, and the bare SQL of the same page (the baseline)."""

    def one(i: int) -> None:
        response = client.get(f"/api/v1{query}limit=100&cursor={cursors[i]}", headers=headers)
        assert response.status_code == 200, response.get_data(as_text=True)

    _, samples = _timed(len(cursors), one)
    line = _stats(samples)
    if bare is not None:
        table = bare.columns_clause_froms[0].name

        def raw_page(i: int) -> None:
            session.scalars(bare.where(text(f"{table}.id > {cursors[i]}")).order_by(text("id")).limit(101)).all()

        _, raw = _timed(len(cursors), raw_page)
        line += f"   (bare SQL: {_stats(raw)})"
    return line


def main() -> None:
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no access log line per request
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--creates", type=int, default=300)
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--cdrs", type=int, default=1_000_000)
    parser.add_argument("--pages", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bench_xml(Path(tmp), args.creates)
        bench_rest(Path(tmp), args.subscribers, args.cdrs, args.pages)


if __name__ == "__main__":
    main()
