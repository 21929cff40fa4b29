"""Alembic environment: runs on the connection handed in by server.db.migrate (sync, inside run_sync)."""

from __future__ import annotations

from alembic import context

from server.db.models import Base
from server.db.partitions import include_name

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("Run migrations through 'tp-server migrate' (server.db.migrate).")
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=True,
    compare_type=True,
    # The monthly partitions of the tables that grow by time are made at run time, not by the models.
    include_name=include_name,
)
with context.begin_transaction():
    context.run_migrations()
