"""Quota reservations: per-project lock rows and uploads in progress.

Revision ID: 0002
Revises: 0001
Create Date: 2025-01-02 00:00:00
"""

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import mysql

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

TABLE_OPTIONS = {'mysql_engine': 'InnoDB', 'mysql_charset': 'utf8mb4',
                 'mysql_collate': 'utf8mb4_bin'}


def _time() -> sa.types.TypeEngine:
    return sa.DateTime().with_variant(mysql.DATETIME(fsp=6), 'mysql')


def upgrade() -> None:
    op.create_table(
        'quota_locks',
        sa.Column('project_id', sa.String(255), primary_key=True),
        **TABLE_OPTIONS)
    op.create_table(
        'quota_reservations',
        sa.Column('id', sa.String(36), primary_key=True),
        sa.Column('project_id', sa.String(255), nullable=False),
        sa.Column('image_id', sa.String(36), nullable=False),
        sa.Column('kind', sa.String(10), nullable=False),
        sa.Column('size', sa.BigInteger, nullable=False),
        sa.Column('holder', sa.String(255), nullable=False),
        sa.Column('created_at', _time(), nullable=False),
        sa.Column('expires_at', _time(), nullable=False),
        **TABLE_OPTIONS)
    op.create_index('ix_quota_reservations_project_id',
                    'quota_reservations', ['project_id'])
