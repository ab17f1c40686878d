from __future__ import annotations

import datetime as dt
from decimal import Decimal as D

from hypothesis import given
from hypothesis import strategies as st

from bridge.billing.ratecsv import COLUMNS, ImportReport, LineError, dump_plan, load_plan
from bridge.billing.rating import PeakWindow, RateEntry, RatePlan

HEADER = ",".join(COLUMNS)
GOOD = f"""{HEADER}
44,UK,0.050,0,60,60,,,,0
4420,UK London,0.020,0.10,30,6,0.040,08:00,20:00,0
1,"US, Canada",0.010,,1,1,,,,0.005
"""


def errors(text: str | bytes) -> list[tuple[int, str]]:
    result = load_plan(text, name="t")
    assert isinstance(result, ImportReport), result
    return [(e.line, e.column) for e in result.errors]


def test_a_good_file_imports() -> None:
    plan = load_plan(GOOD, name="std")
    assert isinstance(plan, RatePlan)
    london = plan.lookup("+442071234567")
    assert london == RateEntry(
        "4420", "UK London", D("0.020"), D("0.10"), 30, 6, PeakWindow(dt.time(8), dt.time(20), D("0.040"))
    )
    assert plan.lookup("+12125550100").description == "US, Canada"  # type: ignore[union-attr]
    assert len(plan) == 3


def test_optional_columns_may_be_left_out_and_order_is_free() -> None:
    plan = load_plan("description,prefix,price_per_min\nFrance,+33,0.03\n", name="fr")
    assert plan == RatePlan("fr", (RateEntry("33", "France", D("0.03")),))


def test_a_bom_blank_lines_and_crlf_are_accepted() -> None:
    plan = load_plan(("\ufeff" + GOOD.replace("\n", "\r\n") + "\r\n,,,,,,,,,\r\n").encode(), name="std")
    assert isinstance(plan, RatePlan) and len(plan) == 3


def test_every_bad_line_is_reported_with_its_column_and_nothing_is_imported() -> None:
    text = f"""{HEADER}
44,UK,0.050,0,60,60,,,,0
4x,Bad prefix,0.050,0,60,60,,,,0
33,France,-1,0,60,60,,,,0
34,Spain,0.02,0,0,60,,,,0
35,Portugal,0.02,0,60,60,0.04,08:00,,0
36,Malta,0.02,0,60,60,0.04,25:00,20:00,0

37,Short line
44,UK again,0.050,0,60,60,,,,0
38,,0.02,0,60,60,,,,0
39,Peak equal,0.02,0,60,60,0.04,08:00,08:00,0
40,Exp,1e3,0,60,60,,,,0
"""
    assert errors(text) == [
        (3, "prefix"),
        (4, "price_per_min"),
        (5, "first_increment"),
        (6, "peak_end"),
        (7, "peak_start"),
        (9, ""),
        (10, "prefix"),
        (11, "description"),
        (12, "peak_start"),
        (13, "price_per_min"),
    ]
    report = load_plan(text, name="t")
    assert "line 10, prefix: 44 already on line 2" in str(report)


def test_header_errors() -> None:
    assert errors("prefix,price_per_min,colour\n44,0.1,red\n") == [(1, "colour"), (1, "description")]
    assert errors("prefix,prefix,description,price_per_min\n") == [(1, "prefix")]
    assert errors("") == [(1, "")]
    assert errors(HEADER + "\n") == [(1, "")]  # no rates at all


def test_line_numbers_count_physical_lines_of_quoted_fields() -> None:
    text = f'{HEADER}\n44,"UK\nmultiline",0.05,,,,,,,\n4x,bad,0.05,,,,,,,\n'
    assert errors(text) == [(4, "prefix")]


def test_unreadable_input_is_a_report_not_an_exception() -> None:
    assert errors(b"prefix,description,price_per_min\n44,UK,\xff\n") == [(2, "")]
    assert errors(f'{HEADER}\n44,"UK,0.05\n') == [(2, "")]


def test_export_round_trips() -> None:
    plan = load_plan(GOOD, name="std")
    assert isinstance(plan, RatePlan)
    text = dump_plan(plan)
    assert text.splitlines()[0] == HEADER
    assert load_plan(text, name="std") == plan
    assert dump_plan(load_plan(text, name="std")) == text  # type: ignore[arg-type]


prices = st.decimals(min_value=0, max_value=100, places=4, allow_nan=False, allow_infinity=False)
times = st.times().map(lambda t: t.replace(second=0, microsecond=0))


@st.composite
def entries(draw: st.DrawFn) -> RateEntry:
    prefix = draw(st.text("0123456789", min_size=1, max_size=8))
    peak = None
    if draw(st.booleans()):
        start, end = draw(times), draw(times)
        if start != end:
            peak = PeakWindow(start, end, draw(prices))
    return RateEntry(
        prefix,
        draw(st.text(st.characters(codec="utf-8"), max_size=20).map(str.strip).filter(bool)),
        draw(prices),
        draw(prices),
        draw(st.integers(1, 3600)),
        draw(st.integers(1, 3600)),
        peak,
        draw(prices),
    )


@given(st.lists(entries(), min_size=1, max_size=20, unique_by=lambda e: e.prefix))
def test_any_plan_round_trips(items: list[RateEntry]) -> None:
    plan = RatePlan("p", tuple(items))
    assert load_plan(dump_plan(plan), name="p") == plan


@given(st.text(max_size=300))
def test_any_text_imports_or_reports(text: str) -> None:
    result = load_plan(HEADER + "\n" + text, name="fuzz")
    assert isinstance(result, RatePlan | ImportReport)
    if isinstance(result, ImportReport):
        assert result.errors and all(isinstance(e, LineError) and e.line >= 1 for e in result.errors)
