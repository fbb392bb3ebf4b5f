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
    answered without a new scan (unless ``prompt=login`` or ``max_age`` says otherwise).

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
