"""The registry's tables, as SQLAlchemy Core metadata.

The schema itself is owned by the Alembic migrations in
``imgmw/app/migrations/versions``; this module describes the current head
for the queries of :mod:`imgmw.app.registry`, and a unit test checks that
the two agree on every supported database.

Times are stored as naive UTC (``DATETIME(6)`` on MySQL, so the keyset
pagination on ``created_at`` keeps its order) and come back timezone-aware.
"""

import datetime

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from imgmw.filters.quota import schema as quota_schema

metadata = sa.MetaData()

#: MySQL and MariaDB: transactional tables, full Unicode, and text compared
#: byte for byte (names and tags are case-sensitive, as on other databases).
TABLE_OPTIONS = {'mysql_engine': 'InnoDB', 'mysql_charset': 'utf8mb4',
                 'mysql_collate': 'utf8mb4_bin'}


class UTCDateTime(sa.types.TypeDecorator):
    """An aware UTC datetime stored as a naive one with microseconds."""

    impl = sa.DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect):
        if dialect.name in ('mysql', 'mariadb'):
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(sa.DateTime())

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError('naive datetime %r: registry times are UTC-aware'
                             % (value,))
        return value.astimezone(datetime.timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=datetime.timezone.utc)


images = sa.Table(
    'images', metadata,
    sa.Column('id', sa.String(36), primary_key=True),
    sa.Column('name', sa.String(255)),
    sa.Column('status', sa.String(30), nullable=False),
    sa.Column('visibility', sa.String(20), nullable=False),
    sa.Column('protected', sa.Boolean, nullable=False),
    sa.Column('os_hidden', sa.Boolean, nullable=False),
    sa.Column('checksum', sa.String(32)),
    sa.Column('os_hash_algo', sa.String(64)),
    sa.Column('os_hash_value', sa.String(128)),
    sa.Column('size', sa.BigInteger),
    sa.Column('virtual_size', sa.BigInteger),
    sa.Column('disk_format', sa.String(20)),
    sa.Column('container_format', sa.String(20)),
    sa.Column('owner', sa.String(255)),
    sa.Column('min_ram', sa.Integer, nullable=False),
    sa.Column('min_disk', sa.Integer, nullable=False),
    sa.Column('created_at', UTCDateTime, nullable=False),
    sa.Column('updated_at', UTCDateTime, nullable=False),
    sa.Column('deleted_at', UTCDateTime),
    sa.Column('holder', sa.String(255)),
    sa.Column('held_since', UTCDateTime),
    sa.Column('heartbeat_at', UTCDateTime),
    sa.Index('ix_images_status', 'status'),
    sa.Index('ix_images_owner', 'owner'),
    sa.Index('ix_images_visibility', 'visibility'),
    sa.Index('ix_images_created_at', 'created_at'),
    **TABLE_OPTIONS,
)

image_tags = sa.Table(
    'image_tags', metadata,
    sa.Column('image_id', sa.String(36),
              sa.ForeignKey('images.id', ondelete='CASCADE'),
              primary_key=True),
    sa.Column('value', sa.String(255), primary_key=True),
    **TABLE_OPTIONS,
)

image_properties = sa.Table(
    'image_properties', metadata,
    sa.Column('image_id', sa.String(36),
              sa.ForeignKey('images.id', ondelete='CASCADE'),
              primary_key=True),
    sa.Column('name', sa.String(255), primary_key=True),
    sa.Column('value', sa.Text, nullable=False),
    **TABLE_OPTIONS,
)

image_locations = sa.Table(
    'image_locations', metadata,
    sa.Column('image_id', sa.String(36),
              sa.ForeignKey('images.id', ondelete='CASCADE'),
              primary_key=True),
    sa.Column('position', sa.Integer, primary_key=True,
              autoincrement=False),
    sa.Column('store', sa.String(255), nullable=False),
    sa.Column('url', sa.Text, nullable=False),
    # The block digests of the data (imgmw.hashing.BlockDigests), or none.
    sa.Column('block_algorithm', sa.String(16)),
    sa.Column('block_size', sa.Integer),
    sa.Column('block_digests',
              sa.LargeBinary().with_variant(mysql.LONGBLOB(), 'mysql')),
    **TABLE_OPTIONS,
)

#: Import tasks, as Glance shows them under ``/v2/images/{id}/tasks``;
#: ``input`` and ``result`` are JSON text; ``holder`` is the process
#: running the task (:func:`imgmw.holders.holder_id`), never shown.
image_tasks = sa.Table(
    'image_tasks', metadata,
    sa.Column('id', sa.String(36), primary_key=True),
    sa.Column('image_id', sa.String(36),
              sa.ForeignKey('images.id', ondelete='CASCADE'),
              nullable=False),
    sa.Column('type', sa.String(30), nullable=False),
    sa.Column('status', sa.String(30), nullable=False),
    sa.Column('owner', sa.String(255)),
    sa.Column('user_id', sa.String(255)),
    sa.Column('request_id', sa.String(255)),
    sa.Column('input', sa.Text, nullable=False),
    sa.Column('result', sa.Text),
    sa.Column('message', sa.Text, nullable=False),
    sa.Column('created_at', UTCDateTime, nullable=False),
    sa.Column('updated_at', UTCDateTime, nullable=False),
    sa.Column('expires_at', UTCDateTime),
    sa.Column('holder', sa.String(255)),
    sa.Index('ix_image_tasks_image_id', 'image_id'),
    **TABLE_OPTIONS,
)

# The quota filter's reservation tables live in the same database and come
# with the same migrations (0002); they are declared by the quota filter's
# engine (imgmw.filters.quota), which must not depend on the app.
for _table in quota_schema.metadata.tables.values():
    _table.to_metadata(metadata)
