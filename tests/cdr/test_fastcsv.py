"""The SQLite fast export path writes exactly the bytes of the generic path and of a plain reference renderer."""

from __future__ import annotations

import csv
import datetime as dt
import io
import random
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select, text
from sqlalchemy.orm import Session, sessionmaker

from bridge.cdr.csvformat import HEADER, SOURCE_COLUMNS, TimeRenderer, billed_minutes, duration_s, render_time, zone
from bridge.cdr.export import cdr_select, export_csv, period_filter, scope_filter, stream_rows, write_csv, write_fast
from bridge.cdr.fastcsv import ZoneHours, clean_line, clean_lines, csv_special_chars
from bridge.db.models import Cdr, Company

PARIS_SPRING = dt.datetime(2026, 3, 29, 1, 0)  # Europe/Paris 02:00 +01:00 -> 03:00 +02:00
NEW_YORK_FALL = dt.datetime(2026, 11, 1, 6, 0)  # America/New_York 02:00 -04:00 -> 01:00 -05:00
START, END = dt.datetime(2026, 1, 1), dt.datetime(2027, 1, 1)
ZONES = ("Europe/Paris", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe", "America/St_Johns", "UTC")
TEXTS = ("plain", "Acme, Inc.", 'say "hi"', "two\nlines", "cr\rhere", "", "tab\there", "Zoë; ünïcode", "unit\x1fsep")


def reference_csv(session: Session, start: dt.datetime, end: dt.datetime) -> str:
    """A plain renderer: one zoneinfo conversion per value, no caches, ``csv.writer`` per row."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HEADER)
    rows = session.execute(cdr_select(*period_filter(start, end))).all()
    for row in rows:
        values: dict[str, Any] = dict(zip(SOURCE_COLUMNS, row, strict=False))
        tz = zone(row[len(SOURCE_COLUMNS)])
        fields: list[object] = []
        for name in SOURCE_COLUMNS:
            value = values[name]
            if name.endswith("_at"):
                value = render_time(value, tz)
            elif name in ("scheduled", "activation_pin_used", "recording"):
                value = 1 if value else 0
            fields.append(value)
        seconds = duration_s(values["joined_at"], values["disconnected_at"])
        writer.writerow([*fields, seconds, billed_minutes(seconds)])
    return out.getvalue()


def generic_csv(session: Session, start: dt.datetime, end: dt.datetime) -> str:
    """The generic (PostgreSQL) path on the same database."""
    out = io.StringIO()
    write_csv(stream_rows(session, cdr_select(*period_filter(start, end))), out)
    return out.getvalue()


def fast_csv(session: Session, start: dt.datetime, end: dt.datetime, *, chunk: int = 5000, overlap: bool = True) -> str:
    out = io.StringIO()
    write_fast(session, out, start=start, conditions=scope_filter(end), chunk=chunk, overlap=overlap)
    return out.getvalue()


def companies(session: Session) -> list[int | None]:
    ids: list[int | None] = []
    for name in ZONES:
        company = Company(name=f"Co {name}", timezone=name)
        session.add(company)
        session.flush()
        ids.append(company.id)
    return [*ids, None, 9999]  # no company, a deleted company: UTC


def add_leg(
    session: Session,
    company_id: int | None,
    gone: dt.datetime,
    rng: random.Random,
    texts: Sequence[str] = TEXTS,
    **extra: Any,
) -> Cdr:
    joined = gone - dt.timedelta(seconds=rng.randint(0, 4000), microseconds=rng.randint(0, 999_999))
    called = joined - dt.timedelta(seconds=rng.randint(1, 40), microseconds=rng.randint(0, 999_999))
    fields: dict[str, Any] = {
        "created_at": gone + dt.timedelta(seconds=rng.randint(0, 90), microseconds=rng.randint(0, 999_999)),
        "company_id": company_id,
        "company_name": rng.choice(texts),
        "moderator_ident": rng.choice(texts),
        "moderator_name": rng.choice(texts),
        "subscriber_id": rng.choice([None, 1, 123456789]),
        "service_id": rng.choice([None, 7]),
        "service_subject": rng.choice(texts),
        "service_started_at": rng.choice([None, called - dt.timedelta(hours=rng.randint(0, 3))]),
        "service_completed_at": rng.choice([None, gone + dt.timedelta(minutes=rng.randint(0, 200))]),
        "scheduled": rng.random() < 0.5,
        "called_at": called,
        "joined_at": rng.choice([joined, joined, None]),
        "disconnected_at": gone,
        "call_id": rng.choice(texts),
        "recording": rng.random() < 0.5,
        "packet_loss": rng.choice([0.0, 0.25, 1 / 3, 0.1 + 0.2, 1e-7, 1e16, 12.5, 0.0033222591362126247]),
    }
    fields.update(extra)
    cdr = Cdr(**fields)
    session.add(cdr)
    return cdr


def around(edge: dt.datetime, rng: random.Random, count: int) -> list[dt.datetime]:
    """Times within two hours of ``edge`` (both sides), to the microsecond."""
    return [edge + dt.timedelta(seconds=rng.uniform(-7200, 7200)) for _ in range(count)]


def test_fast_path_equals_a_plain_reference_around_dst_changes_in_two_zones(factory: sessionmaker[Session]) -> None:
    rng = random.Random(11)
    with factory() as s:
        paris, new_york = (Company(name=n, timezone=n) for n in ("Europe/Paris", "America/New_York"))
        s.add_all([paris, new_york])
        s.flush()
        for edge in (PARIS_SPRING, NEW_YORK_FALL, dt.datetime(2026, 3, 8, 7, 0), dt.datetime(2026, 10, 25, 1, 0)):
            for when in around(edge, rng, 150):
                add_leg(s, rng.choice([paris.id, new_york.id]), when, rng, texts=("Acme", "x@y", ""))
        for when in (PARIS_SPRING - dt.timedelta(microseconds=1), PARIS_SPRING):  # the exact edge
            add_leg(
                s,
                paris.id,
                when,
                rng,
                ("a",),
                created_at=when,
                called_at=when,
                joined_at=when - dt.timedelta(seconds=1),
            )
        s.commit()
        expected = reference_csv(s, START, END)
        assert len(list(csv.reader(io.StringIO(expected)))) == 603
        assert "2026-03-29T01:59:59+01:00" in expected and "2026-03-29T03:00:00+02:00" in expected
        assert fast_csv(s, START, END) == expected
        assert fast_csv(s, START, END, chunk=7) == expected
        assert fast_csv(s, START, END, chunk=50, overlap=False) == expected
        edge = PARIS_SPRING, PARIS_SPRING + dt.timedelta(seconds=1)  # a period starting exactly at a CDR
        assert fast_csv(s, *edge) == reference_csv(s, *edge)
        assert reference_csv(s, *edge).count("\n") == 2  # the header and the CDR at the edge, not the one before
        out = io.StringIO()
        assert export_csv(s, out, start=START, end=END) == len(list(csv.reader(io.StringIO(expected)))) - 1
        assert out.getvalue() == expected


def test_fast_path_equals_the_generic_path_on_awkward_rows(factory: sessionmaker[Session]) -> None:
    """Odd zones, NULLs, deleted companies, text that needs quoting, floats, and times not stored by the ORM."""
    rng = random.Random(5)
    with factory() as s:
        ids = companies(s)
        edges = (PARIS_SPRING, NEW_YORK_FALL, dt.datetime(2026, 4, 4, 15, 0), dt.datetime(2026, 3, 8, 5, 30))
        for edge in edges:
            for when in around(edge, rng, 60):
                add_leg(s, rng.choice(ids), when, rng)
        s.flush()
        odd = s.scalars(select(Cdr.id).order_by(Cdr.id).limit(8)).all()
        stored = ["2026-03-29 01:30", "2026-03-29T01:30:00", "2026-03-29 01:30:00", "", "2026-03-29 01:30:00+00:00"]
        damaged = ["junk!", "9999-12-31 23:30:00.000000"]  # not a time; +01:00 overflows the year
        for cdr_id, created in zip(odd, [*stored, "2026-03-29 01:30:00.5", *damaged], strict=True):
            s.execute(
                text(
                    "UPDATE cdr SET created_at = :c, company_id = :p, joined_at = called_at,"
                    " service_started_at = called_at, service_completed_at = disconnected_at, company_name = 'p',"
                    " moderator_ident = 'p', moderator_name = 'p', service_subject = 'p', call_id = 'p' WHERE id = :i"
                ),
                {"c": created, "p": ids[0], "i": cdr_id},
            )
        s.execute(text("UPDATE cdr SET scheduled = 2 WHERE id = :i"), {"i": odd[0]})
        s.execute(text("UPDATE cdr SET joined_at = 'garbage' WHERE id = :i"), {"i": odd[1]})
        s.commit()
        expected = generic_csv(s, START, END)
        out = io.StringIO()
        assert export_csv(s, out, start=START, end=END) == 240
        assert out.getvalue() == expected
        assert '"Acme, Inc."' in expected and '"two\nlines"' in expected and "0.3333333333333333" in expected
        assert ",junk!," in expected and ",9999-12-31 23:30:00.000000," in expected  # damaged: written as stored
        assert fast_csv(s, START, END) == expected
        assert fast_csv(s, START, END, chunk=1) == expected
        assert fast_csv(s, START, END, chunk=13, overlap=False) == expected
        assert "unit\x1fsep" in expected  # the fast rows' separator in a text: that chunk went the generic way
        assert expected == reference_csv(s, START, END)


rows_strategy = st.lists(
    st.tuples(
        st.sampled_from(range(len(ZONES) + 2)),
        st.datetimes(min_value=dt.datetime(2026, 1, 2), max_value=dt.datetime(2026, 12, 30)),
        st.integers(min_value=0, max_value=20_000),
        st.text(alphabet=st.sampled_from('ab,"\n\r; é'), max_size=6),
        st.floats(allow_nan=False, allow_infinity=False),
        st.booleans(),
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=rows_strategy)
def test_fast_path_property(factory: sessionmaker[Session], rows: Sequence[tuple[Any, ...]]) -> None:
    with factory() as s:
        s.execute(delete(Cdr))
        s.execute(delete(Company))
        ids = companies(s)
        for n, (which, gone, connected, label, loss, flag) in enumerate(rows):
            joined = gone - dt.timedelta(seconds=connected, microseconds=n * 37_001 % 1_000_000)
            s.add(
                Cdr(
                    created_at=gone,
                    company_id=ids[which],
                    company_name=label,
                    moderator_name=label[::-1],
                    called_at=joined - dt.timedelta(seconds=n),
                    joined_at=joined if n % 5 else None,
                    disconnected_at=gone,
                    service_completed_at=gone + dt.timedelta(hours=n),
                    recording=flag,
                    packet_loss=loss,
                )
            )
        s.commit()
        assert fast_csv(s, START, END, chunk=4) == reference_csv(s, START, END)


def test_zone_hours_serves_only_whole_hour_constant_offsets() -> None:
    hours = ZoneHours(TimeRenderer(zone("Europe/Paris")))
    assert hours["2026-03-29 00"] == ("2026-03-29T01", "+01:00")
    assert hours["2026-03-29 01"] == ("2026-03-29T03", "+02:00")
    with pytest.raises(KeyError):
        hours["2026-03-29T01"]  # not the stored form: the slow path renders it
    with pytest.raises(KeyError):
        hours["2026-03-2"]
    kolkata = ZoneHours(TimeRenderer(zone("Asia/Kolkata")))
    with pytest.raises(KeyError):
        kolkata["2026-03-29 01"]  # +05:30 moves the minutes too
    st_johns = ZoneHours(TimeRenderer(zone("America/St_Johns")))
    assert st_johns.get("2026-03-08 05") is None
    with pytest.raises(KeyError):
        st_johns["2026-03-08 05"]  # the offset changes at 05:30 UTC


def test_quoting_check_knows_what_csv_quotes() -> None:
    assert {",", '"', "\n"} <= set(csv_special_chars())
    line = ",".join(["1"] * len(HEADER)) + "\n"
    assert clean_line(line) and clean_lines(line * 3, 3)
    assert not clean_line(line.replace("1", "1,", 1))
    assert not clean_line(line.replace("1", '"', 1))
    assert not clean_lines(line + line.replace("1", "a\nb", 1), 2)
