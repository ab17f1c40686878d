"""``bridge api``: the CRM API's lab CA and listener, and the REST API's tokens.

Lab set-up, step by step::

    bridge api ca-init                       # <data_dir>/api-ca/{ca,server}.{crt,key}
    bridge api issue-client-cert crm-1       # <data_dir>/api-ca/clients/crm-1.{crt,key}: give them to the CRM
    # etc/bridge.toml: [api] enabled = true (and allowed_subjects = ["crm-1"] to pin the terminal)
    bridge run                               # starts `bridge api serve` on api.listen with the portal
    curl --cacert ca.crt --cert crm-1.crt --key crm-1.key --data-binary @request.xml https://127.0.0.1:8444/crm

REST tokens: ``bridge api token create NAME --scope company --company Acme`` prints the secret once.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import click

from bridge.config import Config
from bridge.db.models import TokenScope


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


@click.group("api")
def api_command() -> None:
    """CRM XML API (mutual TLS) and REST API tokens."""


@api_command.command("ca-init")
@click.option("--dir", "directory", type=click.Path(path_type=Path), default=None, help="Default: <data_dir>/api-ca.")
@click.option("--host", "hosts", multiple=True, help="Extra name/address for the server certificate (repeatable).")
@click.pass_obj
def ca_init_command(config: Config, directory: Path | None, hosts: tuple[str, ...]) -> None:
    """Create a CA and the API server's certificate (refuses to overwrite a CA)."""
    from bridge.api.ca import CaError, ca_init

    listen_host = config.api.listen.rsplit(":", 1)[0].strip("[]")
    try:
        files = ca_init(directory or config.data_path / "api-ca", _now(), hosts=[listen_host, *hosts])
    except CaError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"CA: {files.ca_cert} (give it to the CRM to verify the server)")
    click.echo(f"server: {files.server_cert}, {files.server_key}")


@api_command.command("issue-client-cert")
@click.argument("name")
@click.option("--dir", "directory", type=click.Path(path_type=Path), default=None, help="CA directory.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None, help="Default: <CA dir>/clients.")
@click.option("--days", default=825, show_default=True, help="Validity.")
@click.pass_obj
def issue_client_cert_command(
    config: Config, name: str, directory: Path | None, out_dir: Path | None, days: int
) -> None:
    """Issue the client certificate of one CRM terminal (CN=NAME)."""
    from bridge.api.ca import CaError, issue_client_cert

    ca_dir = directory or config.data_path / "api-ca"
    try:
        cert, key = issue_client_cert(ca_dir, name, out_dir or ca_dir / "clients", _now(), days=days)
    except CaError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"client certificate: {cert}\nprivate key: {key}")


@api_command.group("token")
def token_group() -> None:
    """REST API tokens (stored hashed; the secret is shown once)."""


@token_group.command("create")
@click.argument("name")
@click.option("--scope", type=click.Choice([s.value for s in TokenScope]), required=True)
@click.option("--company", "company_name", default=None, help="Company (scope company).")
@click.option("--subscriber", "subscriber_id", type=int, default=None, help="Subscriber id (scope subscriber).")
@click.pass_obj
def token_create(config: Config, name: str, scope: str, company_name: str | None, subscriber_id: int | None) -> None:
    """Create a token and print its secret."""
    from bridge.api.tokens import TokenError, create_token
    from bridge.cliutil import company as _company
    from bridge.cliutil import session as _session

    with _session(config) as session:
        company_id = _company(session, company_name).id if company_name else None
        try:
            token, secret = create_token(
                session, name=name, scope=TokenScope(scope), company_id=company_id, subscriber_id=subscriber_id,
                created_by="cli", now=_now(),
            )  # fmt: skip
        except TokenError as exc:
            raise click.ClickException(exc.message) from exc
        click.echo(f"token {token.id} ({token.scope.value}): {secret}")


@token_group.command("list")
@click.pass_obj
def token_list(config: Config) -> None:
    """List tokens (never their secrets)."""
    from bridge.api.tokens import list_tokens
    from bridge.cliutil import session as _session

    with _session(config) as session:
        for token in list_tokens(session):
            state = f"revoked {token.revoked_at:%Y-%m-%d %H:%M}" if token.revoked_at else "active"
            owner = token.subscriber_id or token.company_id or "-"
            click.echo(f"{token.id}\t{token.prefix}...\t{token.scope.value}\t{owner}\t{token.name}\t{state}")


@token_group.command("revoke")
@click.argument("token_id", type=int)
@click.pass_obj
def token_revoke(config: Config, token_id: int) -> None:
    """Revoke a token at once."""
    from bridge.api.tokens import TokenError, revoke_token
    from bridge.cliutil import session as _session

    with _session(config) as session:
        try:
            revoke_token(session, token_id, _now())
        except TokenError as exc:
            raise click.ClickException(exc.message) from exc
    click.echo(f"token {token_id} revoked")
