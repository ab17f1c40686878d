"""api: composite indexes for the REST API's keyset pages of CDRs in (created_at, id) order -- alone
(operator), behind the company filter and behind the subscriber filter -- replacing the single-column
created_at / company_id / subscriber_id indexes they start with; account.subscriber_id indexed (the
subscribers page looks up each page's portal logins)

Revision ID: api_2
Revises: billing_1
"""

from alembic import op

revision = "api_2"
down_revision = "billing_1"
branch_labels = None
depends_on = None

REPLACED = {  # old single-column index -> the composite index whose first column it was
    "ix_cdr_created_at": ("ix_cdr_created_at_id", ["created_at", "id"]),
    "ix_cdr_company_id": ("ix_cdr_company_created_at_id", ["company_id", "created_at", "id"]),
    "ix_cdr_subscriber_id": ("ix_cdr_subscriber_created_at_id", ["subscriber_id", "created_at", "id"]),
}


def upgrade() -> None:
    with op.batch_alter_table("cdr") as batch:
        for old, (new, columns) in REPLACED.items():
            batch.create_index(new, columns, unique=False)
            batch.drop_index(old)
    with op.batch_alter_table("account") as batch:
        batch.create_index("ix_account_subscriber_id", ["subscriber_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("account") as batch:
        batch.drop_index("ix_account_subscriber_id")
    with op.batch_alter_table("cdr") as batch:
        for old, (new, columns) in REPLACED.items():
            batch.create_index(old, columns[:1], unique=False)
            batch.drop_index(new)
