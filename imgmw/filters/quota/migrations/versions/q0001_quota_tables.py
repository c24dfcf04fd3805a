"""The quota tables, adopted where the registry's 0002 created them.

Revision ID: q0001
Revises:
Create Date: 2026-12-03 00:00:00
"""

from alembic import op
import sqlalchemy as sa

from imgmw.filters.quota import schema

revision = 'q0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Tables of the registry's migration 0002 (earlier releases) are
    # adopted as they are: they have this revision's shape.
    bind = op.get_bind()
    existing = set(sa.inspect(bind).get_table_names())
    for table in (schema.locks, schema.reservations):
        if table.name not in existing:
            table.create(bind)


def downgrade() -> None:
    # The tables may be the registry's (its 0002): dropping them is left to
    # whoever drops the database.
    pass
