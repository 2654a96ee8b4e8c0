"""history_records: the diary's dose history, legacy single dose

Revision ID: a1f3c2d4e5b6
Revises:
Create Date: 2026-10-01 09:00:00
"""
from alembic import op
import sqlalchemy as sa

revision = "a1f3c2d4e5b6"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "history_records",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("user_id", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")),
        sa.Column("dose", sa.Numeric, nullable=True),
        sa.Column("note", sa.Text, nullable=True),
    )
    op.create_index("history_records_created_at", "history_records", ["created_at"])


def downgrade() -> None:
    op.drop_table("history_records")
