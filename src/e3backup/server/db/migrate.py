"""Applies the Alembic migrations shipped in ``e3backup/server/migrations`` (on server start).

Replicas starting together on one PostgreSQL take turns: the first migrates under a transaction
advisory lock, the others wait for it and then find the schema current.
"""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text

MIGRATION_LOCK = 0x6533_6261_636B_0002
"""The advisory lock key replicas take while migrating ("e3back" + 2)."""


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", "e3backup.server:migrations")
    cfg.attributes["connection_engine"] = engine
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        cfg = alembic_config(engine)
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def schema_state(engine: Engine) -> str:
    """``current`` (at this code's head), ``behind`` (migrations to apply) or ``ahead`` (migrated
    by a newer server during a rolling upgrade: additive, so this one still serves)."""
    script = ScriptDirectory.from_config(alembic_config(engine))
    with engine.connect() as conn:
        current = set(MigrationContext.configure(conn).get_current_heads())
    if current == set(script.get_heads()):
        return "current"
    known = {r.revision for r in script.walk_revisions()}
    return "ahead" if current - known else "behind"


__all__ = ["MIGRATION_LOCK", "alembic_config", "schema_state", "upgrade"]
