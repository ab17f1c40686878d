from __future__ import annotations

import csv
import datetime as dt
import io
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy.orm import Session, sessionmaker

from bridge.cdr.cli import parse_when
from bridge.cdr.csvformat import HEADER
from bridge.cdr.export import export_csv
from bridge.cli import main
from tests.cdr.cdr_world import T0, Tenant, add_cdr


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_export_filters_period_company_and_moderator(factory: sessionmaker[Session], tenant: Tenant) -> None:
    with factory() as s:
        a = add_cdr(s, company_id=tenant.company_id, subscriber_id=tenant.subscriber_id, moderator_ident="alice")
        b = add_cdr(
            s,
            company_id=tenant.other_company_id,
            company_name="Globex",
            subscriber_id=tenant.other_subscriber_id,
            moderator_ident="+15551230002",
        )
        add_cdr(s, company_id=tenant.company_id, disconnected_at=T0 + dt.timedelta(days=2))  # outside
        s.commit()
        start, end = T0 - dt.timedelta(hours=1), T0 + dt.timedelta(hours=1)
        out = io.StringIO()
        assert export_csv(s, out, start=start, end=end) == 2
        text = out.getvalue()
        assert text.splitlines()[0] == ",".join(HEADER)
        rows = _rows(text)
        assert [int(r["id"]) for r in rows] == [a.id, b.id]
        # each company's own zone: Paris is UTC+1 on the 28th of March, New York UTC-4
        assert rows[0]["disconnected_at"] == "2026-03-28T10:59:00+01:00"
        assert rows[1]["disconnected_at"] == "2026-03-28T05:59:00-04:00"
        assert rows[0]["duration_s"] == "530" and rows[0]["minutes"] == "9"

        out = io.StringIO()
        assert export_csv(s, out, start=start, end=end, company="Globex") == 1
        assert _rows(out.getvalue())[0]["id"] == str(b.id)
        for moderator in ("alice", str(tenant.subscriber_id)):
            out = io.StringIO()
            assert export_csv(s, out, start=start, end=end, moderator=moderator) == 1
            assert _rows(out.getvalue())[0]["id"] == str(a.id)


def test_export_of_an_empty_period_is_just_the_header(factory: sessionmaker[Session], tenant: Tenant) -> None:
    with factory() as s:
        out = io.StringIO()
        assert export_csv(s, out, start=T0, end=T0 + dt.timedelta(hours=1)) == 0
        assert out.getvalue() == ",".join(HEADER) + "\n"


def test_parse_when_dates_and_zones() -> None:
    assert parse_when("2026-03-28", "UTC", end=False) == dt.datetime(2026, 3, 28)
    assert parse_when("2026-03-28", "UTC", end=True) == dt.datetime(2026, 3, 29)
    assert parse_when("2026-03-28T12:00", "Europe/Paris", end=False) == dt.datetime(2026, 3, 28, 11)


def test_cli_export_to_file(tmp_path: Path, db_url: str, factory: sessionmaker[Session], tenant: Tenant) -> None:
    with factory() as s:
        add_cdr(s, company_id=tenant.company_id)
        s.commit()
    config = tmp_path / "bridge.toml"
    config.write_text(f'[database]\nurl = "{db_url}"\n[node]\ndata_dir = "{tmp_path / "data"}"\n')
    out = tmp_path / "out.csv"
    result = CliRunner().invoke(
        main, ["--config", str(config), "cdr", "export", "--from", "2026-03-28", "--to", "2026-03-28", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert len(_rows(out.read_text())) == 1
    bad = CliRunner().invoke(main, ["--config", str(config), "cdr", "export", "--from", "28/03", "--to", "2026-03-28"])
    assert bad.exit_code != 0 and "expected YYYY-MM-DD" in bad.output
