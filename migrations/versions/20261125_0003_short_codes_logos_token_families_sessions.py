"""short codes, logos, token families, browser sessions

"Can't scan?": a login request may carry the digest of a short code typed into the
phone instead of scanning, and wrong typed codes are counted per user. A client may
register a logo and post-logout redirect URIs. Tokens record the authorization code
they descend from, so that a replay revokes them all. A browser session at the IdP
gives single sign-on after a QR login.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 08:05:57.637102

"""

from collections.abc import Sequence

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "browser_sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("device_pk", sa.Integer(), nullable=True),
        sa.Column("auth_time", sa.DateTime(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("ended_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["device_pk"],
            ["devices.id"],
            name=op.f("fk_browser_sessions_device_pk_devices"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_browser_sessions_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_browser_sessions")),
        sa.UniqueConstraint("secret_hash", name=op.f("uq_browser_sessions_secret_hash")),
    )
    with op.batch_alter_table("browser_sessions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_browser_sessions_device_pk"), ["device_pk"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_browser_sessions_expires_at"), ["expires_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_browser_sessions_user_id"), ["user_id"], unique=False)

    op.create_table(
        "short_code_failures",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("device_pk", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["device_pk"],
            ["devices.id"],
            name=op.f("fk_short_code_failures_device_pk_devices"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_short_code_failures_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_short_code_failures")),
    )
    with op.batch_alter_table("short_code_failures", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_short_code_failures_at"), ["at"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_short_code_failures_device_pk"), ["device_pk"], unique=False
        )
        batch_op.create_index("ix_short_code_failures_user_id_at", ["user_id", "at"], unique=False)

    with op.batch_alter_table("clients", schema=None) as batch_op:
        batch_op.add_column(sa.Column("logo_uri", sa.String(length=500), nullable=True))
        # Existing clients have none registered.
        batch_op.add_column(
            sa.Column("post_logout_redirect_uris", sa.JSON(), nullable=False, server_default="[]")
        )

    with op.batch_alter_table("login_requests", schema=None) as batch_op:
        batch_op.add_column(sa.Column("short_code_hash", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("short_code_expires_at", sa.DateTime(), nullable=True))
        batch_op.create_unique_constraint(
            batch_op.f("uq_login_requests_short_code_hash"), ["short_code_hash"]
        )

    with op.batch_alter_table("tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("family", sa.String(length=64), nullable=True))
        batch_op.create_index(batch_op.f("ix_tokens_family"), ["family"], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tokens_family"))
        batch_op.drop_column("family")

    with op.batch_alter_table("login_requests", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_login_requests_short_code_hash"), type_="unique")
        batch_op.drop_column("short_code_expires_at")
        batch_op.drop_column("short_code_hash")

    with op.batch_alter_table("clients", schema=None) as batch_op:
        batch_op.drop_column("post_logout_redirect_uris")
        batch_op.drop_column("logo_uri")

    with op.batch_alter_table("short_code_failures", schema=None) as batch_op:
        batch_op.drop_index("ix_short_code_failures_user_id_at")
        batch_op.drop_index(batch_op.f("ix_short_code_failures_device_pk"))
        batch_op.drop_index(batch_op.f("ix_short_code_failures_at"))

    op.drop_table("short_code_failures")
    with op.batch_alter_table("browser_sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_browser_sessions_user_id"))
        batch_op.drop_index(batch_op.f("ix_browser_sessions_expires_at"))
        batch_op.drop_index(batch_op.f("ix_browser_sessions_device_pk"))

    op.drop_table("browser_sessions")
