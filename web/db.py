"""One SQLAlchemy session per request, from the appliance's database (``bridge.db``)."""

from __future__ import annotations

from flask import Flask, current_app, g
from sqlalchemy.orm import Session, sessionmaker

from bridge.db import make_engine, make_session_factory


def init_app(app: Flask, url: str) -> None:
    engine = make_engine(url)
    app.extensions["bridge_db"] = make_session_factory(engine)
    app.teardown_appcontext(_close)


def session() -> Session:
    """The request's session (opened on first use, closed at the end of the app context)."""
    if "db_session" not in g:
        factory: sessionmaker[Session] = current_app.extensions["bridge_db"]
        g.db_session = factory()
    db: Session = g.db_session
    return db


def _close(_exc: BaseException | None) -> None:
    db: Session | None = g.pop("db_session", None)
    if db is not None:
        db.close()
