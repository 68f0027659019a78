"""Alembic environment: the URL comes from the caller (warehouse.migrate) or from settings, never a file."""

from alembic import context
from sqlalchemy import create_engine, pool

from pulseops.settings import get_settings
from warehouse.db import sqlalchemy_url

url = context.config.attributes.get("url") or get_settings().db.url


def run_migrations_online() -> None:
    engine = create_engine(sqlalchemy_url(url), poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, transaction_per_migration=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    context.configure(url=sqlalchemy_url(url), literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    run_migrations_online()
