"""split insulin doses: nullable insulin_short and insulin_long; dose stays, read-only

Revision ID: b7e9d1c0f2a3
Revises: a1f3c2d4e5b6
Create Date: 2026-11-10 09:00:00
"""
from alembic import op
import sqlalchemy as sa

revision = "b7e9d1c0f2a3"
down_revision = "a1f3c2d4e5b6"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("history_records", sa.Column("insulin_short", sa.Numeric, nullable=True))
    op.add_column("history_records", sa.Column("insulin_long", sa.Numeric, nullable=True))


def downgrade() -> None:
    op.drop_column("history_records", "insulin_long")
    op.drop_column("history_records", "insulin_short")
