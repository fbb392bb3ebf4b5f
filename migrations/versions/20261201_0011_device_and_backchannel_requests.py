"""device and backchannel requests

A login request is now one of three kinds (``login_requests.kind``): ``browser`` (an
authorize page, as before), ``device`` (RFC 8628: a TV or a command line polls with its
``device_code``) or ``backchannel`` (OpenID CIBA: a site asks for a known user and polls,
or is pinged, with its ``auth_req_id``). ``secret_hash`` is the digest of the device code
or the ``auth_req_id``; ``poll_interval`` and ``next_poll_at`` enforce ``slow_down``;
``binding_message`` is shown on the phone; ``subject_key`` names whom a backchannel
request is for (a user, or the digest of a hint that names nobody) so that one pending
request per user and client is the rule for both; ``notification_token`` is the
client's ``client_notification_token`` (ping mode). A client may be registered for CIBA
with its delivery mode and notification endpoint. Existing rows are browser logins.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01 22:30:00.000000

"""

from collections.abc import Sequence

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table("clients", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("backchannel_token_delivery_mode", sa.String(length=8), nullable=True)
        )
        batch_op.add_column(
            sa.Column(
                "backchannel_client_notification_endpoint", sa.String(length=500), nullable=True
            )
        )

    with op.batch_alter_table("login_requests", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("kind", sa.String(length=16), nullable=False, server_default="browser")
        )
        batch_op.add_column(sa.Column("secret_hash", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("poll_interval", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("next_poll_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("binding_message", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("subject_key", sa.String(length=80), nullable=True))
        batch_op.add_column(sa.Column("notification_token", sa.String(length=1024), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_login_requests_secret_hash"), ["secret_hash"], unique=True
        )
        batch_op.create_index(
            "ix_login_requests_subject_key_client_id", ["subject_key", "client_id"], unique=False
        )


def downgrade() -> None:
    """Downgrade schema (plain drops: see 0009 for why not a batch on SQLite)."""
    op.drop_index("ix_login_requests_subject_key_client_id", table_name="login_requests")
    op.drop_index(op.f("ix_login_requests_secret_hash"), table_name="login_requests")
    for column in (
        "notification_token",
        "subject_key",
        "binding_message",
        "next_poll_at",
        "poll_interval",
        "secret_hash",
        "kind",
    ):
        op.drop_column("login_requests", column)
    op.drop_column("clients", "backchannel_client_notification_endpoint")
    op.drop_column("clients", "backchannel_token_delivery_mode")
