"""The quota tables, as SQLAlchemy Core metadata.

They are migrated by a chain of their own
(:mod:`imgmw.filters.quota.migrations`, version table
``imgmw_quota_version``): in the registry's database by ``imgmw-manage db
sync`` (which adopts the tables the registry's migration
``0002`` created in earlier releases; the registry's models still include
them, as 0002 does), and in front of Glance (``usage_source = glance``) in
a database of their own (``quota_connection``), which the quota filter
migrates at first use.

``quota_locks``
    one row per project that ever reserved; a reservation locks its
    project's row (``SELECT ... FOR UPDATE``) for the duration of its
    check-and-reserve transaction, which serializes the decisions of every
    API node about that project, and only that project.
``quota_reservations``
    one row per upload or stage in progress: the bytes it may write, who
    holds it and until when. A row whose ``expires_at`` has passed counts
    for nothing (its process died) and is deleted by the next reservation
    of its project.

Times are naive UTC (``DATETIME(6)`` on MySQL).
"""

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

metadata = sa.MetaData()

TABLE_OPTIONS = {'mysql_engine': 'InnoDB', 'mysql_charset': 'utf8mb4',
                 'mysql_collate': 'utf8mb4_bin'}

#: ``quota_reservations.kind``: an upload of image data, or a stage.
UPLOAD = 'upload'
STAGE = 'stage'
KINDS = (UPLOAD, STAGE)


def time_type() -> sa.types.TypeEngine:
    return sa.DateTime().with_variant(mysql.DATETIME(fsp=6), 'mysql')


locks = sa.Table(
    'quota_locks', metadata,
    sa.Column('project_id', sa.String(255), primary_key=True),
    **TABLE_OPTIONS,
)

reservations = sa.Table(
    'quota_reservations', metadata,
    sa.Column('id', sa.String(36), primary_key=True),
    sa.Column('project_id', sa.String(255), nullable=False),
    sa.Column('image_id', sa.String(36), nullable=False),
    sa.Column('kind', sa.String(10), nullable=False),
    sa.Column('size', sa.BigInteger, nullable=False),
    sa.Column('holder', sa.String(255), nullable=False),
    sa.Column('created_at', time_type(), nullable=False),
    sa.Column('expires_at', time_type(), nullable=False),
    sa.Index('ix_quota_reservations_project_id', 'project_id'),
    **TABLE_OPTIONS,
)


def exists(engine: sa.engine.Engine) -> bool:
    """Whether both quota tables exist in ``engine``'s database."""
    names = set(sa.inspect(engine).get_table_names())
    return {locks.name, reservations.name} <= names
