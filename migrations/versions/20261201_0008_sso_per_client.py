"""sso per client

The clients approved in each browser session (``IDP_SSO_SCOPE=per_client``): a session
answers silently only for these. Sessions made before this revision have none, so each
of them asks again (one new scan) for every client: the safe side.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 18:00:00.000000

"""

from collections.abc import Sequence

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "browser_session_clients",
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("approved_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["browser_sessions.id"],
            name=op.f("fk_browser_session_clients_session_id_browser_sessions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("session_id", "client_id", name=op.f("pk_browser_session_clients")),
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_table("browser_session_clients")
