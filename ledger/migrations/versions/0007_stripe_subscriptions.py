"""stripe_subscriptions: a wallet's Stripe subscriptions (plan, status, period end).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 22:45:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'stripe_subscriptions',
        sa.Column('id', sa.String(255), primary_key=True),
        sa.Column('user_id', sa.String(64), nullable=False),
        sa.Column('customer_id', sa.String(255)),
        sa.Column('plan', sa.String(32)),
        sa.Column('status', sa.String(32), nullable=False),
        sa.Column('current_period_end', sa.DateTime()),
        sa.Column('snapshot_at', sa.BigInteger(), nullable=False),
        sa.Column('updated_at', sa.DateTime(), nullable=False),
    )
    op.create_index('ix_stripe_subscriptions_user_id', 'stripe_subscriptions', ['user_id'])


def downgrade() -> None:
    op.drop_index('ix_stripe_subscriptions_user_id', 'stripe_subscriptions')
    op.drop_table('stripe_subscriptions')
