"""every RunPod job id received for one of our jobs (billed or stray) and the dispatch
intent recorded before /run (issue 11, docs/runpod-boundary.md).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 22:50:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'runpod_jobs',
        sa.Column('id', sa.String(100), primary_key=True),
        sa.Column('job_id', sa.String(40), sa.ForeignKey('jobs.id'), nullable=False),
        sa.Column('endpoint_id', sa.String(64), nullable=False),
        sa.Column('role', sa.String(8), nullable=False),
        sa.Column('state', sa.String(8), nullable=False),
        sa.Column('runpod_status', sa.String(16)),
        sa.Column('execution_ms', sa.BigInteger()),
        sa.Column('delay_ms', sa.BigInteger()),
        sa.Column('recorded_at', sa.DateTime(), nullable=False),
        sa.Column('settled_at', sa.DateTime()),
    )
    op.create_index('ix_runpod_jobs_job_id', 'runpod_jobs', ['job_id'])
    with op.batch_alter_table('jobs') as batch:
        batch.add_column(sa.Column('dispatching_at', sa.DateTime()))
        batch.add_column(sa.Column('runpod_billed_usd', sa.Numeric(14, 6)))
        batch.add_column(sa.Column('task_failures', sa.Integer(), nullable=False, server_default='0'))
        batch.add_column(sa.Column('refresh_due_at', sa.DateTime()))


def downgrade() -> None:
    with op.batch_alter_table('jobs') as batch:
        batch.drop_column('refresh_due_at')
        batch.drop_column('task_failures')
        batch.drop_column('runpod_billed_usd')
        batch.drop_column('dispatching_at')
    op.drop_index('ix_runpod_jobs_job_id', 'runpod_jobs')
    op.drop_table('runpod_jobs')
