"""speed: fewer indexes on the rows the scheduler writes, a quarter's surveys in id order

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 06:00:00

Every survey a pick inserts, and every one a dispatcher claims (an update of an indexed column, so
a new entry in each index), costs one entry per index on surveys; every attempt one per index on
attempts. Dropped: surveys by (department, quarter) and by creation time, which no query needs any
more (the contact cap asks by phone, the figures by quarter), and attempts by survey id alone, which
the unique (survey_id, channel, number) already serves. The quarterly figures' index now orders a
quarter's surveys by id, so its first and last id are two index probes and the answers and attempts
of that id range are joined in order (a merge join on PostgreSQL, seeks in order on SQLite).
"""
from collections.abc import Sequence

from alembic import op

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_QUARTER_METRICS = ['quarter', 'kind', 'department_id', 'state', 'disposition', 'id']
NEW_QUARTER_METRICS = ['quarter', 'kind', 'id', 'department_id', 'state', 'disposition']


def upgrade() -> None:
    with op.batch_alter_table('surveys', schema=None) as batch_op:
        batch_op.drop_index('ix_surveys_department_quarter')
        batch_op.drop_index('ix_surveys_created_at')
        batch_op.drop_index('ix_surveys_quarter_metrics')
        batch_op.create_index('ix_surveys_quarter_metrics', NEW_QUARTER_METRICS, unique=False)
    with op.batch_alter_table('attempts', schema=None) as batch_op:
        batch_op.drop_index('ix_attempts_survey_id')


def downgrade() -> None:
    with op.batch_alter_table('attempts', schema=None) as batch_op:
        batch_op.create_index('ix_attempts_survey_id', ['survey_id'], unique=False)
    with op.batch_alter_table('surveys', schema=None) as batch_op:
        batch_op.drop_index('ix_surveys_quarter_metrics')
        batch_op.create_index('ix_surveys_quarter_metrics', OLD_QUARTER_METRICS, unique=False)
        batch_op.create_index('ix_surveys_created_at', ['created_at'], unique=False)
        batch_op.create_index('ix_surveys_department_quarter', ['department_id', 'quarter'], unique=False)
