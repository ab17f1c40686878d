"""The ``bridge`` command.

Each command opens its own transaction on the configured database and commits only when it succeeds.
The config is read here (the entry point) from ``--config`` / ``$BRIDGE_CONFIG`` / ``etc/bridge.toml``;
``--help`` works even without a readable config.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import click
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bridge import config as config_module
from bridge.api.cli import api_command
from bridge.billing.cli import lock_command, rates_command, topup_command, unlock_command
from bridge.cdr.cli import cdr as cdr_command
from bridge.cliutil import company as _company
from bridge.cliutil import session as _session
from bridge.config import Config
from bridge.ha.cli import ha_command
from bridge.ops.cli import backup_command, demo_run_command, doctor_command, restore_command
from web.cli import web_command
from web.crm.cli import serve_command as crm_serve_command


class _BridgeGroup(click.Group):
    """Remembers whether ``--help`` is asked for anywhere, so a broken config does not hide the help."""

    def invoke(self, ctx: click.Context) -> Any:
        rest = [*getattr(ctx, "_protected_args", []), *ctx.args]
        ctx.meta["bridge.help"] = any(arg in ("--help", "-h") for arg in rest)
        return super().invoke(ctx)


@click.group(cls=_BridgeGroup)
@click.option("--config", "config_path", envvar="BRIDGE_CONFIG", default=None, help="Config file (etc/bridge.toml).")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
@click.pass_context
def main(ctx: click.Context, config_path: str | None, verbose: bool) -> None:
    """Conferencing bridge appliance."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not verbose:
        logging.getLogger("alembic").setLevel(logging.WARNING)  # one line per migration is noise
    try:
        ctx.obj = config_module.load(config_path)
    except config_module.ConfigError as exc:
        if ctx.meta.get("bridge.help"):
            ctx.obj = Config()  # only the help text will be shown
            return
        if ctx.invoked_subcommand == "doctor":  # the doctor reports it as its first check
            ctx.obj = exc
            return
        raise click.ClickException(f"config: {exc}") from exc


def _refused(exc: Any, **options: str) -> click.ClickException:
    """The provisioning core's refusal, prefixed with the option its field stands for (``--mobile: ...``)."""
    option = options.get(exc.field, "")
    return click.ClickException(f"{option}: {exc.message}" if option else exc.message)


# --- db ---------------------------------------------------------------------------------------------


@main.group()
def db() -> None:
    """Database management."""


@db.command("upgrade")
@click.pass_obj
def db_upgrade(config: Config) -> None:
    """Apply migrations to the configured database."""
    from bridge.db import upgrade

    upgrade(config.database_url)
    click.echo(f"database at head: {config.database_url}")


# --- company ----------------------------------------------------------------------------------------


@main.group()
def company() -> None:
    """Companies (tenants)."""


@company.command("add")
@click.argument("name")
@click.option("--timezone", "timezone", default="UTC", show_default=True, help="IANA time zone for reports.")
@click.pass_obj
def company_add(config: Config, name: str, timezone: str) -> None:
    """Add a company called NAME."""
    from bridge.provisioning import ProvisioningError, save_company

    with _session(config) as session:
        try:
            row = save_company(session, name=name, timezone=timezone)
        except ProvisioningError as exc:
            raise _refused(exc, timezone="--timezone") from exc
        click.echo(f"company {row.id}: {row.name} ({row.timezone})")


@company.command("list")
@click.pass_obj
def company_list(config: Config) -> None:
    """List companies with their subscriber counts."""
    from bridge.db.models import Company, Subscriber

    with _session(config) as session:
        rows = session.execute(
            select(Company.id, Company.name, Company.timezone, func.count(Subscriber.id))
            .outerjoin(Subscriber, Subscriber.company_id == Company.id)
            .group_by(Company.id)
            .order_by(Company.name)
        ).all()
        if not rows:
            click.echo("no companies")
        for company_id, name, timezone, subscribers in rows:
            click.echo(f"{company_id}\t{name}\t{timezone}\t{subscribers} subscriber(s)")


# --- subscriber -------------------------------------------------------------------------------------


@main.group()
def subscriber() -> None:
    """Subscribers (moderators who command by SMS)."""


