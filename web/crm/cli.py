"""``bridge api serve``: the CRM XML API on ``api.listen`` behind the mutual-TLS listener of :mod:`bridge.api.server`
(registered on the ``bridge api`` group by :mod:`bridge.cli`, where the ``web`` command is)."""

from __future__ import annotations

import click

from bridge.config import Config


@click.command("serve")
@click.pass_obj
def serve_command(config: Config) -> None:
    """Serve the CRM XML API on api.listen (what `bridge run` starts when api.enabled)."""
    from bridge.api.server import serve
    from bridge.configschema import ConfigError
    from web.crm import create_crm_app

    try:
        serve(config, create_crm_app({"BRIDGE": config}))
    except ConfigError as exc:
        raise click.ClickException(f"config: {exc}") from exc
