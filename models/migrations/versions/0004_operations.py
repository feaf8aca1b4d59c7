"""operations: the scheduler's heartbeat and the record of retention purges

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 05:00:00

Each scheduler process rewrites its own heartbeat row at the end of every tick (`returnvisit
status` reads them); each purge of personal data past the retention period leaves one row saying
when it ran, its cutoff and what it changed (the daily job also reads it to know when it last ran).
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models.base

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('scheduler_heartbeats',
    sa.Column('owner', sa.String(length=100), nullable=False),
    sa.Column('host', sa.String(length=255), nullable=False),
    sa.Column('pid', sa.Integer(), nullable=False),
    sa.Column('started_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_tick_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_tick_seconds', sa.Float(), nullable=False),
    sa.Column('last_tick_ok', sa.Boolean(), nullable=False),
    sa.Column('last_tick_jobs', sa.JSON(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('owner', name=op.f('pk_scheduler_heartbeats'))
    )
    op.create_table('retention_runs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('started_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('cutoff', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('actor', sa.String(length=120), nullable=False),
    sa.Column('counts', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_retention_runs'))
    )
    with op.batch_alter_table('retention_runs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_retention_runs_started_at'), ['started_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('retention_runs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_retention_runs_started_at'))
    op.drop_table('retention_runs')
    op.drop_table('scheduler_heartbeats')
