"""Alembic environment: runs on the connection handed over by models.migrate."""

from alembic import context

from models.schema import metadata

config = context.config
connection = config.attributes.get("connection")
if connection is None:  # pragma: no cover - the CLI always passes a connection
    raise RuntimeError("run migrations through `returnvisit init` (models.migrate.upgrade)")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
