"""``bridge room add/list/delete`` through click's CliRunner, on a temporary config and database."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select

from bridge.cli import main
from bridge.db import make_engine, make_session_factory
from bridge.db.models import Company, ConferenceRun, DnisKind, DnisNumber, Room, ServiceType

TOML = """
[node]
name = "rooms-test"
data_dir = "{data_dir}"

[database]
url = "{url}"

[dnis]
common = "+15550100"
pool = ["+15550101-+15550105"]

[conference]
max_participants = 60

[[room]]
number = "1001"
name = "Config room"
"""


@pytest.fixture
def config_file(tmp_path: Path, db_url: str) -> Path:
    path = tmp_path / "etc" / "bridge.toml"
    path.parent.mkdir()
    path.write_text(TOML.format(data_dir=tmp_path / "data", url=db_url))
    return path


def run(config_file: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["--config", str(config_file), *args], catch_exceptions=False)


def rooms(db_url: str) -> dict[str, Room]:
    engine = make_engine(db_url)
    with make_session_factory(engine)() as session:
        rows = {row.number: row for row in session.scalars(select(Room))}
        session.expunge_all()
    engine.dispose()
    return rows


def add_rows(db_url: str, *rows: object) -> None:
    engine = make_engine(db_url)
    with make_session_factory(engine)() as session:
        session.add_all(rows)
        session.commit()
    engine.dispose()


def test_add_with_every_option_stores_the_room(config_file: Path, db_url: str) -> None:
    add_rows(db_url, Company(name="Acme"))
    result = run(
        config_file,
        *("room", "add", "--number", "2001", "--name", "Board"),
        *("--pin", "4321", "--moderator-pin", "9999", "--max-members", "12", "--company", "Acme"),
    )
    assert result.exit_code == 0, result.output
    assert "2001 'Board' (PIN, moderator PIN, max 12)" in result.output
    row = rooms(db_url)["2001"]
    assert (row.name, row.pin, row.moderator_pin, row.max_members) == ("Board", "4321", "9999", 12)
    assert row.company_id is not None


def test_add_minimal_room_has_no_pin_and_the_default_capacity(config_file: Path, db_url: str) -> None:
    result = run(config_file, "room", "add", "--number", " 2002 ", "--name", " Open ")
    assert result.exit_code == 0, result.output
    assert "(no PIN, max 60)" in result.output
    row = rooms(db_url)["2002"]
    assert (row.name, row.pin, row.moderator_pin, row.max_members, row.company_id) == ("Open", "", "", 0, None)


def test_list_shows_rooms_sorted_without_pins(config_file: Path, db_url: str) -> None:
    assert run(config_file, "room", "list").output == "no rooms\n"
    add_rows(db_url, Company(name="Acme"))
    run(config_file, "room", "add", "--number", "3002", "--name", "B", "--pin", "55555", "--company", "Acme")
    run(config_file, "room", "add", "--number", "3001", "--name", "A")
    result = run(config_file, "room", "list")
    assert result.exit_code == 0
    assert result.output.splitlines() == ["3001\tA\t-\t(no PIN, max 60)", "3002\tB\tAcme\t(PIN, max 60)"]
    assert "55555" not in result.output


@pytest.mark.parametrize(
    ("number", "message"),
    [
        ("2001", "taken by room 2001 'Board'"),
        ("+2001", "taken by room 2001 'Board'"),  # another spelling of the same dialled number
        ("+15550100", "clashes with the DNIS number +15550100"),  # the configured common number
        ("15550103", "clashes with the DNIS number +15550103"),  # a configured pool number, other spelling
        ("+15557777", "clashes with the DNIS number +15557777"),  # a DNIS row added from the CLI/portal
        ("12a4", "is not a number"),
        ("", "is not a number"),
        ("1" * 21, "is not a number"),
    ],
)
def test_add_refuses_a_number_already_answered(config_file: Path, db_url: str, number: str, message: str) -> None:
    add_rows(db_url, Room(number="2001", name="Board"), DnisNumber(number="+15557777", kind=DnisKind.POOL, position=9))
    result = run(config_file, "room", "add", "--number", number, "--name", "Other")
    assert result.exit_code == 1
    assert message in result.output
    assert set(rooms(db_url)) == {"2001"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--pin", "12ab"), "--pin: PINs are 1 to 7 digits"),
        (("--pin", "12345678"), "--pin: PINs are 1 to 7 digits"),
        (("--pin", "-1"), "--pin: PINs are 1 to 7 digits"),
        (("--moderator-pin", "x"), "--moderator-pin: PINs are 1 to 7 digits"),
        (("--pin", "1234", "--moderator-pin", "1234"), "--moderator-pin: the moderator PIN must differ from the PIN"),
        (("--max-members", "-1"), "--max-members: 0 to 60"),
        (("--max-members", "61"), "--max-members: 0 to 60"),
        (("--company", "Nobody"), "no company named 'Nobody'"),
        (("--name", ""), "--name: 1 to 60 characters"),
        (("--name", "n" * 61), "--name: 1 to 60 characters"),
    ],
)
def test_add_refuses_bad_input_and_stores_nothing(
    config_file: Path, db_url: str, args: tuple[str, ...], message: str
) -> None:
    base = ["room", "add", "--number", "2005"]
    if "--name" not in args:
        base += ["--name", "Room"]
    result = run(config_file, *base, *args)
    assert result.exit_code == 1
    assert message in result.output
    assert rooms(db_url) == {}


def test_delete_removes_the_room_and_keeps_past_runs(config_file: Path, db_url: str) -> None:
    run(config_file, "room", "add", "--number", "2001", "--name", "Board")
    room_id = rooms(db_url)["2001"].id
    ended = dt.datetime(2026, 1, 1, 10, 0)
    add_rows(
        db_url,
        ConferenceRun(service_type=ServiceType.ROOM, subject="Board", room_id=room_id, ended_at=ended),
    )
    result = run(config_file, "room", "delete", "2001")
    assert result.exit_code == 0, result.output
    assert "room 2001 'Board' deleted" in result.output
    assert "[[room]]" not in result.output
    assert rooms(db_url) == {}
    engine = make_engine(db_url)
    with make_session_factory(engine)() as session:
        past = session.scalars(select(ConferenceRun)).one()
        assert (past.subject, past.service_type, past.room_id) == ("Board", ServiceType.ROOM, None)
    engine.dispose()


def test_delete_is_refused_while_the_room_runs(config_file: Path, db_url: str) -> None:
    run(config_file, "room", "add", "--number", "2001", "--name", "Board")
    add_rows(db_url, ConferenceRun(service_type=ServiceType.ROOM, room_id=rooms(db_url)["2001"].id))
    result = run(config_file, "room", "delete", "2001")
    assert result.exit_code == 1
    assert "has a running conference" in result.output
    assert set(rooms(db_url)) == {"2001"}


def test_delete_unknown_room_is_an_error(config_file: Path, db_url: str) -> None:
    result = run(config_file, "room", "delete", "9999")
    assert result.exit_code == 1
    assert "no room with number '9999'" in result.output


def test_delete_of_a_configured_room_warns_it_comes_back(config_file: Path, db_url: str) -> None:
    add_rows(db_url, Room(number="1001", name="Config room"))
    result = run(config_file, "room", "delete", "1001")
    assert result.exit_code == 0
    assert "adds it again at start" in result.output


def test_room_help_needs_no_config(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["--config", str(tmp_path / "missing.toml"), "room", "add", "--help"])
    assert result.exit_code == 0
    assert "--moderator-pin" in result.output
