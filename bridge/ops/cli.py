"""The operations commands: ``bridge doctor``, ``bridge backup``, ``bridge restore`` and ``bridge demo run``."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from bridge.config import Config


@click.command("doctor")
@click.option("--timeout", default=2.0, show_default=True, help="Seconds each peer probe may take.")
@click.pass_context
def doctor_command(ctx: click.Context, timeout: float) -> None:
    """Check this node: config, free ports, migrations, SMSC, trunk gateways (SIP OPTIONS), CDR targets, HA
    peer, TLS expiry, disk. One line per check; exit 0 all OK, 1 a warning, 2 a failure."""
    from bridge.ops.doctor import exit_status, run_checks

    config = ctx.obj
    if isinstance(config, Exception):  # the config did not load: that is the first (and last) check
        click.echo(f"FAIL config: {config}")
        sys.exit(2)
    checks = run_checks(config, timeout=timeout)
    for check in checks:
        click.echo(check.line())
    sys.exit(exit_status(checks))


@click.command("backup")
@click.argument("output", type=click.Path(dir_okay=False, path_type=Path))
@click.pass_obj
def backup_command(config: Config, output: Path) -> None:
    """Write OUTPUT (a .tar.gz): a consistent copy of the database (online: SQLite backup API or pg_dump) and
    the data directory (recordings, generated keys and certificates, tokens, CDR spool)."""
    from bridge.ops.backup import BackupError, backup

    try:
        summary = backup(config, output)
    except BackupError as exc:
        raise click.ClickException(str(exc)) from exc
    rows = sum(summary.tables.values())
    click.echo(f"backup {summary.path}: {summary.database} database, {len(summary.tables)} tables, {rows} rows, "
               f"{summary.files} files")  # fmt: skip


@click.command("restore")
@click.argument("source", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite a database that has tables or a data directory with files.")
@click.pass_obj
def restore_command(config: Config, source: Path, force: bool) -> None:
    """Restore SOURCE (from `bridge backup`) into the configured database and data directory (an empty node);
    every table's row count is checked against the backup's. Stop the engine first."""
    from bridge.ops.backup import BackupError, restore

    try:
        summary = restore(config, source, force=force)
    except BackupError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"restored {summary.path}: {summary.database} database, {len(summary.tables)} tables, "
               f"{sum(summary.tables.values())} rows (as in the backup), {summary.files} files")  # fmt: skip


@click.command("run")
@click.option("--duration", "duration_s", default=45.0, show_default=True,
              help="Seconds the conference runs once its legs are connected.")  # fmt: skip
@click.option("--dir", "demo_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="The demo's own config and data (default: <data_dir>/demo).")  # fmt: skip
@click.pass_context
def demo_run_command(ctx: click.Context, duration_s: float, demo_dir: Path | None) -> None:
    """Run the appliance with local stand-ins (SMSC simulator, SIPp phones), text IC1 as the demo subscriber,
    show the portal URL and logins and the live conference, and print its CDRs when it ends."""
    import asyncio

    from bridge.ops.demo import Demo
    from bridge.ops.demo_peers import PeerMissing
    from bridge.ops.logs import configure

    config: Config = ctx.obj
    configure(config.log, config.trunk_group, verbose=bool(ctx.find_root().params.get("verbose")))
    target = (demo_dir or config.data_path / "demo").resolve()
    try:
        sys.exit(asyncio.run(Demo(config, target, duration_s=duration_s, say=click.echo).run()))
    except (PeerMissing, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from exc
