from __future__ import annotations

import datetime as dt

from hypothesis import example, given, settings
from hypothesis import strategies as st

from bridge.cdr.csvformat import (
    HEADER,
    SOURCE_COLUMNS,
    TimeRenderer,
    billed_minutes,
    duration_s,
    format_row,
    render_time,
    zone,
)


def row(**values: object) -> list[object]:
    base: dict[str, object] = {name: None for name in SOURCE_COLUMNS}
    base.update(values)
    return [base[name] for name in SOURCE_COLUMNS]


def test_header_is_the_source_columns_plus_duration_and_minutes() -> None:
    assert HEADER[: len(SOURCE_COLUMNS)] == SOURCE_COLUMNS
    assert HEADER[-2:] == ("duration_s", "minutes")
    assert HEADER[0] == "id"


def test_render_time_in_company_zone_across_dst() -> None:
    paris = zone("Europe/Paris")
    assert render_time(dt.datetime(2026, 3, 29, 0, 59, 59), paris) == "2026-03-29T01:59:59+01:00"
    assert render_time(dt.datetime(2026, 3, 29, 1, 0, 0), paris) == "2026-03-29T03:00:00+02:00"
    assert render_time(None, paris) == ""
    assert render_time("2026-01-01 23:30:00.000000", zone("Asia/Kolkata")) == "2026-01-02T05:00:00+05:30"


def test_unknown_zone_falls_back_to_utc() -> None:
    assert zone("Mars/Olympus") is dt.UTC
    assert zone("") is dt.UTC
    assert zone("../../etc/passwd") is dt.UTC


def test_duration_and_minutes() -> None:
    joined = dt.datetime(2026, 1, 1, 10, 0, 0)
    assert duration_s(joined, joined + dt.timedelta(seconds=61, milliseconds=500)) == 62
    assert duration_s(joined, joined + dt.timedelta(seconds=61, milliseconds=499)) == 61
    assert duration_s(None, joined) == 0
    assert duration_s(joined, joined - dt.timedelta(seconds=5)) == 0
    assert duration_s("2026-01-01 10:00:00.000000", "2026-01-01 10:01:00.000000") == 60
    assert [billed_minutes(s) for s in (0, 1, 60, 61, 120)] == [0, 1, 1, 2, 2]


def test_format_row_renders_times_flags_and_derived_columns() -> None:
    fields = format_row(
        row(
            id=7,
            company_name="Acme, Inc.",
            joined_at="2026-07-01 10:00:00.250000",
            disconnected_at=dt.datetime(2026, 7, 1, 10, 2, 1, 250000),
            recording=True,
            scheduled=None,
            packet_loss=0.5,
        ),
        "Europe/Paris",
    )
    named = dict(zip(HEADER, fields, strict=True))
    assert named["id"] == "7"
    assert named["company_name"] == "Acme, Inc."
    assert named["joined_at"] == "2026-07-01T12:00:00+02:00"
    assert named["disconnected_at"] == "2026-07-01T12:02:01+02:00"
    assert named["called_at"] == ""
    assert (named["recording"], named["scheduled"]) == ("1", "0")
    assert (named["duration_s"], named["minutes"]) == ("121", "3")


zones = st.sampled_from(["UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata", "Asia/Kathmandu",
                         "Australia/Lord_Howe", "America/St_Johns", "Pacific/Chatham"])  # fmt: skip
times = st.datetimes(min_value=dt.datetime(1990, 1, 1), max_value=dt.datetime(2037, 12, 31))


@settings(max_examples=400)
@given(zones, times)
@example("Europe/Paris", dt.datetime(2026, 3, 29, 0, 59, 59))  # DST starts at 01:00 UTC
@example("Europe/Paris", dt.datetime(2026, 3, 29, 1, 0, 0))
@example("Europe/Paris", dt.datetime(2026, 10, 25, 0, 59, 59))  # and ends at 01:00 UTC
@example("Europe/Paris", dt.datetime(2026, 10, 25, 1, 0, 0))
@example("America/St_Johns", dt.datetime(2026, 3, 8, 5, 29, 59))  # a change in the middle of a UTC hour
@example("America/St_Johns", dt.datetime(2026, 3, 8, 5, 30, 0))
@example("Australia/Lord_Howe", dt.datetime(2026, 4, 4, 14, 59, 59))  # a 30-minute DST shift
@example("Australia/Lord_Howe", dt.datetime(2026, 4, 4, 15, 0, 0))
def test_fast_renderer_matches_the_plain_conversion(name: str, when: dt.datetime) -> None:
    """The per-minute cache must agree with a full conversion, DST edges and odd offsets included."""
    tz = zone(name)
    renderer = TimeRenderer(tz)
    text = when.strftime("%Y-%m-%d %H:%M:%S.%f")
    assert renderer(text) == render_time(when, tz)
    assert renderer(when) == render_time(when, tz)  # datetimes (PostgreSQL) take the same path
    assert renderer(text) == render_time(when, tz)  # and the cached second hit too


def test_short_rows_are_refused_with_a_clear_error() -> None:
    try:
        format_row([1, 2, 3])
    except ValueError as exc:
        assert "expected" in str(exc)
    else:  # pragma: no cover
        raise AssertionError("short row accepted")


def test_a_damaged_time_is_written_as_stored_and_gives_no_duration() -> None:
    fields = dict(
        zip(
            HEADER,
            format_row(
                row(id=1, created_at="junk!", joined_at="garbage", disconnected_at="2026-07-01 10:00:00"),
                "Europe/Paris",
            ),  # fmt: skip
            strict=True,
        )
    )
    assert (fields["created_at"], fields["joined_at"]) == ("junk!", "garbage")
    assert fields["disconnected_at"] == "2026-07-01T12:00:00+02:00"
    assert (fields["duration_s"], fields["minutes"]) == ("0", "0")
    assert TimeRenderer(zone("Europe/Paris"))("9999-12-31 23:30:00.000000") == "9999-12-31 23:30:00.000000"
    assert duration_s("2026-07-01 10:00:00+00:00", "2026-07-01 10:01:00") == 0  # aware minus naive
