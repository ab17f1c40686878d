"""``bridge api``: the lab CA, client certificates, and REST tokens from the command line."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from cryptography import x509
from sqlalchemy import select

from bridge.api.tokens import authenticate, secret_hash
from bridge.cli import main
from bridge.db import make_engine, make_session_factory
from bridge.db.models import ApiToken
from tests.api.crm_fixtures import NOW


@pytest.fixture
def config_file(tmp_path: Path, db_url: str) -> Path:
    path = tmp_path / "etc" / "bridge.toml"
    path.parent.mkdir()
    path.write_text(
        f'[node]\ndata_dir = "{tmp_path / "data"}"\n[database]\nurl = "{db_url}"\n[dnis]\ncommon = "+15550100"\n'
    )
    return path


def run(config_file: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["--config", str(config_file), *args])


def test_ca_init_and_client_certificates(config_file: Path, tmp_path: Path) -> None:
    assert run(config_file, "api", "ca-init").exit_code == 0
    again = run(config_file, "api", "ca-init")
    assert again.exit_code == 1 and "exists" in again.output
    issued = run(config_file, "api", "issue-client-cert", "crm-1")
    assert issued.exit_code == 0, issued.output
    cert = x509.load_pem_x509_certificate((tmp_path / "data" / "api-ca" / "clients" / "crm-1.crt").read_bytes())
    assert cert.subject.rfc4514_string() == "CN=crm-1,O=bridge CRM API"
    assert oct((tmp_path / "data" / "api-ca" / "clients" / "crm-1.key").stat().st_mode & 0o777) == "0o600"


def test_tokens_create_list_revoke(config_file: Path, db_url: str) -> None:
    assert run(config_file, "company", "add", "Acme").exit_code == 0
    created = run(config_file, "api", "token", "create", "crm", "--scope", "company", "--company", "Acme")
    assert created.exit_code == 0, created.output
    secret = created.output.strip().rsplit(" ", 1)[1]
    refused = run(config_file, "api", "token", "create", "x", "--scope", "subscriber", "--subscriber", "999")
    assert refused.exit_code == 1 and "subscriber" in refused.output
    listed = run(config_file, "api", "token", "list")
    assert "crm" in listed.output and secret not in listed.output
    engine = make_engine(db_url)
    with make_session_factory(engine)() as session:
        token = session.scalars(select(ApiToken)).one()
        assert token.secret_sha256 == secret_hash(secret) and token.prefix == secret[:12]  # never the secret itself
        assert authenticate(session, secret, NOW) is not None
        assert run(config_file, "api", "token", "revoke", str(token.id)).exit_code == 0
        session.expire_all()
        assert authenticate(session, secret, NOW) is None
    engine.dispose()


class _Engine:
    """Stands in for bridge.engine.Engine: records what ``bridge run`` asks for the children."""

    made: list[dict[str, object]] = []

    def __init__(self, config: object, **children: object) -> None:
        _Engine.made.append(children)

    async def run(self) -> None:
        return None


@pytest.mark.parametrize(
    ("flags", "portal", "api"),
    [
        ((), ["web"], ["api", "serve"]),
        (("--no-web",), None, ["api", "serve"]),  # the CRM API does not depend on the portal
        (("--no-api",), ["web"], None),
        (("--no-web", "--no-api"), None, None),
    ],
)
def test_run_starts_the_portal_and_the_crm_api_independently(
    config_file: Path,
    monkeypatch: pytest.MonkeyPatch,
    flags: tuple[str, ...],
    portal: list[str] | None,
    api: list[str] | None,
) -> None:
    import bridge.engine

    monkeypatch.setattr(bridge.engine, "Engine", _Engine)
    _Engine.made.clear()
    result = run(config_file, "run", *flags)
    assert result.exit_code == 0, result.output
    base = ["--config", str(config_file)]
    expected = {name: None if rest is None else [*base, *rest] for name, rest in (("portal", portal), ("api", api))}
    assert _Engine.made == [{"portal_args": expected["portal"], "api_args": expected["api"]}]


def test_the_api_child_needs_its_arguments_and_api_enabled(tmp_path: Path) -> None:
    from bridge.api import child

    assert child.start_if_enabled(True, "127.0.0.1:1", tmp_path, None) is None  # bridge run --no-api
    assert child.start_if_enabled(False, "127.0.0.1:1", tmp_path, ["api", "serve"]) is None  # api.enabled = false
