"""A browser's session at the IdP, made when a QR sign-in completes."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from idp.accounts.models import User
from idp.db import Base, utcnow
from idp.mobile.models import Device


class BrowserSession(Base):
    """Signed in at the IdP in one browser: later authorization requests from it are
    answered without a new scan (unless ``prompt=login`` or ``max_age`` says otherwise),
    for the clients approved in it (``IDP_SSO_SCOPE=per_client``) or for any client
    (``all``).

    The browser holds the secret in an HttpOnly cookie; only its digest is stored.
    """

    __tablename__ = "browser_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    # The phone whose approval made it: revoking that phone ends the session.
    device_pk: Mapped[int | None] = mapped_column(
        ForeignKey("devices.id", ondelete="CASCADE"), index=True
    )
    auth_time: Mapped[datetime]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)
    ended_at: Mapped[datetime | None]

    user: Mapped[User] = relationship(lazy="joined")
    device: Mapped[Device | None] = relationship(lazy="joined")
    # Read only when a request may be answered from the session (idp.sso.services).
    approvals: Mapped[list[BrowserSessionClient]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True
    )


class BrowserSessionClient(Base):
    """A client approved on the phone in this session (by the scan that made it, or by
    one that replaced an earlier session of the same user, see
    ``idp.sso.services.start_session``): the session answers it silently.

    No foreign key to ``clients``: a deleted client's row is harmless (client ids are
    random, never reused) and goes with its session.
    """

    __tablename__ = "browser_session_clients"

    session_id: Mapped[int] = mapped_column(
        ForeignKey("browser_sessions.id", ondelete="CASCADE"), primary_key=True
    )
    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    approved_at: Mapped[datetime]
