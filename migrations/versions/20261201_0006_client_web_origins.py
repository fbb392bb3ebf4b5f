"""client web origins

The web origins whose pages may call the token, UserInfo and revocation endpoints for
a client (CORS): those registered with ``idp clients create --web-origin`` and those
of its http(s) redirect URIs. Existing clients get the origins of their redirect URIs,
as a client registered now would.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 11:09:50.199208

"""

import json
from collections.abc import Sequence
from urllib.parse import urlsplit

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin(uri: str) -> str | None:
    """The origin a browser sends for a page at ``uri`` (a frozen copy of the rule in
    idp.admin.services, so that this revision never changes meaning)."""
    try:
        parts = urlsplit(uri)
        port = parts.port
        host = (parts.hostname or "").encode("idna").decode("ascii")
    except (ValueError, UnicodeError):
        return None
    if parts.scheme not in _DEFAULT_PORTS or not host:
        return None
    if ":" in host:
        host = f"[{host}]"
    suffix = f":{port}" if port is not None and port != _DEFAULT_PORTS[parts.scheme] else ""
    return f"{parts.scheme}://{host}{suffix}"


def upgrade() -> None:
    """Upgrade schema."""
    table = op.create_table(
        "client_origins",
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("origin", sa.String(length=300), nullable=False),
        sa.ForeignKeyConstraint(
            ["client_id"],
            ["clients.client_id"],
            name=op.f("fk_client_origins_client_id_clients"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("client_id", "origin", name=op.f("pk_client_origins")),
    )
    with op.batch_alter_table("client_origins", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_client_origins_origin"), ["origin"], unique=False)

    rows = []
    for client_id, uris in op.get_bind().execute(
        sa.text("SELECT client_id, redirect_uris FROM clients")
    ):
        uris = json.loads(uris) if isinstance(uris, str) else uris
        origins = {o for o in map(_origin, uris or []) if o and len(o) <= 300}
        rows += [{"client_id": client_id, "origin": o} for o in sorted(origins)]
    if rows:
        op.bulk_insert(table, rows)


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("client_origins", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_client_origins_origin"))

    op.drop_table("client_origins")
