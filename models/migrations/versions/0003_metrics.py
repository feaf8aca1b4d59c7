"""metrics: covering indexes for the quarterly figures

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 03:30:00

One quarter's surveys are read by (quarter, kind, department, state, disposition) from an index,
each survey's rating and a bad review's categories from partial indexes on answers (one per
question; partial because comments hold long texts), and a quarter's cases by (quarter,
department): the metrics of a quarter then read almost no table row.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RATING_ONLY = "question = 'rating'"
CATEGORIES_ONLY = "question = 'categories'"


def upgrade() -> None:
    with op.batch_alter_table('surveys', schema=None) as batch_op:
        batch_op.create_index(
            'ix_surveys_quarter_metrics',
            ['quarter', 'kind', 'department_id', 'state', 'disposition', 'id'],
            unique=False,
        )
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.create_index('ix_cases_quarter_department', ['quarter', 'department_id'], unique=False)
    with op.batch_alter_table('answers', schema=None) as batch_op:
        batch_op.create_index(
            'ix_answers_rating',
            ['survey_id', 'question', 'late', 'value'],
            unique=False,
            sqlite_where=sa.text(RATING_ONLY),
            postgresql_where=sa.text(RATING_ONLY),
        )
        batch_op.create_index(
            'ix_answers_categories',
            ['survey_id', 'question', 'late', 'value'],
            unique=False,
            sqlite_where=sa.text(CATEGORIES_ONLY),
            postgresql_where=sa.text(CATEGORIES_ONLY),
        )


def downgrade() -> None:
    with op.batch_alter_table('answers', schema=None) as batch_op:
        batch_op.drop_index('ix_answers_categories')
        batch_op.drop_index('ix_answers_rating')
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.drop_index('ix_cases_quarter_department')
    with op.batch_alter_table('surveys', schema=None) as batch_op:
        batch_op.drop_index('ix_surveys_quarter_metrics')
