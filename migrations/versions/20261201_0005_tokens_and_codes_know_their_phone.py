"""tokens and codes know their phone

Authorization codes and tokens record the phone whose approval they descend from
(directly, or through the browser session that approval made), so that revoking the
phone revokes them in the same transaction. Tokens and codes issued before this
revision have none: they are not tied to a phone and end with their own lifetimes.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 11:20:00.000000

"""

from collections.abc import Sequence

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    for table in ("authorization_codes", "tokens"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("device_pk", sa.Integer(), nullable=True))
            batch_op.create_index(batch_op.f(f"ix_{table}_device_pk"), ["device_pk"], unique=False)
            batch_op.create_foreign_key(
                batch_op.f(f"fk_{table}_device_pk_devices"),
                "devices",
                ["device_pk"],
                ["id"],
                ondelete="CASCADE",
            )


def downgrade() -> None:
    """Downgrade schema."""
    for table in ("tokens", "authorization_codes"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_constraint(
                batch_op.f(f"fk_{table}_device_pk_devices"), type_="foreignkey"
            )
            batch_op.drop_index(batch_op.f(f"ix_{table}_device_pk"))
            batch_op.drop_column("device_pk")
