"""What every ``bridge`` command group needs: a database session in a transaction, a company by name, each failing
with a one-line click error (the command groups of other packages import this, not :mod:`bridge.cli`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from bridge.config import Config


@contextmanager
def session(config: Config) -> Iterator[Session]:
    """A session in a transaction: committed when the block succeeds, rolled back otherwise."""
    from bridge.db import make_engine, make_session_factory

    engine = make_engine(config.database_url)
    try:
        with make_session_factory(engine)() as session, session.begin():
            yield session
    except OperationalError as exc:
        raise click.ClickException(f"database: {exc.orig} (did you run `bridge db upgrade`?)") from exc
    finally:
        engine.dispose()


def company(session: Session, name: str) -> Any:
    from bridge.provisioning import ProvisioningError, find_company

    try:
        return find_company(session, name)
    except ProvisioningError as exc:
        raise click.ClickException(f"{exc.message} (see `bridge company list`)") from exc
