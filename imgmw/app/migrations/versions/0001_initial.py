"""The image registry: images, tags, extra properties and locations.

Revision ID: 0001
Revises:
Create Date: 2025-01-01 00:00:00
"""

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import mysql

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None

TABLE_OPTIONS = {'mysql_engine': 'InnoDB', 'mysql_charset': 'utf8mb4',
                 'mysql_collate': 'utf8mb4_bin'}


def _time() -> sa.types.TypeEngine:
    return sa.DateTime().with_variant(mysql.DATETIME(fsp=6), 'mysql')


def _image_id() -> sa.Column:
    return sa.Column('image_id', sa.String(36),
                     sa.ForeignKey('images.id', ondelete='CASCADE'),
                     primary_key=True)


def upgrade() -> None:
    op.create_table(
        'images',
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
        sa.Column('created_at', _time(), nullable=False),
        sa.Column('updated_at', _time(), nullable=False),
        sa.Column('deleted_at', _time()),
        sa.Column('holder', sa.String(255)),
        sa.Column('held_since', _time()),
        sa.Column('heartbeat_at', _time()),
        **TABLE_OPTIONS)
    for column in ('status', 'owner', 'visibility', 'created_at'):
        op.create_index('ix_images_%s' % column, 'images', [column])
    op.create_table(
        'image_tags', _image_id(),
        sa.Column('value', sa.String(255), primary_key=True),
        **TABLE_OPTIONS)
    op.create_table(
        'image_properties', _image_id(),
        sa.Column('name', sa.String(255), primary_key=True),
        sa.Column('value', sa.Text, nullable=False),
        **TABLE_OPTIONS)
    op.create_table(
        'image_locations', _image_id(),
        sa.Column('position', sa.Integer, primary_key=True,
                  autoincrement=False),
        sa.Column('store', sa.String(255), nullable=False),
        sa.Column('url', sa.Text, nullable=False),
        **TABLE_OPTIONS)
