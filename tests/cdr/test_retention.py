from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bridge.cdr.retention import purge
from bridge.cli import main
from bridge.db.models import Cdr, CdrDelivery, CdrFile
from tests.cdr.cdr_world import T0, Tenant, add_cdr

DAY = dt.timedelta(days=1)


def test_purge_removes_only_what_is_older_than_retention(
    tmp_path: Path, factory: sessionmaker[Session], tenant: Tenant
) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    now = T0
    with factory() as s:
        old = add_cdr(s, company_id=tenant.company_id, disconnected_at=now - 93 * DAY)
        edge = add_cdr(s, company_id=tenant.company_id, disconnected_at=now - 92 * DAY + dt.timedelta(seconds=1))
        new = add_cdr(s, company_id=tenant.company_id, disconnected_at=now - DAY)
        files = {}
        for name, start in (("n_2025122508.csv", now - 93 * DAY), ("n_2026032709.csv", now - DAY)):
            (spool / name).write_text("id\n")
            record = CdrFile(name=name, period_start=start, created_at=start)
            s.add(record)
            s.flush()
            s.add(CdrDelivery(file_id=record.id, target="primary", delivered_at=start))
            files[name] = record.id
        (spool / "n_2025010100.csv").write_text("id\n")  # an old stray file, not recorded
        (spool / "n_summary_20260327.csv").write_text("x\n")
        stale = spool / ".n_2026032710.csv.tmp"
        stale.write_text("half")
        os.utime(stale, (0, 0))
        (spool / "notes.txt").write_text("keep me")
        s.commit()
        keep_ids = {edge.id, new.id}
        assert old.id not in keep_ids

    report = purge(factory, spool=spool, retention_days=92, now=now)
    assert (report.cdrs, report.files, report.spool_files) == (1, 1, 3)
    with factory() as s:
        assert set(s.scalars(select(Cdr.id))) == keep_ids
        assert set(s.scalars(select(CdrFile.name))) == {"n_2026032709.csv"}
        assert set(s.scalars(select(CdrDelivery.file_id))) == {files["n_2026032709.csv"]}
    assert sorted(p.name for p in spool.iterdir()) == ["n_2026032709.csv", "n_summary_20260327.csv", "notes.txt"]
    again = purge(factory, spool=spool, retention_days=92, now=now)
    assert (again.cdrs, again.files, again.spool_files) == (0, 0, 0)


def test_cli_purge(tmp_path: Path, db_url: str, factory: sessionmaker[Session], tenant: Tenant) -> None:
    with factory() as s:
        add_cdr(s, company_id=tenant.company_id, disconnected_at=dt.datetime(2001, 1, 1))
        add_cdr(s, company_id=tenant.company_id, disconnected_at=dt.datetime.now(dt.UTC).replace(tzinfo=None))
        s.commit()
    config = tmp_path / "bridge.toml"
    config.write_text(f'[database]\nurl = "{db_url}"\n[node]\ndata_dir = "{tmp_path / "data"}"\n')
    result = CliRunner().invoke(main, ["--config", str(config), "cdr", "purge"])
    assert result.exit_code == 0, result.output
    assert "purged 1 CDRs" in result.output
    with factory() as s:
        assert len(s.scalars(select(Cdr)).all()) == 1
