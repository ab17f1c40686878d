"""billing: rate plans and entries, ledger movements, destination rules, company/subscriber billing
columns, leg/CDR billing columns; subscriber balance widened to 4 decimals and seeded into the ledger

Revision ID: billing_1
Revises: api_1
"""

import sqlalchemy as sa
from alembic import op

revision = "billing_1"
down_revision = "api_1"
branch_labels = None
depends_on = None

PRICE = sa.Numeric(14, 6)
MONEY = sa.Numeric(14, 4)


def _billing_columns() -> list[sa.Column]:  # type: ignore[type-arg]
    return [
        sa.Column("rate_plan", sa.String(length=80), server_default="", nullable=False),
        sa.Column("rate_prefix", sa.String(length=20), server_default="", nullable=False),
        sa.Column("billed_s", sa.Integer(), nullable=True),
        sa.Column("price", MONEY, nullable=True),
        sa.Column("refusal", sa.String(length=40), server_default="", nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "rate_plan",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.Column("is_default", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "rate_entry",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("plan_id", sa.Integer(), nullable=False),
        sa.Column("prefix", sa.String(length=20), nullable=False),
        sa.Column("description", sa.String(length=120), nullable=False),
        sa.Column("price_per_min", PRICE, nullable=False),
        sa.Column("connection_fee", PRICE, nullable=False),
        sa.Column("first_increment", sa.Integer(), nullable=False),
        sa.Column("next_increment", sa.Integer(), nullable=False),
        sa.Column("peak_price", PRICE, nullable=True),
        sa.Column("peak_start", sa.Time(), nullable=True),
        sa.Column("peak_end", sa.Time(), nullable=True),
        sa.Column("inbound_price", PRICE, nullable=False),
        sa.ForeignKeyConstraint(["plan_id"], ["rate_plan.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("plan_id", "prefix"),
    )
    op.create_index("ix_rate_entry_plan_id", "rate_entry", ["plan_id"])
    with op.batch_alter_table("company") as batch:
        batch.add_column(sa.Column("postpaid", sa.Boolean(), server_default="1", nullable=False))
        batch.add_column(sa.Column("credit_limit", MONEY, nullable=True))
        batch.add_column(sa.Column("max_legs", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("allow_international", sa.Boolean(), server_default="0", nullable=False))
        batch.add_column(sa.Column("rate_plan_id", sa.Integer(), nullable=True))
        batch.create_foreign_key("fk_company_rate_plan_id", "rate_plan", ["rate_plan_id"], ["id"])
    with op.batch_alter_table("subscriber") as batch:
        batch.alter_column("balance", type_=MONEY, existing_type=sa.Numeric(12, 2), existing_nullable=True)
        batch.add_column(sa.Column("max_legs", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("lock_reasons", sa.String(length=60), server_default="", nullable=False))
    with op.batch_alter_table("leg") as batch:
        for column in _billing_columns():
            batch.add_column(column)
    with op.batch_alter_table("cdr") as batch:
        for column in _billing_columns():
            batch.add_column(column)
    op.create_table(
        "ledger_movement",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("company_id", sa.Integer(), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("amount", MONEY, nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("reference", sa.String(length=200), nullable=False),
        sa.Column("leg_id", sa.Integer(), nullable=True),
        sa.Column("by", sa.String(length=120), nullable=False),
        sa.ForeignKeyConstraint(["company_id"], ["company.id"]),
        sa.ForeignKeyConstraint(["subscriber_id"], ["subscriber.id"]),
        sa.ForeignKeyConstraint(["leg_id"], ["leg.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    for column in ("company_id", "subscriber_id", "at", "leg_id"):
        op.create_index(f"ix_ledger_movement_{column}", "ledger_movement", [column])
    op.create_table(
        "destination_rule",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("company_id", sa.Integer(), nullable=True),
        sa.Column("prefix", sa.String(length=20), nullable=False),
        sa.Column("category", sa.String(length=40), nullable=False),
        sa.Column("allow", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["company_id"], ["company.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("company_id", "prefix"),
    )
    op.create_index("ix_destination_rule_company_id", "destination_rule", ["company_id"])
    # Existing balances become the opening movement of each subscriber's ledger, so sum == balance.
    op.execute(
        "INSERT INTO ledger_movement (company_id, subscriber_id, kind, amount, at, reference, by) "
        "SELECT company_id, id, 'adjustment', balance, CURRENT_TIMESTAMP, 'opening balance', 'migration' "
        "FROM subscriber WHERE balance IS NOT NULL AND balance <> 0"
    )


def downgrade() -> None:
    op.drop_table("destination_rule")
    op.drop_table("ledger_movement")
    for table in ("cdr", "leg"):
        with op.batch_alter_table(table) as batch:
            for column in _billing_columns():
                batch.drop_column(column.name)
    with op.batch_alter_table("subscriber") as batch:
        batch.drop_column("lock_reasons")
        batch.drop_column("max_legs")
        batch.alter_column("balance", type_=sa.Numeric(12, 2), existing_type=MONEY, existing_nullable=True)
    with op.batch_alter_table("company") as batch:
        batch.drop_constraint("fk_company_rate_plan_id", type_="foreignkey")
        for column in ("rate_plan_id", "allow_international", "max_legs", "credit_limit", "postpaid"):
            batch.drop_column(column)
    op.drop_table("rate_entry")
    op.drop_table("rate_plan")
