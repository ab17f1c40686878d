"""``bridge cdr ...``: export, push, summary, purge."""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

import click
from sqlalchemy.orm import Session, sessionmaker

from bridge.cdr.csvformat import zone
from bridge.config import Config


def parse_when(text: str, tz_name: str, *, end: bool) -> dt.datetime:
    """``YYYY-MM-DD`` or ``YYYY-MM-DDTHH:MM[:SS]`` in zone ``tz_name`` -> naive UTC.

    A bare date as ``--to`` means the end of that day (the whole day is included).
    """
    try:
        if len(text) == 10:
            day = dt.date.fromisoformat(text)
            local = dt.datetime.combine(day + dt.timedelta(days=1) if end else day, dt.time())
        else:
            local = dt.datetime.fromisoformat(text)
    except ValueError as exc:
        raise click.BadParameter(f"{text!r}: expected YYYY-MM-DD or YYYY-MM-DDTHH:MM") from exc
    if local.tzinfo is None:
        local = local.replace(tzinfo=zone(tz_name))
    return local.astimezone(dt.UTC).replace(tzinfo=None)


def _factory(config: Config) -> sessionmaker[Session]:
    from bridge.db.session import make_engine, make_session_factory

    return make_session_factory(make_engine(config.database_url))


@contextmanager
def _output(path: str | None) -> Iterator[TextIO]:
    if path is None or path == "-":
        yield sys.stdout
        return
    with open(path, "w", encoding="utf-8", newline="") as out:
        yield out


@click.group("cdr")
def cdr() -> None:
    """Call detail records: export, delivery to the provider, retention."""


@cdr.command("export")
@click.option("--from", "start", required=True, help="First day (YYYY-MM-DD) or time, inclusive.")
@click.option("--to", "end", required=True, help="Last day (inclusive) or time (exclusive).")
@click.option("--company", default=None, help="Only this company (name).")
@click.option("--moderator", default=None, help="Only this moderator (subscriber id, login or mobile).")
@click.option("--tz", "tz_name", default="UTC", show_default=True, help="Zone of --from/--to.")
@click.option("-o", "--output", default=None, help="Output file (default: standard output).")
@click.pass_obj
def export_command(
    config: Config, start: str, end: str, company: str | None, moderator: str | None, tz_name: str, output: str | None
) -> None:
    """CSV of the CDRs disconnected in the period (times in each company's zone), streamed."""
    from bridge.cdr.export import count_rows, export_csv, period_filter

    begin, finish = parse_when(start, tz_name, end=False), parse_when(end, tz_name, end=True)
    if finish <= begin:
        raise click.BadParameter("--to must be after --from")
    factory = _factory(config)
    with factory() as session, _output(output) as out:
        # a bar on the terminal, unless the CSV itself goes to that terminal
        show = sys.stderr.isatty() and not (out is sys.stdout and sys.stdout.isatty())
        if show:
            total = count_rows(session, period_filter(begin, finish, company=company, moderator=moderator))
            with click.progressbar(length=total, label="exporting CDRs", file=sys.stderr) as bar:
                rows = export_csv(
                    session,
                    out,
                    start=begin,
                    end=finish,
                    company=company,
                    moderator=moderator,
                    on_progress=bar.update,
                )
        else:
            rows = export_csv(session, out, start=begin, end=finish, company=company, moderator=moderator)
    if out is not sys.stdout:
        click.echo(f"{rows} CDRs written to {output}", err=True)


@cdr.command("push")
@click.option("--now", "now_flag", is_flag=True, help="Run the hourly push immediately.")
@click.pass_obj
def push_command(config: Config, now_flag: bool) -> None:
    """Cut the due hourly files and push every pending file to the targets (what the hourly job does)."""
    from bridge.cdr.delivery import CdrPusher
    from bridge.db.models import utcnow

    if not now_flag:
        raise click.UsageError("say --now to push immediately (the engine pushes hourly by itself)")
    pusher = CdrPusher(config, _factory(config))
    report = pusher.run_hourly(utcnow())
    for name in report.written:
        click.echo(f"written {name}")
    for name, target in report.delivered:
        click.echo(f"delivered {name} -> {target}")
    for target, error in report.failures:
        click.echo(f"failed {target}: {error}", err=True)
    click.echo(f"{report.pending} file(s) pending")
    if report.pending:
        sys.exit(1)


@cdr.command("summary")
@click.option("--day", default=None, help="UTC day (YYYY-MM-DD); default yesterday.")
@click.pass_obj
def summary_command(config: Config, day: str | None) -> None:
    """Write and push the nightly usage summary now."""
    from bridge.cdr.delivery import CdrPusher
    from bridge.db.models import utcnow

    now = utcnow()
    which = dt.date.fromisoformat(day) if day else now.date() - dt.timedelta(days=1)
    report = CdrPusher(config, _factory(config)).run_summary(which, now)
    for name in report.written:
        click.echo(f"written {name}")
    for name, target in report.delivered:
        click.echo(f"delivered {name} -> {target}")
    click.echo(f"{report.pending} file(s) pending")


@cdr.command("purge")
@click.option("--days", type=int, default=None, help="Keep this many days (default cdr.retention_days).")
@click.pass_obj
def purge_command(config: Config, days: int | None) -> None:
    """Delete CDRs, file records and spool files older than the retention period."""
    from bridge.cdr.retention import purge
    from bridge.cdr.spool import spool_dir
    from bridge.db.models import utcnow

    keep = days if days is not None else config.cdr.retention_days
    if keep < 1:
        raise click.BadParameter("--days must be at least 1")
    report = purge(_factory(config), spool=spool_dir(config), retention_days=keep, now=utcnow())
    click.echo(f"purged {report.cdrs} CDRs, {report.files} file records, {report.spool_files} spool files")
