"""sms_part: parts of concatenated MOs waiting for reassembly

Revision ID: smpp_1
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "smpp_1"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sms_part",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("destination", sa.String(length=32), nullable=False),
        sa.Column("ref", sa.Integer(), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("data_coding", sa.Integer(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("done", sa.Boolean(), nullable=False),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("source", "destination", "ref", "total", "seq"),
    )
    with op.batch_alter_table("sms_part", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sms_part_received_at"), ["received_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("sms_part", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sms_part_received_at"))
    op.drop_table("sms_part")
