"""Alembic migrations of the image registry (see :mod:`imgmw.app.registry`).

No ``alembic.ini`` is needed: :func:`imgmw.app.registry.alembic_config`
builds the configuration, and ``imgmw-manage db sync`` applies it.
"""

#: The newest revision in ``versions/``. A database already there is not
#: migrated again, and Alembic is then never imported. A unit test keeps
#: this equal to what Alembic finds; update it with each new migration.
HEAD = '0005'
