"""``bridge rates``, ``bridge topup``, ``bridge lock`` / ``bridge unlock``: billing from the command line.

The package's one module with I/O (like :mod:`bridge.cdr.cli`): it parses options, opens a transaction and
calls the cores (:mod:`bridge.billing.ratecsv`, :mod:`bridge.billing.rating`) and their database side
(:mod:`bridge.conference.accounts`), which the portal's billing pages call the same way.
"""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import click
from sqlalchemy import select
from sqlalchemy.orm import Session

from bridge.billing import BillingError
from bridge.billing.ratecsv import dump_plan, load_plan
from bridge.billing.rating import RatePlan, describe, rate
from bridge.config import Config


@contextmanager
def _session(config: Config) -> Iterator[Session]:
    from bridge.db import make_engine, make_session_factory

    engine = make_engine(config.database_url)
    try:
        with make_session_factory(engine)() as session, session.begin():
            yield session
    finally:
        engine.dispose()


def _company(session: Session, name: str | None) -> Any:
    if name is None:
        return None
    from bridge.provisioning import ProvisioningError, find_company

    try:
        return find_company(session, name)
    except ProvisioningError as exc:
        raise click.ClickException(f"--company: {exc.message} (see `bridge company list`)") from exc


def _subscriber(session: Session, config: Config, mobile: str) -> Any:
    from bridge.db.models import Subscriber
    from bridge.phone import PhoneError, to_e164

    try:
        e164 = to_e164(mobile, config.numbering.default_country)
    except PhoneError as exc:
        raise click.ClickException(f"--subscriber: {exc}") from exc
    row = session.scalars(select(Subscriber).where(Subscriber.mobile == e164)).first()
    if row is None:
        raise click.ClickException(f"--subscriber: no subscriber has mobile {e164}")
    return row


def _plan(session: Session, company: Any) -> RatePlan | None:
    from bridge.conference.accounts import plan_from_row, plan_row_for

    row = plan_row_for(session, company)
    return plan_from_row(row) if row is not None else None


def _amount(text: str) -> Decimal:
    try:
        amount = Decimal(text)
    except InvalidOperation as exc:
        raise click.ClickException(f"AMOUNT: not a decimal amount: {text!r}") from exc
    if not amount.is_finite() or amount <= 0 or amount != amount.quantize(Decimal("0.0001")):
        raise click.ClickException(f"AMOUNT: a positive amount with at most 4 decimals, got {text!r}")
    return amount


@click.group("rates")
def rates_command() -> None:
    """Rate plans: import and export as CSV, rate a number."""


@rates_command.command("import")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--company", "company_name", default=None, help="The company's own plan (default: the default plan).")
@click.option("--name", default=None, help="Plan name (default: 'default', or the company's name).")
@click.pass_obj
def rates_import(config: Config, path: Path, company_name: str | None, name: str | None) -> None:
    """Import a plan from CSV: all lines or none (every bad line is listed)."""
    with _session(config) as session:
        company = _company(session, company_name)
        from bridge.conference.accounts import DEFAULT_PLAN_NAME, save_plan

        plan_name = name or (company.name if company is not None else DEFAULT_PLAN_NAME)
        loaded = load_plan(path.read_bytes(), name=plan_name)
        if not isinstance(loaded, RatePlan):
            click.echo(str(loaded), err=True)
            raise click.ClickException(f"{path}: {len(loaded.errors)} bad line(s); nothing was imported")
        save_plan(session, loaded, company_id=company.id if company is not None else None, default=company is None)
    target = f"company {company.name}" if company is not None else "the default plan"
    click.echo(f"imported {len(loaded)} rates as plan {plan_name!r} ({target})")


@rates_command.command("export")
@click.option("--company", "company_name", default=None, help="The plan this company is rated on.")
@click.pass_obj
def rates_export(config: Config, company_name: str | None) -> None:
    """Write the plan in force as CSV to standard output."""
    with _session(config) as session:
        plan = _plan(session, _company(session, company_name))
    if plan is None:
        raise click.ClickException("no rate plan (see `bridge rates import`)")
    sys.stdout.write(dump_plan(plan))


@rates_command.command("rate")
@click.argument("number")
@click.option("--company", "company_name", default=None, help="Rate on this company's plan.")
@click.option("--inbound", is_flag=True, help="The inbound price of a call to our number NUMBER.")
@click.pass_obj
def rates_rate(config: Config, number: str, company_name: str | None, inbound: bool) -> None:
    """Show the rate of a number: ``+4420... -> UK London, 0.020/min, 60/60``."""
    from bridge.billing.rating import Direction
    from bridge.cdr.csvformat import zone
    from bridge.phone import PhoneError, to_e164

    try:
        e164 = to_e164(number, config.numbering.default_country)
    except PhoneError as exc:
        raise click.ClickException(f"NUMBER: {exc}") from exc
    with _session(config) as session:
        company = _company(session, company_name)
        plan = _plan(session, company)
        tz = zone(company.timezone if company is not None else None)
    direction = Direction.INBOUND if inbound else Direction.OUTBOUND
    try:
        click.echo(describe(e164, rate(plan, e164, dt.datetime.now(dt.UTC), tz, direction)))
    except BillingError as exc:
        raise click.ClickException(str(exc)) from exc


@click.command("topup")
@click.argument("amount")
@click.option("--subscriber", "mobile", default=None, help="A prepaid subscriber's mobile.")
@click.option("--company", "company_name", default=None, help="A postpaid company's account.")
@click.option("--reference", default="", help="What it is for (shown in the statement).")
@click.pass_obj
def topup_command(config: Config, amount: str, mobile: str | None, company_name: str | None, reference: str) -> None:
    """Credit AMOUNT to a prepaid subscriber or a postpaid company (a ledger movement)."""
    from bridge.conference.accounts import top_up

    if (mobile is None) == (company_name is None):
        raise click.ClickException("give --subscriber or --company")
    value = _amount(amount)
    with _session(config) as session:
        subscriber = _subscriber(session, config, mobile) if mobile is not None else None
        company = _company(session, company_name)
        try:
            after = top_up(session, subscriber=subscriber, company=company, amount=value, by="cli", reference=reference)
        except (ValueError, BillingError) as exc:
            raise click.ClickException(str(exc)) from exc
        who = subscriber.name if subscriber is not None else company.name
    click.echo(f"{who}: +{value}, balance {after}")


def _set_lock(config: Config, mobile: str, locked: bool) -> None:
    from bridge.billing.policy import LockReason
    from bridge.conference.accounts import lock_state, set_lock

    with _session(config) as session:
        subscriber = _subscriber(session, config, mobile)
        state = lock_state(subscriber)
        state = state.lock(LockReason.MANUAL) if locked else state.unlock(LockReason.MANUAL)
        set_lock(subscriber, state)
        reasons = ", ".join(sorted(state.reasons)) or "none"
        click.echo(f"{subscriber.name}: {'locked' if state.locked else 'unlocked'} (reasons: {reasons})")


@click.command("lock")
@click.option("--subscriber", "mobile", required=True, help="The subscriber's mobile.")
@click.pass_obj
def lock_command(config: Config, mobile: str) -> None:
    """Block the subscriber's outbound calls (dial-in still works)."""
    _set_lock(config, mobile, True)


@click.command("unlock")
@click.option("--subscriber", "mobile", required=True, help="The subscriber's mobile.")
@click.pass_obj
def unlock_command(config: Config, mobile: str) -> None:
    """Lift a manual lock (a credit-limit lock stays until the company is back under its limit)."""
    _set_lock(config, mobile, False)
