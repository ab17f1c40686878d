"""The ``bridge`` command."""

from __future__ import annotations

import logging
import sys

import click

from bridge import config as config_module
from bridge.config import Config
from web.cli import web_command


@click.group()
@click.option("--config", "config_path", envvar="BRIDGE_CONFIG", default=None, help="Config file (etc/bridge.toml).")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
@click.pass_context
def main(ctx: click.Context, config_path: str | None, verbose: bool) -> None:
    """Conferencing bridge appliance."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        ctx.obj = config_module.load(config_path)
    except config_module.ConfigError as exc:
        raise click.ClickException(f"config: {exc}") from exc


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


main.add_command(web_command)  # bridge web (portal, issue 8)

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
