"""``bridge ha ...``: status and switchover (through the running engine's control API), init-standby."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from bridge.config import Config


def _client(config: Config) -> Any:
    from bridge.control import control_token
    from bridge.control_client import ControlClient

    return ControlClient("http://" + config.control.listen, control_token(config), timeout=5.0)


def _call(config: Config, name: str) -> dict[str, Any]:
    from bridge.control_client import ControlError

    try:
        result: dict[str, Any] = getattr(_client(config), name)()
    except ControlError as exc:
        raise click.ClickException(f"engine at {config.control.listen}: {exc}") from exc
    return result


def describe(ha: dict[str, Any]) -> list[str]:
    """``bridge ha status`` as lines for a person."""
    if not ha.get("enabled"):
        return ["HA: disabled (single node, always active)"]
    lines = [
        f"node {ha.get('node')}: {ha.get('role')} (term {ha.get('term')}, "
        f"{'serving' if ha.get('serving') else 'not serving'}, {'healthy' if ha.get('healthy') else 'UNHEALTHY'})",
        f"vip {ha.get('vip')}; active node: {ha.get('active_node') or 'none'}",
    ]
    peer = ha.get("peer") or {}
    heard = peer.get("last_heartbeat_s")
    lines.append(
        f"peer {peer.get('node')}: {peer.get('role') or 'never heard'} (term {peer.get('term')}, "
        f"{'alive' if peer.get('alive') else 'DEAD'}, last heartbeat "
        f"{'never' if heard is None else f'{heard * 1000:.0f} ms ago'}; per path {peer.get('paths')})"
    )
    database = ha.get("database") or {}
    if database:
        replicas = ", ".join(f"{r['name']} {r['state']} {r['sync_state']}" for r in database.get("replicas", []))
        lines.append(f"database: {database.get('role')}" + (f"; replicas: {replicas}" if replicas else "")
                     + (f"; error: {database['error']}" if database.get("error") else ""))  # fmt: skip
    if ha.get("error"):
        lines.append(f"error: {ha['error']}")
    return lines


@click.group("ha")
def ha_command() -> None:
    """The HA pair: role, switchover, setting up the standby's database."""


@ha_command.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print the engine's answer as JSON.")
@click.pass_obj
def status(config: Config, as_json: bool) -> None:
    """Role, term, peer state and last heartbeat of this node."""
    ha = _call(config, "ha_status")
    if as_json:
        click.echo(json.dumps(ha, indent=2, sort_keys=True))
        return
    for line in describe(ha):
        click.echo(line)


@ha_command.command("switchover")
@click.pass_obj
def switchover(config: Config) -> None:
    """Hand the active role to the standby now (run on the active node)."""
    answer = _call(config, "ha_switchover")
    click.echo(f"switchover started: {answer.get('from')} -> {answer.get('to')} (bridge ha status to follow it)")


@ha_command.command("init-standby")
@click.pass_obj
def init_standby(config: Config) -> None:
    """Copy the peer's database into ``ha.pg_data`` (pg_basebackup -R): this node becomes its replica.

    Run it on the new standby with its PostgreSQL stopped and ``ha.pg_data`` empty; then start PostgreSQL."""
    from bridge.ha.node import replication_settings
    from bridge.ha.replication import ReplicationError
    from bridge.ha.replication import init_standby as run_init

    settings = replication_settings(config)
    if settings is None:
        raise click.ClickException("ha.pg_data is empty: set [ha] pg_data, pg_peer and pg_local first")
    try:
        output = run_init(settings)
    except ReplicationError as exc:
        raise click.ClickException(str(exc)) from exc
    sys.stdout.write(output)
    click.echo(f"{settings.data}: replica of {settings.peer} (application_name {settings.node_id}); start PostgreSQL")