@subscriber.command("add")
@click.option("--company", "company_name", required=True, help="Company name.")
@click.option("--name", required=True, help="Subscriber's name.")
@click.option("--mobile", required=True, help="Registered mobile (any format; stored in E.164).")
@click.option("--portal-user", default=None, help="Also create a portal login with this username.")
@click.option("--password", default=None, help="Portal password (prompted when --portal-user is given without it).")
@click.pass_obj
def subscriber_add(
    config: Config, company_name: str, name: str, mobile: str, portal_user: str | None, password: str | None
) -> None:
    """Add a subscriber, optionally with a portal login."""
    from bridge.provisioning import ProvisioningError, save_subscriber

    if password is not None and portal_user is None:
        raise click.ClickException("--password needs --portal-user")
    if portal_user is not None and password is None:
        password = click.prompt("Portal password", hide_input=True, confirmation_prompt=True)
    with _session(config) as session:
        company_row = _company(session, company_name)
        try:
            row, login = save_subscriber(
                session,
                company_id=company_row.id,
                name=name,
                mobile=mobile,
                default_country=config.numbering.default_country,
                username=portal_user or "",
                password=password or "",
            )
        except ProvisioningError as exc:
            raise _refused(
                exc, name="--name", mobile="--mobile", username="--portal-user", password="--password"
            ) from exc
        click.echo(f"subscriber {row.id}: {row.name} {row.mobile} ({company_row.name})")
        if login is not None:
            click.echo(f"portal login {login.username!r} (subscriber)")


@subscriber.command("list")
@click.option("--company", "company_name", default=None, help="Only this company.")
@click.pass_obj
def subscriber_list(config: Config, company_name: str | None) -> None:
    """List subscribers."""
    from bridge.db.models import Company, Subscriber

    with _session(config) as session:
        query = select(Subscriber, Company.name).join(Company).order_by(Company.name, Subscriber.name)
        if company_name is not None:
            query = query.where(Company.id == _company(session, company_name).id)
        rows = session.execute(query).all()
        if not rows:
            click.echo("no subscribers")
        for sub, company_label in rows:
            click.echo(f"{sub.id}\t{sub.name}\t{sub.mobile}\t{company_label}\t{sub.status.value}")


# --- contact ----------------------------------------------------------------------------------------


@main.group()
def contact() -> None:
    """A subscriber's contacts (the users of SMS ``UC``), by the same rules as SMS and the portal."""


def _subscriber(session: Session, config: Config, mobile: str) -> Any:
    from bridge.db.models import Subscriber
    from bridge.phone import PhoneError, to_e164

    try:
        e164 = to_e164(mobile, config.numbering.default_country)
    except PhoneError as exc:
        raise click.ClickException(f"--subscriber: {exc}") from exc
    row = session.scalars(select(Subscriber).where(Subscriber.mobile == e164)).first()
    if row is None:
        raise click.ClickException(f"--subscriber: no subscriber has mobile {e164} (see `bridge subscriber list`)")
    return row


@contact.command("add")
@click.option("--subscriber", "mobile", required=True, help="The subscriber's registered mobile.")
@click.argument("nickname")
@click.argument("phone")
@click.option("--first", "first_name", default="", help="First name.")
@click.option("--last", "last_name", default="", help="Last name.")
@click.option("--group", "groups", multiple=True, help="A group to add the contact to (created if new; repeatable).")
@click.pass_obj
def contact_add(
    config: Config, mobile: str, nickname: str, phone: str, first_name: str, last_name: str, groups: tuple[str, ...]
) -> None:
    """Add contact NICKNAME with number PHONE to the subscriber's contacts."""
    from bridge.provisioning import ProvisioningError, save_contact

    with _session(config) as session:
        owner = _subscriber(session, config, mobile)
        try:
            row, changes = save_contact(
                session,
                owner.id,
                nickname=nickname,
                phone=phone,
                default_country=config.numbering.default_country,
                first_name=first_name,
                last_name=last_name,
                join=groups,
            )
        except ProvisioningError as exc:
            raise _refused(exc, phone="PHONE", first_name="--first", last_name="--last", groups="--group") from exc
        joined = "".join(f"; group {g.name}{' (new)' if new else ''}" for g, new in changes.joined)
        click.echo(f"contact {row.id}: {row.nickname} {row.phone} ({owner.name}){joined}")


# --- account ----------------------------------------------------------------------------------------


@main.group()
def account() -> None:
    """Portal logins for operators and company admins."""


@account.command("add")
@click.option("--role", type=click.Choice(["operator", "company_admin"]), required=True, help="Account role.")
@click.option("--username", required=True, help="Login name.")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True, help="Password (prompted).")
@click.option("--company", "company_name", default=None, help="Company (required for company_admin).")
@click.pass_obj
def account_add(config: Config, role: str, username: str, password: str, company_name: str | None) -> None:
    """Add a portal account (subscribers get theirs with `bridge subscriber add --portal-user`)."""
    from bridge.db.models import Role
    from bridge.provisioning import ProvisioningError, save_account

    if role == "company_admin" and company_name is None:
        raise click.ClickException("a company_admin needs --company")
    if role == "operator" and company_name is not None:
        raise click.ClickException("an operator belongs to no company; drop --company")
    with _session(config) as session:
        company_id = _company(session, company_name).id if company_name is not None else None
        try:
            save_account(session, username=username, role=Role(role), password=password, company_id=company_id)
        except ProvisioningError as exc:
            raise _refused(exc, username="--username", password="--password") from exc
        click.echo(f"portal login {username.strip()!r} ({role})")


