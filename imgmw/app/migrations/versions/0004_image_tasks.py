"""Import tasks of images (``GET /v2/images/{id}/tasks``).

Revision ID: 0004
Revises: 0002
Create Date: 2025-01-04 00:00:00
"""

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import mysql

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

TABLE_OPTIONS = {'mysql_engine': 'InnoDB', 'mysql_charset': 'utf8mb4',
                 'mysql_collate': 'utf8mb4_bin'}


def _time() -> sa.types.TypeEngine:
    return sa.DateTime().with_variant(mysql.DATETIME(fsp=6), 'mysql')


def upgrade() -> None:
    op.create_table(
        'image_tasks',
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
        sa.Column('created_at', _time(), nullable=False),
        sa.Column('updated_at', _time(), nullable=False),
        sa.Column('expires_at', _time()),
        **TABLE_OPTIONS)
    op.create_index('ix_image_tasks_image_id', 'image_tasks', ['image_id'])
