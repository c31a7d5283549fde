"""The ledger: double-entry wallets, holds, jobs and stored Stripe events (SQLAlchemy).

Imports neither Flask nor Celery. Operations live in ``ledger.operations``, invariant
checks in ``ledger.invariants``, schema in ``ledger.models`` + Alembic revisions.
"""
