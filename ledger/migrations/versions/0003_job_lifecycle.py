"""job lifecycle (issue 4): idempotency keys, notifications (outbox of outbound
webhooks), job columns for cancel/expiry, lost-job flag and poll backoff.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21 05:50:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('idempotency_keys',
    sa.Column('scope', sa.String(length=64), nullable=False),
    sa.Column('key', sa.String(length=255), nullable=False),
    sa.Column('request_hash', sa.String(length=64), nullable=False),
    sa.Column('status_code', sa.Integer(), nullable=False),
    sa.Column('response', sa.Text(), nullable=False),
    sa.Column('job_id', sa.String(length=40), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('scope', 'key', name=op.f('pk_idempotency_keys'))
    )
    op.create_table('notifications',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('job_id', sa.String(length=40), nullable=False),
    sa.Column('type', sa.String(length=32), nullable=False),
    sa.Column('payload', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(), nullable=False),
    sa.Column('sent_at', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_notifications')),
    sa.UniqueConstraint('job_id', 'type', name=op.f('uq_notifications_job_id'))
    )
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.create_index('ix_notifications_status_next', ['status', 'next_attempt_at'], unique=False)

    # Server defaults fill rows that exist already; the models set the values on insert.
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('cancel_policy', sa.String(length=16), nullable=False,
                                      server_default='charge_execution'))
        batch_op.add_column(sa.Column('in_progress_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('stop_requested_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('stop_reason', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('flagged', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column('status_polls', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('next_poll_at', sa.DateTime(), nullable=True))
    # Outbox sweeper backoff on both outboxes (jobs, Stripe events).
    for table in ('jobs', 'stripe_events'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('republishes', sa.Integer(), nullable=False, server_default='0'))
            batch_op.add_column(sa.Column('republish_at', sa.DateTime(), nullable=True))


def downgrade() -> None:
    for table in ('stripe_events', 'jobs'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column('republish_at')
            batch_op.drop_column('republishes')
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        for column in ('next_poll_at', 'status_polls', 'flagged', 'stop_reason',
                       'stop_requested_at', 'in_progress_at', 'cancel_policy'):
            batch_op.drop_column(column)
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.drop_index('ix_notifications_status_next')
    op.drop_table('notifications')
    op.drop_table('idempotency_keys')
