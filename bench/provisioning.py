"""Benchmark: the provisioning APIs.

    .venv/bin/python bench/provisioning.py [--creates 300] [--subscribers 100000] [--cdrs 1000000] [--pages 200]

1. CRM XML API over mutual TLS (the real listener, ``bridge.api.server``, on loopback in this process):
   ``createSubscriber`` documents with a new TLS connection per request and on one keep-alive connection.
   Baseline in the same run: the same documents through the WSGI app without HTTP or TLS (parse, schema,
   provisioning core, audit, idempotency record, commit) -- the cost the transport adds is the difference.
2. REST list latency with ``--subscribers`` subscribers and ``--cdrs`` CDRs in the database (SQLite, WAL):
   pages of 100 after random cursors (rows the case's filters match) for ``/subscribers`` (operator and company
   token) and ``/cdrs`` (operator token; ``company_id=``; a company token, i.e. the tenant filter; a one-week
   ``from``/``to`` range, operator and company token), through the Flask app. Baseline: the bare SQL of the
   same keyset page (id order for subscribers, (created_at, id) for CDRs) through the same session.
   Target: p95 < 100 ms for a page of 100.
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
from sqlalchemy import insert, literal, select, tuple_

from bridge.api.ca import ca_init, issue_client_cert
from bridge.api.server import make_server
from bridge.api.tokens import create_token
from bridge.config import Config, from_dict
from bridge.db import make_engine, make_session_factory
from bridge.db.models import Account, Base, Cdr, Company, Contact, Role, Subscriber, TokenScope
from bridge.provisioning import load_configured_dnis
from web import create_app
from web.crm import create_crm_app
from web.rest.common import encode_time_cursor
from web.rest.usage import COLUMNS

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
    """100 companies; subscribers round-robin over them, each with a portal login and 5 contacts; CDRs 20 s apart."""
    engine = make_engine(url)
    t0 = time.perf_counter()
    with engine.begin() as connection:
        connection.execute(insert(Company), [{"name": f"Company {c}", "timezone": "UTC"} for c in range(1, 101)])
        for start in range(0, subscribers, 50_000):
            chunk = range(start, min(subscribers, start + 50_000))
            connection.execute(insert(Subscriber), [
                {"company_id": 1 + i % 100, "name": f"Subscriber {i}", "mobile": f"+1{i:010d}", "status": "active",
                 "prepaid": False, "email": ""}
                for i in chunk
            ])  # fmt: skip
            connection.execute(insert(Account), [
                {"username": f"s{i}", "password_hash": "x", "role": Role.SUBSCRIBER, "company_id": 1 + i % 100,
                 "subscriber_id": 1 + i, "active": True, "failed_logins": 0, "created_at": dt.datetime(2026, 1, 1)}
                for i in chunk
            ])  # fmt: skip
            connection.execute(insert(Contact), [
                {"subscriber_id": 1 + i, "nickname": f"c{i}x{k}", "phone": f"+2{i:09d}{k}", "first_name": "",
                 "last_name": ""}
                for i in chunk for k in range(CONTACTS_EACH)
            ])  # fmt: skip
        for start in range(0, cdrs, 100_000):
            connection.execute(insert(Cdr), [
                {"created_at": BASE + dt.timedelta(seconds=20 * i), "company_id": 1 + i % 100, "company_name": "x",
                 "subscriber_id": 1 + i % subscribers, "destination": "+15551230000", "direction": "out",
                 "role": "participant", "called_at": BASE, "disconnected_at": BASE}
                for i in range(start, min(cdrs, start + 100_000))
            ])  # fmt: skip
    engine.dispose()
    print(
        f"seeded {subscribers:,} subscribers (with logins, {CONTACTS_EACH * subscribers:,} contacts) and {cdrs:,} CDRs"
        f" in {time.perf_counter() - t0:.1f} s"
    )
    return subscribers, cdrs


CONTACTS_EACH = 5
BASE = dt.datetime(2026, 1, 1)
WEEK = (dt.datetime(2026, 3, 1), dt.datetime(2026, 3, 8))
COMPANY = 7


@dataclasses.dataclass
class Case:
    """One list endpoint: its query, token, where its cursors may fall, and the bare SQL of its page."""

    label: str
    query: str
    token: str
    where: list[Any]  # the page's filters, for the cursor rows and the bare SQL
    model: Any  # Subscriber, Contact (id keyset) or Cdr ((created_at, id) keyset)
    since: dt.datetime | None = None  # ``from``


def _cases(operator: str, company: str) -> list[Case]:
    week = "from=2026-03-01T00:00:00Z&to=2026-03-08T00:00:00Z&"
    before = [Cdr.created_at < WEEK[1]]
    live = [Subscriber.status != "deleted"]
    return [
        Case("/subscribers", "/subscribers?", operator, live, Subscriber),
        Case("/subscribers (company token)", "/subscribers?", company, [*live, Subscriber.company_id == COMPANY],
             Subscriber),
        Case("/contacts", "/contacts?", operator, [], Contact),
        Case("/contacts (company token)", "/contacts?", company, [Contact.subscriber_id.in_(
            select(Subscriber.id).where(Subscriber.company_id == COMPANY))], Contact),
        Case("/cdrs", "/cdrs?", operator, [], Cdr),
        Case(f"/cdrs?company_id={COMPANY}", f"/cdrs?company_id={COMPANY}&", operator, [Cdr.company_id == COMPANY],
             Cdr),
        Case("/cdrs (company token)", "/cdrs?", company, [Cdr.company_id == COMPANY], Cdr),
        Case("/cdrs?from=..&to=.. (1 week)", f"/cdrs?{week}", operator, before, Cdr, WEEK[0]),
        Case("/cdrs 1 week, company token", f"/cdrs?{week}", company, [Cdr.company_id == COMPANY, *before], Cdr,
             WEEK[0]),
    ]  # fmt: skip


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
        _, company = create_token(session, name="bench-co", scope=TokenScope.COMPANY, company_id=COMPANY, now=now)
        session.commit()
    client = create_app({"BRIDGE": config, "DATABASE_URL": url, "SECRET_KEY": "bench"}).test_client()
    rng = random.Random(17)
    print(f"REST pages of 100 at {pages} random cursors (Flask app, SQLite WAL)")
    with make_session_factory(engine)() as session:
        for case in _cases(operator, company):
            print(f"  {case.label:30s} {bench_case(client, session, case, pages, rng)}")
    engine.dispose()


def _cursor_rows(session: Any, case: Case, pages: int, rng: random.Random) -> list[tuple[Any, int]]:
    """``pages`` random rows the case's filters match: each page starts after one of them."""
    model = case.model
    since = [Cdr.created_at >= case.since] if case.since else []
    ids = list(session.scalars(select(model.id).where(*case.where, *since)))
    if not ids:
        return []
    chosen = [rng.choice(ids) for _ in range(pages)]
    if model is not Cdr:
        return [(None, i) for i in chosen]
    times = dict(session.execute(select(Cdr.id, Cdr.created_at).where(Cdr.id.in_(set(chosen)))).all())
    return [(times[i], i) for i in chosen]