# --- dnis -------------------------------------------------------------------------------------------


@main.group()
def dnis() -> None:
    """Dial-in numbers: the common number and the IC pool."""


@dnis.command("add")
@click.option("--common", default=None, help="The common dial-in number.")
@click.option("--pool", multiple=True, help="Pool numbers: one number or a range A-B (repeatable).")
@click.pass_obj
def dnis_add(config: Config, common: str | None, pool: tuple[str, ...]) -> None:
    """Add DNIS numbers (already known numbers are skipped; pool positions continue after the last)."""
    from bridge.provisioning import load_dnis

    if common is None and not pool:
        raise click.ClickException("give --common and/or --pool")
    try:
        numbers = config_module.expand_numbers(list(pool), "--pool")
    except config_module.ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    with _session(config) as session:
        added = load_dnis(session, common=(common or "").strip(), pool=numbers)
        click.echo(f"{added} DNIS number(s) added")


@dnis.command("list")
@click.pass_obj
def dnis_list(config: Config) -> None:
    """List DNIS numbers and which ICs use them."""
    from bridge.db.models import DnisNumber, InstantConference

    with _session(config) as session:
        rows = session.execute(
            select(DnisNumber, func.count(InstantConference.id))
            .outerjoin(InstantConference, InstantConference.dnis_id == DnisNumber.id)
            .group_by(DnisNumber.id)
            .order_by(DnisNumber.kind, DnisNumber.position)
        ).all()
        if not rows:
            click.echo("no DNIS numbers")
        for row, ics in rows:
            click.echo(f"{row.number}\t{row.kind.value}\t{row.position}\t{ics} IC(s)")


# --- room -------------------------------------------------------------------------------------------


@main.group()
def room() -> None:
    """Meet-me rooms: a number that goes straight to a named conference (issue 9)."""


@room.command("add")
@click.option("--number", required=True, help="Dialled number that reaches the room.")
@click.option("--name", required=True, help="Room name (announced, shown in the portal and CDRs).")
@click.option("--pin", default=None, help="Participant PIN, 1-7 digits (default: none, callers join at once).")
@click.option("--moderator-pin", default=None, help="PIN giving the subscriber's controls, 1-7 digits.")
@click.option("--max-members", type=int, default=0, show_default=True, help="Capacity; 0: conference default.")
@click.option("--company", "company_name", default=None, help="Company the room belongs to.")
@click.pass_obj
def room_add(
    config: Config,
    number: str,
    name: str,
    pin: str | None,
    moderator_pin: str | None,
    max_members: int,
    company_name: str | None,
) -> None:
    """Add a meet-me room."""
    from bridge.provisioning import ProvisioningError, add_room

    with _session(config) as session:
        company_id = _company(session, company_name).id if company_name is not None else None
        try:
            row = add_room(
                session,
                config,
                number=number,
                name=name,
                pin=pin or "",
                moderator_pin=moderator_pin or "",
                max_members=max_members,
                company_id=company_id,
            )
        except ProvisioningError as exc:
            options = {"number": "--number", "name": "--name", "pin": "--pin", "max_members": "--max-members"}
            raise _refused(exc, moderator_pin="--moderator-pin", **options) from exc
        click.echo(f"room {row.id}: {row.number} {row.name!r} {_room_summary(row, config)}")


def _room_summary(row: Any, config: Config) -> str:
    pin = "PIN" if row.pin else "no PIN"
    moderator = ", moderator PIN" if row.moderator_pin else ""
    size = row.max_members or config.conference.max_participants
    return f"({pin}{moderator}, max {size})"


@room.command("list")
@click.pass_obj
def room_list(config: Config) -> None:
    """List rooms (PINs are not shown)."""
    from bridge.db.models import Company, Room

    with _session(config) as session:
        rows = session.execute(
            select(Room, Company.name).outerjoin(Company, Room.company_id == Company.id).order_by(Room.number)
        ).all()
        if not rows:
            click.echo("no rooms")
        for row, company_label in rows:
            click.echo(f"{row.number}\t{row.name}\t{company_label or '-'}\t{_room_summary(row, config)}")


