"""The quota tables' own Alembic chain.

The reservation tables (:mod:`imgmw.filters.quota.schema`) are migrated by
a chain of their own, whose version is kept in the table
:data:`VERSION_TABLE` (not ``alembic_version``), so that it lives beside
the registry's chain in imgmw's database, or alone in a database of the
quota's own in front of Glance (``quota_connection``).

Its first revision adopts the tables that the registry's migration
``0002`` created in earlier releases: it creates only those that are
missing. :func:`upgrade` runs it: ``imgmw-manage db sync`` (with the
registry's chain), and the quota filter at first use of a database of its
own.
"""

import os
import typing

import sqlalchemy as sa

#: Where the chain records its revision.
VERSION_TABLE = 'imgmw_quota_version'

#: The newest revision in ``versions/``; a database already there is not
#: migrated again, and Alembic is then never imported.
HEAD = 'q0001'

DIRECTORY = os.path.dirname(os.path.abspath(__file__))


def current(connection) -> typing.Optional[str]:
    """The chain's revision in the database, read plainly, or None."""
    if not sa.inspect(connection).has_table(VERSION_TABLE):
        return None
    return connection.execute(sa.text(
        'SELECT version_num FROM %s' % VERSION_TABLE)).scalar()  # nosec B608


def alembic_config():
    """Alembic's configuration of the chain, without an ini file."""
    import alembic.config
    config = alembic.config.Config()
    config.set_main_option('script_location', DIRECTORY)
    return config


def upgrade(connection) -> None:
    """Upgrade the quota tables to :data:`HEAD` on ``connection``.

    Runs in the caller's transaction; idempotent.
    """
    if current(connection) == HEAD:
        return
    import alembic.command
    config = alembic_config()
    config.attributes['connection'] = connection
    alembic.command.upgrade(config, 'head')
