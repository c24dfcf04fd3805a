"""Alembic migrations of the image registry (see :mod:`imgmw.app.registry`).

No ``alembic.ini`` is needed: :func:`imgmw.app.registry.alembic_config`
builds the configuration, and ``imgmw-manage db sync`` applies it.
"""
