"""Alembic environment of the image registry.

:meth:`imgmw.app.registry.Registry.sync` hands in an open connection as
``config.attributes['connection']``; without one (the ``alembic`` command
line, for developers writing a migration) the URL comes from the
configuration's ``sqlalchemy.url``. Offline (SQL script) mode is supported
for operators who review DDL before applying it.
"""

from alembic import context
import sqlalchemy as sa

from imgmw.app import models


def run_offline() -> None:
    context.configure(url=context.config.get_main_option('sqlalchemy.url'),
                      target_metadata=models.metadata,
                      literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_with(connection) -> None:
    context.configure(connection=connection,
                      target_metadata=models.metadata)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = context.config.attributes.get('connection')
    if connection is not None:
        run_with(connection)
        return
    engine = sa.create_engine(
        context.config.get_main_option('sqlalchemy.url'),
        poolclass=sa.pool.NullPool)
    with engine.begin() as connection:
        run_with(connection)
    engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
