"""Database: SQLAlchemy models, engine/session factory and Alembic migrations."""

from e3backup.server.db.migrate import upgrade
from e3backup.server.db.session import make_engine, make_session_factory

__all__ = ["make_engine", "make_session_factory", "upgrade"]
