"""Block digests: a fast digest of every block of an image, per location.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03 00:00:00

Three nullable columns of ``image_locations``: the algorithm, the block
size and the digests (one after the other). Locations recorded before have
none until ``imgmw-manage backfill-blocks`` computes them; their downloads
are verified by the checksum filter's hash of the whole body.
"""

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import mysql

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('image_locations') as batch:
        batch.add_column(sa.Column('block_algorithm', sa.String(16)))
        batch.add_column(sa.Column('block_size', sa.Integer))
        batch.add_column(sa.Column(
            'block_digests',
            sa.LargeBinary().with_variant(mysql.LONGBLOB(), 'mysql')))
