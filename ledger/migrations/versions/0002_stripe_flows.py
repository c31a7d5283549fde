"""Stripe money flows (issue 3): top-up lifecycle, refunds, disputes, invoices.

Top-ups gain the charge/customer link, a note (why flagged or closed) and ``closed_at``;
``stripe_reversals`` tracks each refund and dispute of a top-up's charge;
``stripe_customers`` maps a Stripe customer to its wallet for subscription invoices.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21 05:50:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    with op.batch_alter_table('topups', schema=None) as batch_op:
        batch_op.add_column(sa.Column('charge_id', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('customer_id', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('note', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('closed_at', sa.DateTime(), nullable=True))
        batch_op.create_index(batch_op.f('ix_topups_charge_id'), ['charge_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_topups_customer_id'), ['customer_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_topups_payment_intent_id'), ['payment_intent_id'], unique=False)

    op.create_table('stripe_reversals',
    sa.Column('id', sa.String(length=255), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('topup_id', BigId, nullable=False),
    sa.Column('charge_id', sa.String(length=255), nullable=True),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('clawed', sa.BigInteger(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['topup_id'], ['topups.id'], name=op.f('fk_stripe_reversals_topup_id_topups')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_stripe_reversals'))
    )
    with op.batch_alter_table('stripe_reversals', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_stripe_reversals_topup_id'), ['topup_id'], unique=False)

    op.create_table('stripe_customers',
    sa.Column('id', sa.String(length=255), nullable=False),
    sa.Column('user_id', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_stripe_customers'))
    )
    with op.batch_alter_table('stripe_customers', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_stripe_customers_user_id'), ['user_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('stripe_customers', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_stripe_customers_user_id'))
    op.drop_table('stripe_customers')
    with op.batch_alter_table('stripe_reversals', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_stripe_reversals_topup_id'))
    op.drop_table('stripe_reversals')
    with op.batch_alter_table('topups', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_topups_payment_intent_id'))
        batch_op.drop_index(batch_op.f('ix_topups_customer_id'))
        batch_op.drop_index(batch_op.f('ix_topups_charge_id'))
        batch_op.drop_column('closed_at')
        batch_op.drop_column('note')
        batch_op.drop_column('customer_id')
        batch_op.drop_column('charge_id')
