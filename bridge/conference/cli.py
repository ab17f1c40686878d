"""``bridge run``: start the engine (imported lazily so other commands stay light)."""

from __future__ import annotations

import asyncio

import click

from bridge.config import Config


@click.command("run")
@click.option("--no-web", is_flag=True, help="Do not start the portal subprocess.")
@click.pass_context
def run_command(ctx: click.Context, no_web: bool) -> None:
    """Run the appliance: SMPP, SIP/RTP, mixer, conferences, CDR jobs, control API, portal."""
    from bridge.engine import Engine, StartError

    config: Config = ctx.obj
    config_path = ctx.find_root().params.get("config_path")
    engine = Engine(config, config_path=config_path, portal=not no_web)
    try:
        asyncio.run(engine.run())
    except StartError as exc:  # a listener cannot bind: one line naming the key and address, exit 1
        raise click.ClickException(str(exc)) from exc
    except KeyboardInterrupt:  # pragma: no cover - SIGINT is handled inside; this is a second ^C
        pass
