"""engine_alive: the last instant each node's engine was known alive (crash recovery closes legs there)

Revision ID: engine_1
Revises: cdr_1
"""

import sqlalchemy as sa
from alembic import op

revision = "engine_1"
down_revision = "cdr_1"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "engine_alive",
        sa.Column("node", sa.String(length=60), nullable=False),
        sa.Column("seen_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("node"),
    )


def downgrade() -> None:
    op.drop_table("engine_alive")
