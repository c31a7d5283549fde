"""indexes for a wallet's entries newest first (ledger.entries): transactions and holds
by (user_id, time, id), so one page costs the same at 10k or 1M postings.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-21 07:40:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_transactions_user_created', 'transactions', ['user_id', 'created_at', 'id'])
    op.create_index('ix_holds_user_created', 'holds', ['user_id', 'created_at', 'id'])
    released = sa.text("status IN ('released', 'expired')")
    op.create_index('ix_holds_user_released', 'holds', ['user_id', 'closed_at', 'id'],
                    postgresql_where=released, sqlite_where=released)


def downgrade() -> None:
    op.drop_index('ix_holds_user_released', 'holds')
    op.drop_index('ix_holds_user_created', 'holds')
    op.drop_index('ix_transactions_user_created', 'transactions')
