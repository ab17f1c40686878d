"""``bridge rates`` / ``topup`` / ``lock`` through click's CliRunner on a migrated temporary database."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select

from bridge.cli import main
from bridge.db import make_engine, make_session_factory
from bridge.db.billing import LedgerMovement, RatePlanRow
from bridge.db.models import Company, Subscriber

CSV = "prefix,description,price_per_min,first_increment,next_increment\n4420,UK London,0.020,60,60\n44,UK,0.05,60,60\n"


@pytest.fixture
def config_file(tmp_path: Path, db_url: str) -> Path:
    path = tmp_path / "bridge.toml"
    path.write_text(
        f'[node]\ndata_dir = "{tmp_path}"\n[database]\nurl = "{db_url}"\n[numbering]\ndefault_country = "GB"\n'
    )
    engine = make_engine(db_url)
    with make_session_factory(engine)() as s:
        company = Company(name="Acme")
        s.add_all([company, Subscriber(company=company, name="Sam", mobile="+447700900001", prepaid=True)])
        s.commit()
    engine.dispose()
    return path


def run(config_file: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["--config", str(config_file), *args])


def test_import_rate_export_round_trip(config_file: Path, tmp_path: Path) -> None:
    plan = tmp_path / "plan.csv"
    plan.write_text(CSV)
    result = run(config_file, "rates", "import", str(plan))
    assert result.exit_code == 0, result.output
    assert "imported 2 rates as plan 'default'" in result.output
    rated = run(config_file, "rates", "rate", "+442079460000")
    assert rated.output.strip() == "+442079460000 -> UK London, 0.020/min, 60/60"
    assert "no rate" in run(config_file, "rates", "rate", "+33142000000").output
    exported = run(config_file, "rates", "export").output
    assert exported.splitlines()[1].startswith("44,UK,0.05") or "4420,UK London,0.020" in exported


def test_bad_line_imports_nothing(config_file: Path, tmp_path: Path, db_url: str) -> None:
    plan = tmp_path / "bad.csv"
    plan.write_text(CSV + "44x,Bad,abc\n")
    result = run(config_file, "rates", "import", str(plan), "--company", "Acme")
    assert result.exit_code == 1
    assert "line 4" in result.output and "nothing was imported" in result.output
    engine = make_engine(db_url)
    with make_session_factory(engine)() as s:
        assert s.scalars(select(RatePlanRow)).all() == []
    engine.dispose()


def test_topup_and_lock(config_file: Path, db_url: str) -> None:
    result = run(config_file, "topup", "2.50", "--subscriber", "07700900001")
    assert result.exit_code == 0, result.output
    assert "Sam: +2.50, balance 2.5000" in result.output
    assert run(config_file, "topup", "--subscriber", "07700900001", "--", "-1").exit_code == 1
    assert "locked (reasons: manual)" in run(config_file, "lock", "--subscriber", "07700900001").output
    assert "unlocked" in run(config_file, "unlock", "--subscriber", "07700900001").output
    engine = make_engine(db_url)
    with make_session_factory(engine)() as s:
        (move,) = s.scalars(select(LedgerMovement)).all()
        assert (move.kind, move.amount, move.by) == ("top_up", Decimal("2.5000"), "cli")
        sub = s.scalars(select(Subscriber)).one()
        assert Decimal(str(sub.balance)) == Decimal("2.5") and sub.lock_reasons == ""
    engine.dispose()