@room.command("delete")
@click.argument("number")
@click.pass_obj
def room_delete(config: Config, number: str) -> None:
    """Delete the room dialled on NUMBER (refused while its conference runs; past runs keep their CDRs)."""
    from bridge.provisioning import UNKNOWN, ProvisioningError, delete_room

    with _session(config) as session:
        try:
            row = delete_room(session, number)
        except ProvisioningError as exc:
            hint = " (see `bridge room list`)" if exc.code == UNKNOWN else ""
            raise click.ClickException(exc.message + hint) from exc
        click.echo(f"room {row.number} {row.name!r} deleted")
        if any(spec.number == row.number for spec in config.room):
            click.echo("note: it is also in the config's [[room]] list; `bridge run` adds it again at start")


# --- sms --------------------------------------------------------------------------------------------


@main.group()
def sms() -> None:
    """The SMS command language, without an SMSC."""


@sms.command("simulate")
@click.option("--from", "sender", required=True, help="Sender's number, as the SMSC would send it.")
@click.argument("text", nargs=-1, required=True)
@click.pass_obj
def sms_simulate(config: Config, sender: str, text: tuple[str, ...]) -> None:
    """Run TEXT as an SMS command from --from against the database and print the reply and actions.

    Changes are committed; nothing is dialled or texted. Exits 0 even when the reply is an error message.
    Put `--` before TEXT when it starts with a dash.
    """
    import datetime as dt

    from bridge.commands import execute

    with _session(config) as session:
        result = execute(session, sender=sender, text=" ".join(text), config=config, now=dt.datetime.now(dt.UTC))
    click.echo(result.reply)
    for action in result.actions:
        click.echo(f"action: {action}")


# --- demo -------------------------------------------------------------------------------------------


@main.group()
def demo() -> None:
    """Demo data."""


@demo.command("load")
@click.option("--if-empty", is_flag=True, help="Do nothing when the database already has companies or accounts.")
@click.pass_obj
def demo_load(config: Config, if_empty: bool) -> None:
    """Load the demo data set: a company, a subscriber, users, a group, IC1, DNIS and rooms from the config."""
    from bridge.demo import DemoError, is_empty, load_demo

    with _session(config) as session:
        if if_empty and not is_empty(session):
            click.echo("database not empty: demo data not loaded")
            return
        try:
            summary = load_demo(session, config)
        except DemoError as exc:
            raise click.ClickException(str(exc)) from exc
    click.echo(f"{summary.dnis_added} DNIS number(s), {summary.rooms_added} room(s) added")
    for line in summary.lines:
        click.echo(line)


def _log_setup(ctx: click.Context) -> None:
    """``[log]`` for the long-running commands: text or JSON lines with the run/leg/Call-ID, the SIP trace."""
    from bridge.ops.logs import configure

    configure(ctx.obj.log, ctx.obj.trunk_group, verbose=bool(ctx.find_root().params.get("verbose")))


@main.command("run")
@click.option("--no-web", is_flag=True, help="Do not start the portal subprocess (the CRM API still starts).")
@click.option("--no-api", is_flag=True, help="Do not start the CRM XML API subprocess even when `api.enabled`.")
@click.pass_context
def run_command(ctx: click.Context, no_web: bool, no_api: bool) -> None:
    """Run the appliance: SMPP, SIP/RTP, mixer, conferences, CDR jobs, control API, portal, CRM API."""
    import asyncio

    from bridge.engine import Engine  # imported here so the other commands stay light
    from bridge.listeners import StartError

    config: Config = ctx.obj
    _log_setup(ctx)
    config_path = ctx.find_root().params.get("config_path")
    base = ["--config", config_path] if config_path else []
    portal_args = None if no_web else [*base, "web"]
    engine = Engine(config, portal_args=portal_args, api_args=None if no_api else [*base, "api", "serve"])
    try:
        asyncio.run(engine.run())
    except StartError as exc:  # a listener cannot bind: one line naming the key and address, exit 1
        raise click.ClickException(str(exc)) from exc
    except KeyboardInterrupt:  # pragma: no cover - SIGINT is handled inside; this is a second ^C
        pass


main.add_command(web_command)  # bridge web (portal, issue 8)
main.add_command(cdr_command)  # bridge cdr (CDRs, issue 7)
main.add_command(ha_command)  # bridge ha (HA pair, issue 15)
main.add_command(doctor_command)  # bridge doctor (issue 19)
main.add_command(backup_command)  # bridge backup (issue 19)
main.add_command(restore_command)  # bridge restore (issue 19)
demo.add_command(demo_run_command)  # bridge demo run (issue 19)
api_command.add_command(crm_serve_command)  # bridge api serve: the CRM app behind the mTLS listener
main.add_command(api_command)  # bridge api (CRM XML API, REST tokens, issue 17)
for _billing in (rates_command, topup_command, lock_command, unlock_command):  # billing (issue 18)
    main.add_command(_billing)

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
