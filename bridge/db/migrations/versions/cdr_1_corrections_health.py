"""cdr.updated_at (correction files) and cdr_target_health (delivery target health across restarts)

Revision ID: cdr_1
Revises: smpp_1
"""
import sqlalchemy as sa
from alembic import op

revision = "cdr_1"
down_revision = "smpp_1"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("cdr", schema=None) as batch_op:
        batch_op.add_column(sa.Column("updated_at", sa.DateTime(), nullable=True))
        batch_op.create_index(batch_op.f("ix_cdr_updated_at"), ["updated_at"], unique=False)
    op.create_table(
        "cdr_target_health",
        sa.Column("target", sa.String(length=60), nullable=False),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("failing_since", sa.DateTime(), nullable=True),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("target"),
    )


def downgrade() -> None:
    op.drop_table("cdr_target_health")
    with op.batch_alter_table("cdr", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_cdr_updated_at"))
        batch_op.drop_column("updated_at")