def bench_case(client: Any, session: Any, case: Case, pages: int, rng: random.Random) -> str:
    """The API page after each cursor row, and the bare SQL of the same page (the baseline)."""
    after = _cursor_rows(session, case, pages, rng)
    if not after:
        return "(no rows match at this scale)"
    headers = {"Authorization": f"Bearer {case.token}"}
    cursors = [str(i) if when is None else encode_time_cursor(when, i) for when, i in after]

    def one(i: int) -> None:
        response = client.get(f"/api/v1{case.query}limit=100&cursor={cursors[i]}", headers=headers)
        assert response.status_code == 200, response.get_data(as_text=True)
        assert len(response.json["items"]) == 100 or response.json["next_cursor"] is None

    def raw_page(i: int) -> None:
        when, last = after[i]
        if when is None:
            stmt = select(case.model).where(*case.where, case.model.id > last).order_by(case.model.id)
            session.scalars(stmt.limit(101)).all()
        else:
            keyset = tuple_(Cdr.created_at, Cdr.id) > tuple_(literal(when, Cdr.created_at.type), last)
            lower = Cdr.created_at >= max(when, case.since or when)  # the API's one lower bound (time_page)
            stmt = select(*COLUMNS).where(*case.where, lower, keyset).order_by(Cdr.created_at, Cdr.id)
            session.execute(stmt.limit(101)).all()

    _, samples = _timed(pages, one)
    _, raw = _timed(pages, raw_page)
    return f"{_stats(samples)}   (bare SQL: {_stats(raw)})"


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
