"""runpod_jobs: outbox backoff for open strays (the sweeper re-publishes their cancel).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 22:50:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('runpod_jobs') as batch:
        batch.add_column(sa.Column('republishes', sa.Integer(), nullable=False, server_default='0'))
        batch.add_column(sa.Column('republish_at', sa.DateTime()))


def downgrade() -> None:
    with op.batch_alter_table('runpod_jobs') as batch:
        batch.drop_column('republish_at')
        batch.drop_column('republishes')
