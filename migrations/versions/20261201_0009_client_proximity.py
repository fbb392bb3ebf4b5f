"""client proximity

A client's own proximity policy (``idp clients create --proximity``): NULL follows
``IDP_PROXIMITY``, so existing clients keep the server's policy. And why a denied
sign-in was denied (``login_requests.denied_reason``), so that a page that reconnects
or completes learns it; requests denied before this revision have none.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 19:30:00.000000

"""

from collections.abc import Sequence

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table("clients", schema=None) as batch_op:
        batch_op.add_column(sa.Column("proximity", sa.String(length=24), nullable=True))

    with op.batch_alter_table("login_requests", schema=None) as batch_op:
        batch_op.add_column(sa.Column("denied_reason", sa.String(length=24), nullable=True))


def downgrade() -> None:
    """Downgrade schema.

    A plain ``DROP COLUMN`` (SQLite 3.35 and later have it), not a batch: on SQLite a
    batch copies ``clients`` into a new table and drops the old one, and with foreign keys
    on, that drop would delete every login request, code and token by cascade.
    """
    op.drop_column("login_requests", "denied_reason")
    op.drop_column("clients", "proximity")
