"""The holder of an import task: the process that runs it.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 00:00:00

One nullable column of ``image_tasks``: the task's holder
(:func:`imgmw.holders.holder_id`), so that recovery can tell the lock of
a ``copy-image`` whose process died from one still copying. Tasks
recorded before have none and are judged by their age alone.
"""

from alembic import op
import sqlalchemy as sa

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('image_tasks') as batch:
        batch.add_column(sa.Column('holder', sa.String(255)))
