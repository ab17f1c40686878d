"""Database: typed models, engine/session helpers and Alembic migrations."""

from bridge.db.session import make_engine, make_session_factory, upgrade

__all__ = ["make_engine", "make_session_factory", "upgrade"]
