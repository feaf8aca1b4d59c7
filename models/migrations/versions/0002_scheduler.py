"""scheduler: pick skips, the scheduler lock, call-rate slots and the sweeps' indexes

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 02:41:30.444027
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models.base

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('rate_slots',
    sa.Column('bucket', sa.String(length=64), nullable=False),
    sa.Column('next_free_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('bucket', name=op.f('pk_rate_slots'))
    )
    op.create_table('scheduler_locks',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('owner', sa.String(length=100), nullable=False),
    sa.Column('acquired_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_scheduler_locks'))
    )
    op.create_table('pick_skips',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('campaign_id', sa.Integer(), nullable=False),
    sa.Column('item_id', sa.Integer(), nullable=False),
    sa.Column('department_id', sa.Integer(), nullable=False),
    sa.Column('reason', sa.String(length=30), nullable=False),
    sa.Column('at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], name=op.f('fk_pick_skips_campaign_id_campaigns')),
    sa.ForeignKeyConstraint(['department_id'], ['departments.id'], name=op.f('fk_pick_skips_department_id_departments')),
    sa.ForeignKeyConstraint(['item_id'], ['service_items.id'], name=op.f('fk_pick_skips_item_id_service_items')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_pick_skips')),
    sa.UniqueConstraint('campaign_id', 'item_id', name=op.f('uq_pick_skips_campaign_id_item_id'))
    )
    with op.batch_alter_table('pick_skips', schema=None) as batch_op:
        batch_op.create_index('ix_pick_skips_campaign_reason', ['campaign_id', 'reason'], unique=False)

    with op.batch_alter_table('attempts', schema=None) as batch_op:
        batch_op.create_index('ix_attempts_channel_status', ['channel', 'status'], unique=False)

    with op.batch_alter_table('surveys', schema=None) as batch_op:
        batch_op.create_index('ix_surveys_created_at', ['created_at'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('surveys', schema=None) as batch_op:
        batch_op.drop_index('ix_surveys_created_at')

    with op.batch_alter_table('attempts', schema=None) as batch_op:
        batch_op.drop_index('ix_attempts_channel_status')

    with op.batch_alter_table('pick_skips', schema=None) as batch_op:
        batch_op.drop_index('ix_pick_skips_campaign_reason')

    op.drop_table('pick_skips')
    op.drop_table('scheduler_locks')
    op.drop_table('rate_slots')
