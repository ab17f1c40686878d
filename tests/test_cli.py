"""The ``bridge`` CLI through click's CliRunner, on a temporary config and database."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select
from werkzeug.security import check_password_hash

from bridge.cli import main
from bridge.db import make_engine, make_session_factory
from bridge.db.models import Account, Company, Contact, DnisNumber, InstantConference, Role, Room, Subscriber

TOML = """
[node]
name = "cli-test"
data_dir = "{data_dir}"

[database]
url = "{url}"

[dnis]
common = "+15550100"
pool = ["+15550101-+15550105"]

[[room]]
number = "1001"
name = "Demo room"
"""


@pytest.fixture
def config_file(tmp_path: Path, db_url: str) -> Path:
    path = tmp_path / "etc" / "bridge.toml"
    path.parent.mkdir()
    path.write_text(TOML.format(data_dir=tmp_path / "data", url=db_url))
    return path


def run(config_file: Path, *args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(main, ["--config", str(config_file), *args], input=input, catch_exceptions=False)


def query(db_url: str, model: type) -> list:  # type: ignore[type-arg]
    engine = make_engine(db_url)
    with make_session_factory(engine)() as session:
        rows = list(session.scalars(select(model)))
    engine.dispose()
    return rows


def _command_paths(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = [prefix]
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            paths += _command_paths(command, (*prefix, name))
        else:
            paths.append((*prefix, name))
    return paths


def test_every_command_has_help() -> None:
    paths = _command_paths(main)
    mine = {("db", "upgrade"), ("company", "add"), ("subscriber", "add"), ("account", "add"), ("dnis", "add")}
    assert mine | {("sms", "simulate"), ("demo", "load")} <= set(paths)
    runner = CliRunner()
    for path in paths:
        # --help must work even when the config cannot be read
        result = runner.invoke(main, ["--config", "/nonexistent.toml", *path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        assert "Usage: " in result.output


def test_missing_config_is_a_clear_error() -> None:
    result = CliRunner().invoke(main, ["--config", "/nonexistent.toml", "company", "list"])
    assert result.exit_code == 1
    assert "config: /nonexistent.toml: config file not found" in result.output


def test_db_upgrade_from_empty(tmp_path: Path) -> None:
    path = tmp_path / "etc" / "bridge.toml"
    path.parent.mkdir()
    path.write_text(f'[node]\ndata_dir = "{tmp_path / "data"}"\n')
    result = run(path, "db", "upgrade")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "data" / "bridge.db").exists()
    assert run(path, "company", "list").output == "no companies\n"


def test_command_on_unmigrated_database_explains(tmp_path: Path) -> None:
    path = tmp_path / "bridge.toml"
    path.write_text(f'[node]\ndata_dir = "{tmp_path / "data"}"\n')
    result = CliRunner().invoke(main, ["--config", str(path), "company", "list"])
    assert result.exit_code == 1
    assert "did you run `bridge db upgrade`?" in result.output


def test_company_add_and_list(config_file: Path, db_url: str) -> None:
    assert run(config_file, "company", "add", "Acme", "--timezone", "Europe/Paris").output == (
        "company 1: Acme (Europe/Paris)\n"
    )
    assert run(config_file, "company", "add", "Beta").exit_code == 0
    assert (
        run(config_file, "company", "list").output
        == "1\tAcme\tEurope/Paris\t0 subscriber(s)\n2\tBeta\tUTC\t0 subscriber(s)\n"
    )
    duplicate = run(config_file, "company", "add", "Acme")
    assert duplicate.exit_code == 1 and "company 'Acme' exists" in duplicate.output
    bad_tz = run(config_file, "company", "add", "Gamma", "--timezone", "Mars/Olympus")
    assert bad_tz.exit_code == 1 and "unknown time zone 'Mars/Olympus'" in bad_tz.output
    assert [c.name for c in query(db_url, Company)] == ["Acme", "Beta"]


def test_subscriber_add_with_portal_login(config_file: Path, db_url: str) -> None:
    run(config_file, "company", "add", "Acme")
    result = run(
        config_file,
        "subscriber",
        "add",
        "--company",
        "Acme",
        "--name",
        "Alice",
        "--mobile",
        "(555) 123-0001",
        "--portal-user",
        "alice",
        "--password",
        "alice-pass",
    )
    assert result.exit_code == 0, result.output
    assert result.output == "subscriber 1: Alice +15551230001 (Acme)\nportal login 'alice' (subscriber)\n"
    (sub,) = query(db_url, Subscriber)
    assert sub.mobile == "+15551230001"
    (account,) = query(db_url, Account)
    assert (account.username, account.role, account.subscriber_id, account.company_id) == (
        "alice",
        Role.SUBSCRIBER,
        sub.id,
        sub.company_id,
    )
    assert account.password_hash != "alice-pass"
    assert check_password_hash(account.password_hash, "alice-pass")
    assert "1\tAlice\t+15551230001\tAcme\tactive" in run(config_file, "subscriber", "list", "--company", "Acme").output


def test_subscriber_add_errors_leave_nothing_behind(config_file: Path, db_url: str) -> None:
    run(config_file, "company", "add", "Acme")
    base = ["subscriber", "add", "--company", "Acme", "--name", "A"]
    cases = {
        ("--mobile", "12"): "--mobile: '12' is not a possible phone number",
        ("--mobile", "5551230001", "--password", "x" * 10): "--password needs --portal-user",
        ("--mobile", "5551230001", "--portal-user", "a", "--password", "short"): "at least 8 characters",
    }
    for args, message in cases.items():
        result = run(config_file, *base, *args)
        assert result.exit_code == 1 and message in result.output, (args, result.output)
    unknown = run(config_file, "subscriber", "add", "--company", "Nope", "--name", "A", "--mobile", "5551230001")
    assert "no company named 'Nope'" in unknown.output
    assert query(db_url, Subscriber) == [] and query(db_url, Account) == []  # the failed account rolled back the row
    assert run(config_file, *base, "--mobile", "5551230001").exit_code == 0
    again = run(config_file, *base, "--mobile", "+15551230001")
    assert again.exit_code == 1 and "mobile +15551230001 is already registered" in again.output


def test_subscriber_password_prompt(config_file: Path, db_url: str) -> None:
    run(config_file, "company", "add", "Acme")
    args = ["subscriber", "add", "--company", "Acme", "--name", "A", "--mobile", "5551230001", "--portal-user", "a"]
    result = run(config_file, *args, input="prompted-pw\nprompted-pw\n")
    assert result.exit_code == 0, result.output
    assert check_password_hash(query(db_url, Account)[0].password_hash, "prompted-pw")


def test_account_add(config_file: Path, db_url: str) -> None:
    run(config_file, "company", "add", "Acme")
    ok = run(config_file, "account", "add", "--role", "operator", "--username", "op", "--password", "op-password")
    assert ok.output == "portal login 'op' (operator)\n"
    admin = ["account", "add", "--role", "company_admin", "--username", "adm", "--password", "adm-password"]
    assert "a company_admin needs --company" in run(config_file, *admin).output
    assert run(config_file, *admin, "--company", "Acme").exit_code == 0
    taken = run(config_file, "account", "add", "--role", "operator", "--username", "op", "--password", "zzzzzzzzz")
    assert taken.exit_code == 1 and "username 'op' is taken" in taken.output
    op_company = run(
        config_file,
        "account",
        "add",
        "--role",
        "operator",
        "--username",
        "o2",
        "--password",
        "o2-password",
        "--company",
        "Acme",
    )
    assert "an operator belongs to no company" in op_company.output
    bad_role = run(config_file, "account", "add", "--role", "root", "--username", "r", "--password", "rrrrrrrrr")
    assert bad_role.exit_code == 2
    rows = {a.username: a for a in query(db_url, Account)}
    assert set(rows) == {"op", "adm"}
    assert rows["op"].role == Role.OPERATOR and rows["op"].company_id is None
    assert rows["adm"].role == Role.COMPANY_ADMIN and rows["adm"].company_id is not None


def test_dnis_add_and_list(config_file: Path, db_url: str) -> None:
    result = run(config_file, "dnis", "add", "--common", "+15550100", "--pool", "+15550101-+15550103")
    assert result.output == "4 DNIS number(s) added\n"
    assert run(config_file, "dnis", "add", "--pool", "+15550103-+15550104").output == "1 DNIS number(s) added\n"
    listing = run(config_file, "dnis", "list").output.splitlines()
    assert listing[0] == "+15550100\tcommon\t0\t0 IC(s)"
    assert listing[-1] == "+15550104\tpool\t4\t0 IC(s)"
    assert "give --common and/or --pool" in run(config_file, "dnis", "add").output
    bad = run(config_file, "dnis", "add", "--pool", "100-1")
    assert bad.exit_code == 1 and "--pool[0]: bad range" in bad.output
    assert len(query(db_url, DnisNumber)) == 5


def test_sms_simulate_runs_commands_and_commits(config_file: Path, db_url: str) -> None:
    run(config_file, "company", "add", "Acme")
    run(config_file, "subscriber", "add", "--company", "Acme", "--name", "Alice", "--mobile", "5551230001")
    run(config_file, "dnis", "add", "--common", "+15550100", "--pool", "+15550101-+15550103")
    sim = ["sms", "simulate", "--from", "15551230001"]
    assert run(config_file, *sim, "UC", "bob", "5551230002", "Bob").output == "UC: added bob +15551230002 Bob\n"
    assert run(config_file, *sim, "CC2 bob").exit_code == 0
    launch = run(config_file, *sim, "IC2")
    (ic,) = query(db_url, InstantConference)
    assert launch.output.splitlines() == [
        f"IC2: calling you and 1 other. Rejoin: +15550100 PIN {ic.user_pin}",
        f"action: LaunchConference(subscriber_id=1, numbers=('+15551230001', '+15551230002'), ic_id={ic.id})",
    ]
    error = run(config_file, *sim, "UC", "bob", "5551230002", "Bob")
    assert error.exit_code == 0 and error.output == "UC: nickname 'bob' exists - use UE to edit\n"
    refused = run(config_file, "sms", "simulate", "--from", "+15559990000", "UL")
    assert refused.exit_code == 0 and refused.output.startswith("Sorry, this number is not registered")
    dash = run(config_file, *sim, "--", "UE", "bob", "5551230002", "Bob", "-Team")
    assert dash.output == "UE: no such group 'Team'\n"


def test_demo_load(config_file: Path, db_url: str) -> None:
    result = run(config_file, "demo", "load", "--if-empty")
    assert result.exit_code == 0, result.output
    assert "6 DNIS number(s), 1 room(s) added" in result.output
    assert "operator/operator-demo (operator)" in result.output
    assert "admin/admin-demo (company_admin)" in result.output
    assert "subscriber/subscriber-demo (subscriber)" in result.output
    assert run(config_file, "demo", "load", "--if-empty").output == "database not empty: demo data not loaded\n"
    again = run(config_file, "demo", "load")
    assert again.exit_code == 1 and "already loaded" in again.output
    (sub,) = query(db_url, Subscriber)
    assert sub.mobile == "+15551230001"
    (ic,) = query(db_url, InstantConference)
    assert ic.slot == 1 and ic.dnis_id is not None
    assert [r.number for r in query(db_url, Room)] == ["1001"]
    accounts = {a.username: a for a in query(db_url, Account)}
    assert check_password_hash(accounts["operator"].password_hash, "operator-demo")
    assert accounts["subscriber"].subscriber_id == sub.id
    launch = run(config_file, "sms", "simulate", "--from", "+15551230001", "IC1")
    assert "numbers=('+15551230001', '+15551230002', '+15551230003', '+15551230004'), ic_id=1" in launch.output


def test_contact_add_reaches_the_provisioning_core(config_file: Path, db_url: str) -> None:
    """A contact named like a group is refused in the core's words, as by SMS ``UC`` and the portal."""
    run(config_file, "company", "add", "Acme")
    run(config_file, "subscriber", "add", "--company", "Acme", "--name", "Alice", "--mobile", "5551230001")
    first = run(config_file, "contact", "add", "--subscriber", "5551230001", "bob", "5551230002", "--group", "Team")
    assert first.output == "contact 1: bob +15551230002 (Alice); group Team (new)\n"
    refused = run(config_file, "contact", "add", "--subscriber", "5551230001", "team", "5551230003")
    assert refused.exit_code == 1
    assert refused.output == "Error: 'team' is a group name; pick another nickname\n"
    assert [c.nickname for c in query(db_url, Contact)] == ["bob"]
