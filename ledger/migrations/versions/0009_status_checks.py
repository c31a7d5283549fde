"""Statuses as enums (issue 14): CHECK constraints generated from them on every status
column, and one backoff representation (``republishes`` / ``status_polls`` default 0 in
the database too). No column is renamed and no row changes: every stored status is
already one of the enum's values (a row that is not fails the upgrade, loudly).

The value lists are frozen here as they were at this revision (the models generate
them from ``ledger.models`` enums; ``tests/ledger/test_migrations.py`` checks the
two agree). Constraint names follow the metadata's convention (``ck_{table}_{name}``).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 01:45:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

JOB_STATUSES = ('requested', 'held', 'dispatched', 'in_progress', 'completed', 'failed',
                'timed_out', 'lost', 'cancelled', 'expired', 'rejected')
CHECKS: dict[str, list[tuple[str, str, tuple[str, ...]]]] = {  # table → (name, column, values)
    'jobs': [('ck_jobs_status_known', 'status', JOB_STATUSES),
             ('ck_jobs_stop_reason_known', 'stop_reason', ('cancel', 'expire'))],
    'runpod_jobs': [('ck_runpod_jobs_role_known', 'role', ('billed', 'stray')),
                    ('ck_runpod_jobs_state_known', 'state', ('open', 'settled'))],
    'stripe_events': [('ck_stripe_events_status_known', 'status',
                       ('received', 'processed', 'ignored', 'failed', 'wrong_mode'))],
    'topups': [('ck_topups_status_known', 'status',
                ('open', 'credited', 'failed', 'expired', 'mismatch'))],
    'stripe_reversals': [('ck_stripe_reversals_status_known', 'status',
                          ('active', 'failed', 'withdrawn', 'reinstated', 'lost', 'won', 'inquiry'))],
    'notifications': [('ck_notifications_status_known', 'status',
                       ('pending', 'sent', 'failed', 'skipped'))],
}
# Backoff counters that had only a Python-side default.
COUNTERS = {'jobs': ('republishes', 'status_polls'), 'stripe_events': ('republishes',)}


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def upgrade() -> None:
    for table, checks in CHECKS.items():
        with op.batch_alter_table(table) as batch:
            for name, column, values in checks:
                batch.create_check_constraint(op.f(name), _in(column, values))
            for column in COUNTERS.get(table, ()):
                batch.alter_column(column, existing_type=sa.Integer(), existing_nullable=False,
                                   server_default='0')


def downgrade() -> None:
    for table, checks in CHECKS.items():
        with op.batch_alter_table(table) as batch:
            for column in COUNTERS.get(table, ()):
                batch.alter_column(column, existing_type=sa.Integer(), existing_nullable=False,
                                   server_default=None)
            for name, _, _ in checks:
                batch.drop_constraint(op.f(name), type_='check')
