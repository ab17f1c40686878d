"""A rate plan as CSV, both ways (``bridge rates import``, the portal's upload and download).

Format (UTF-8, a BOM is allowed; comma-separated, RFC 4180 quoting; first line is the header):

==================  ========  =====================================================================
column              required  meaning
==================  ========  =====================================================================
prefix              yes       E.164 digits of the destination, a leading ``+`` is accepted (``4420``)
description         yes       shown to people (``UK London``); not empty
price_per_min       yes       standard price per minute, plain decimal (``0.020``), no sign/exponent
connection_fee      no        charged once per answered leg; empty = 0
first_increment     no        seconds billed first (1..3600); empty = 60
next_increment      no        seconds billed after (1..3600); empty = 60
peak_price          no        price per minute inside the peak window; with peak_start and peak_end
peak_start          no        ``HH:MM`` local time in the company's zone, inclusive
peak_end            no        ``HH:MM`` exclusive; ``24:00`` = midnight; end before start wraps midnight
inbound_price       no        price per minute of inbound legs to this prefix; empty = 0
==================  ========  =====================================================================

Outside the peak window ``price_per_min`` applies (so there is no separate off-peak column: that price
would say the same thing twice). The three peak columns are all empty or all set. Columns may come in any
order and optional ones may be left out of the header; unknown or repeated columns are errors. Export
writes every column in the order above, prices as plain decimals, so ``load_plan(dump_plan(p)) == p``.

Import is all or nothing: :func:`load_plan` returns the plan, or an :class:`ImportReport` listing every bad
line (physical line number, column, message) and no plan at all.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from bridge.billing import RatePlanError
from bridge.billing.prefixes import digits
from bridge.billing.rating import PeakWindow, RateEntry, RatePlan, format_money

COLUMNS = (
    "prefix",
    "description",
    "price_per_min",
    "connection_fee",
    "first_increment",
    "next_increment",
    "peak_price",
    "peak_start",
    "peak_end",
    "inbound_price",
)
REQUIRED = frozenset({"prefix", "description", "price_per_min"})
PEAK_COLUMNS = ("peak_price", "peak_start", "peak_end")
MAX_INCREMENT = 3600
_DECIMAL = re.compile(r"[0-9]+(\.[0-9]+)?")
_TIME = re.compile(r"([01][0-9]|2[0-4]):([0-5][0-9])")


@dataclass(frozen=True)
class LineError:
    line: int
    """Physical line in the file, the header being line 1."""
    column: str
    """The column at fault, or ``""`` for the line as a whole."""
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}" + (f", {self.column}" if self.column else "")
        return f"{where}: {self.message}"


@dataclass(frozen=True)
class ImportReport:
    """Why a file was refused: every bad line. Nothing was imported."""

    errors: tuple[LineError, ...]

    def __str__(self) -> str:
        return "\n".join(str(e) for e in self.errors)


def load_plan(data: str | bytes, *, name: str) -> RatePlan | ImportReport:
    """Parse a whole CSV file into the plan ``name``, or report every bad line and return no plan."""
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = data.count(b"\n", 0, exc.start) + 1
            return ImportReport((LineError(line, "", "not UTF-8 text"),))
    else:
        text = data
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline=""), strict=True)
    errors: list[LineError] = []
    try:
        header = next(reader, None)
        if header is None:
            return ImportReport((LineError(1, "", "empty file: a header line is expected"),))
        columns = _header([c.strip() for c in header], errors)
        entries = _rows(reader, columns, errors) if columns is not None else []
    except csv.Error as exc:
        errors.append(LineError(reader.line_num, "", f"unreadable CSV: {exc}"))
        entries = []
    if not errors and not entries:
        errors.append(LineError(1, "", "no rates in the file"))
    if errors:
        return ImportReport(tuple(errors))
    return RatePlan(name, tuple(entries))


def dump_plan(plan: RatePlan) -> str:
    """The plan as CSV text (every column, entries sorted by prefix), the inverse of :func:`load_plan`."""
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for e in sorted(plan.entries, key=lambda entry: entry.prefix):
        peak = e.peak
        writer.writerow(
            [
                e.prefix,
                e.description,
                _plain(e.price_per_min),
                _plain(e.connection_fee),
                e.first_increment,
                e.next_increment,
                _plain(peak.price_per_min) if peak else "",
                peak.start.strftime("%H:%M") if peak else "",
                peak.end.strftime("%H:%M") if peak else "",
                _plain(e.inbound_price),
            ]
        )
    return out.getvalue()


def _plain(value: Decimal) -> str:
    return format_money(value) if value else "0"


def _header(header: list[str], errors: list[LineError]) -> list[str] | None:
    bad = len(errors)
    seen: set[str] = set()
    for column in header:
        if column not in COLUMNS:
            errors.append(LineError(1, column, f"unknown column (expected some of: {', '.join(COLUMNS)})"))
        elif column in seen:
            errors.append(LineError(1, column, "column appears twice"))
        seen.add(column)
    for column in COLUMNS:
        if column in REQUIRED and column not in seen:
            errors.append(LineError(1, column, "required column missing"))
    return header if len(errors) == bad else None


def _rows(reader: Any, columns: list[str], errors: list[LineError]) -> list[RateEntry]:
    entries: list[RateEntry] = []
    first_line: dict[str, int] = {}
    line = reader.line_num + 1
    for row in reader:
        start, line = line, reader.line_num + 1
        if not any(cell.strip() for cell in row):
            continue  # blank lines and spreadsheet rows of empty cells
        if len(row) != len(columns):
            errors.append(LineError(start, "", f"{len(row)} fields, the header has {len(columns)}"))
            continue
        entry = _entry(start, dict(zip(columns, (c.strip() for c in row), strict=True)), errors)
        if entry is None:
            continue
        if entry.prefix in first_line:
            errors.append(LineError(start, "prefix", f"{entry.prefix} already on line {first_line[entry.prefix]}"))
            continue
        first_line[entry.prefix] = start
        entries.append(entry)
    return entries


def _entry(line: int, cells: dict[str, str], errors: list[LineError]) -> RateEntry | None:
    bad = len(errors)

    def field(column: str, parse: Callable[[str], Any], default: Any = None) -> Any:
        text = cells.get(column, "")
        if not text:
            if column in REQUIRED:
                errors.append(LineError(line, column, "empty"))
            return default
        try:
            return parse(text)
        except RatePlanError as exc:
            errors.append(LineError(line, column, str(exc)))
            return default

    prefix = field("prefix", _prefix)
    description = field("description", str)
    values = {
        "price_per_min": field("price_per_min", _decimal),
        "connection_fee": field("connection_fee", _decimal, Decimal(0)),
        "first_increment": field("first_increment", _increment, 60),
        "next_increment": field("next_increment", _increment, 60),
        "inbound_price": field("inbound_price", _decimal, Decimal(0)),
    }
    peak_price, start, end = field("peak_price", _decimal), field("peak_start", _time), field("peak_end", _time)
    given = [c for c in PEAK_COLUMNS if cells.get(c, "")]
    if given and len(given) < len(PEAK_COLUMNS):
        missing = [c for c in PEAK_COLUMNS if c not in given]
        errors.append(LineError(line, missing[0], "peak_price, peak_start and peak_end go together"))
    if len(errors) > bad:
        return None
    try:
        peak = PeakWindow(start, end, peak_price) if given else None
        return RateEntry(prefix, description, peak=peak, **values)
    except RatePlanError as exc:
        errors.append(LineError(line, "peak_start" if "peak" in str(exc) else "", str(exc)))
        return None


def _prefix(text: str) -> str:
    if not text.removeprefix("+").isdigit():
        raise RatePlanError(f"not E.164 digits: {text!r}")
    return digits(text)


def _decimal(text: str) -> Decimal:
    if not _DECIMAL.fullmatch(text):
        raise RatePlanError(f"not a plain non-negative decimal (like 0.020): {text!r}")
    return Decimal(text)


def _increment(text: str) -> int:
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= MAX_INCREMENT:
        raise RatePlanError(f"not a whole number of seconds from 1 to {MAX_INCREMENT}: {text!r}")
    return int(text)


def _time(text: str) -> dt.time:
    match = _TIME.fullmatch(text)
    if match is None or (match[1] == "24" and match[2] != "00"):
        raise RatePlanError(f"not a time HH:MM (00:00 to 24:00): {text!r}")
    return dt.time(int(match[1]) % 24, int(match[2]))
