"""The CDR package on PostgreSQL (the HA pairs' database) gives exactly what it gives on SQLite.

A throw-away PostgreSQL cluster (initdb as the ``postgres`` user, loopback, trust auth) runs the same
scenario as a SQLite database: writer, export, reports, hourly files, summary, feed lines, purge; every
output must be identical. It fails loudly when PostgreSQL is not installed.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import pathlib
from collections.abc import Iterator
from typing import Any

import pytest

from bridge.cdr.delivery import CdrPusher  # noqa: E402
from bridge.cdr.export import export_csv  # noqa: E402
from bridge.cdr.feed import CdrFeed  # noqa: E402
from bridge.cdr.reports import conference_report, minutes_per_day, usage_by_moderator  # noqa: E402
from bridge.cdr.retention import purge  # noqa: E402
from bridge.cdr.writer import complete_run, write_cdr  # noqa: E402
from bridge.config import from_dict  # noqa: E402
from bridge.db import make_engine, make_session_factory, upgrade  # noqa: E402
from tests.cdr.cdr_world import T0, add_cdr, add_run_with_legs, make_tenant  # noqa: E402
from tests.integration.postgres import throwaway_cluster

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    with throwaway_cluster("cdr-pg-") as root:
        yield f"{root}/postgres"


class Keep:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}

    def upload(self, local: pathlib.Path, remote_name: str) -> None:
        self.files[remote_name] = local.read_bytes()


def scenario(url: str, data_dir: pathlib.Path) -> dict[str, Any]:
    """Everything the CDR package produces from one small world, as comparable values."""
    upgrade(url)
    factory = make_session_factory(make_engine(url))
    tenant = make_tenant(factory)
    got: dict[str, Any] = {}
    with factory() as s:
        run, legs = add_run_with_legs(s, tenant, legs=3)
        for leg in legs:
            write_cdr(s, leg, now=T0 + dt.timedelta(minutes=4))
        run.ended_at, run.result = T0 + dt.timedelta(minutes=5), "completed"
        complete_run(s, run)
        add_cdr(s, company_id=tenant.other_company_id, company_name="Globex", direction="in", cli="+15550009999",
                joined_at=T0, disconnected_at=T0 + dt.timedelta(seconds=90, milliseconds=500),
                created_at=T0 + dt.timedelta(minutes=2))  # fmt: skip
        s.commit()
        out = io.StringIO()
        export_csv(s, out, start=T0 - dt.timedelta(hours=1), end=T0 + dt.timedelta(hours=1))
        got["export"] = out.getvalue()
        period = {"start": T0 - dt.timedelta(days=1), "end": T0 + dt.timedelta(days=1)}
        got["moderators"] = usage_by_moderator(s, **period)
        got["conference"] = conference_report(s, **period)
        got["days"] = minutes_per_day(s, **period, tz_name="America/New_York")
    config = from_dict({"node": {"name": "n", "data_dir": str(data_dir)},
                        "cdr": {"targets": [{"name": "p", "kind": "ftp"},
                                            {"name": "s", "kind": "ftp", "purpose": "summary"}]}})  # fmt: skip
    keep = Keep()
    pusher = CdrPusher(config, factory, transports={"p": keep, "s": keep})
    pusher.run_hourly(T0 + dt.timedelta(hours=1, minutes=5))
    pusher.run_summary(T0.date(), T0 + dt.timedelta(days=1))
    got["files"] = keep.files
    lines, _ = CdrFeed(factory)._fetch(0)
    got["feed"] = lines
    report = purge(factory, spool=config.data_path / "spool" / "cdr", retention_days=1, now=T0 + dt.timedelta(days=3))
    got["purge"] = (report.cdrs, report.files)
    return got


def test_postgres_gives_the_same_cdr_outputs_as_sqlite(postgres_url: str, tmp_path: pathlib.Path) -> None:
    on_sqlite = scenario("sqlite:///" + str(tmp_path / "t.db"), tmp_path / "sqlite")
    on_postgres = scenario(postgres_url, tmp_path / "postgres")
    assert len(list(csv.reader(io.StringIO(on_sqlite["export"])))) == 5  # header + 4 legs
    assert on_sqlite["purge"] == (4, 2)
    for key in on_sqlite:
        assert on_postgres[key] == on_sqlite[key], key
