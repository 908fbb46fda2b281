"""Alembic environment: runs on the connection the server hands over (no alembic.ini, no URL)."""

from __future__ import annotations

from alembic import context

from e3backup.server.db.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    engine = context.config.attributes["connection_engine"]
    with engine.begin() as connection:
        context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
else:
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
