"""indexes for hot paths and purge

Every foreign key is indexed (deleting a user or client must not scan a table),
and so is each column `idp purge` selects expired rows by.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 06:59:03.622839

"""

from collections.abc import Sequence

from alembic import op


# revision identifiers, used by Alembic.
revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table("authorization_codes", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_authorization_codes_expires_at"), ["expires_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_authorization_codes_user_id"), ["user_id"], unique=False
        )

    with op.batch_alter_table("login_requests", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_login_requests_device_pk"), ["device_pk"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_login_requests_user_id"), ["user_id"], unique=False)

    with op.batch_alter_table("tokens", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_tokens_issued_at"), ["issued_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_tokens_user_id"), ["user_id"], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tokens_user_id"))
        batch_op.drop_index(batch_op.f("ix_tokens_issued_at"))

    with op.batch_alter_table("login_requests", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_login_requests_user_id"))
        batch_op.drop_index(batch_op.f("ix_login_requests_device_pk"))

    with op.batch_alter_table("authorization_codes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_authorization_codes_user_id"))
        batch_op.drop_index(batch_op.f("ix_authorization_codes_expires_at"))
