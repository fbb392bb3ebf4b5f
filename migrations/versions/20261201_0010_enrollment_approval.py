"""enrollment approval

A new phone of a user who already has one waits for one of those phones to approve it
(``enrollment_requests``: only the digest of its code is stored; one pending request per
key), and each phone records how it was enrolled (``devices.enrolled_via``: "password",
"invitation", "device:<device_id>"; NULL for the phones enrolled before).

Revision ID: 0010
Revises: 0008
Create Date: 2026-12-01 20:00:00.000000

"""

from collections.abc import Sequence

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = "0010"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "enrollment_requests",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("code_digest", sa.String(length=64), nullable=False),
        sa.Column("public_jwk", sa.Text(), nullable=False),
        sa.Column("key_thumbprint", sa.String(length=64), nullable=False),
        sa.Column("device_name", sa.String(length=100), nullable=False),
        sa.Column("ip", sa.String(length=64), nullable=True),
        sa.Column("user_agent", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("decided_at", sa.DateTime(), nullable=True),
        sa.Column("decided_by", sa.Integer(), nullable=True),
        sa.Column("device_pk", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["decided_by"],
            ["devices.id"],
            name=op.f("fk_enrollment_requests_decided_by_devices"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["device_pk"],
            ["devices.id"],
            name=op.f("fk_enrollment_requests_device_pk_devices"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_enrollment_requests_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_enrollment_requests")),
        sa.UniqueConstraint("code_digest", name=op.f("uq_enrollment_requests_code_digest")),
    )
    with op.batch_alter_table("enrollment_requests", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_enrollment_requests_decided_by"), ["decided_by"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_enrollment_requests_device_pk"), ["device_pk"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_enrollment_requests_expires_at"), ["expires_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_enrollment_requests_user_id"), ["user_id"], unique=False
        )
        # One pending request per key: a key waits in one request at a time.
        batch_op.create_index(
            "uq_enrollment_requests_pending_key",
            ["key_thumbprint"],
            unique=True,
            sqlite_where=sa.text("status = 'pending'"),
            postgresql_where=sa.text("status = 'pending'"),
        )
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.add_column(sa.Column("enrolled_via", sa.String(length=80), nullable=True))


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.drop_column("enrolled_via")
    with op.batch_alter_table("enrollment_requests", schema=None) as batch_op:
        batch_op.drop_index("uq_enrollment_requests_pending_key")
        batch_op.drop_index(batch_op.f("ix_enrollment_requests_user_id"))
        batch_op.drop_index(batch_op.f("ix_enrollment_requests_expires_at"))
        batch_op.drop_index(batch_op.f("ix_enrollment_requests_device_pk"))
        batch_op.drop_index(batch_op.f("ix_enrollment_requests_decided_by"))

    op.drop_table("enrollment_requests")
