"""Alembic environment of the quota tables' chain.

:func:`imgmw.filters.quota.migrations.upgrade` hands in an open connection as
``config.attributes['connection']``; the revision is kept in
:data:`imgmw.filters.quota.migrations.VERSION_TABLE`.
"""

from alembic import context

from imgmw.filters.quota import migrations
from imgmw.filters.quota import schema


def run_with(connection) -> None:
    context.configure(connection=connection,
                      target_metadata=schema.metadata,
                      version_table=migrations.VERSION_TABLE)
    with context.begin_transaction():
        context.run_migrations()


run_with(context.config.attributes['connection'])
