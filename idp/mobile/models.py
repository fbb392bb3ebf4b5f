"""Enrolled phones and the proofs they have already used."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from idp.accounts.models import User
from idp.db import Base, utcnow


class Device(Base):
    """A phone app enrolled for a user. Only its public key is stored."""

    __tablename__ = "devices"

    id: Mapped[int] = mapped_column(primary_key=True)
    device_id: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    public_jwk: Mapped[str] = mapped_column(Text)
    # RFC 7638 thumbprint: one key enrolls once.
    key_thumbprint: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    #: How it was enrolled: "password", "invitation", "device:<approving device_id>";
    #: ``None`` for phones enrolled before this was recorded.
    enrolled_via: Mapped[str | None] = mapped_column(String(80))

    user: Mapped[User] = relationship(lazy="joined")


class UsedProof(Base):
    """A proof ``jti`` already accepted; kept until the proof could no longer be fresh."""

    __tablename__ = "used_proofs"

    key_thumbprint: Mapped[str] = mapped_column(String(64), primary_key=True)
    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(index=True)


class Invitation(Base):
    """A one-time link that enrolls a phone for a user without a password.

    Only the SHA-256 ``digest`` of its token is stored: whoever reads the database cannot
    enroll with it. Used once (``used_at``, and the phone it enrolled), then kept until
    ``idp purge`` drops it; the audit log keeps the story.
    """

    __tablename__ = "invitations"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)
    used_at: Mapped[datetime | None]
    device_pk: Mapped[int | None] = mapped_column(ForeignKey("devices.id", ondelete="SET NULL"))
    #: Who made it: "cli", "demo" (an admin's name once the console makes them).
    created_by: Mapped[str | None] = mapped_column(String(64))

    user: Mapped[User] = relationship(lazy="joined")


class EnrollmentRequest(Base):
    """A phone that gave its user's password while the user already has a phone: it
    waits for one of those phones to approve it (idp.mobile.enrollment_requests).

    Only the digest of its code is stored. ``key_thumbprint`` is unique among pending
    requests: one key waits in one request at a time.
    """

    __tablename__ = "enrollment_requests"
    __table_args__ = (
        Index(
            "uq_enrollment_requests_pending_key",
            "key_thumbprint",
            unique=True,
            sqlite_where=text("status = 'pending'"),
            postgresql_where=text("status = 'pending'"),
        ),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    code_digest: Mapped[str] = mapped_column(String(64), unique=True)
    public_jwk: Mapped[str] = mapped_column(Text)
    key_thumbprint: Mapped[str] = mapped_column(String(64))
    device_name: Mapped[str] = mapped_column(String(100))
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(Text)
    #: pending, approved, denied, expired or withdrawn (by the new phone).
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)
    decided_at: Mapped[datetime | None]
    #: The phone that approved or denied it (None when expired or withdrawn).
    decided_by: Mapped[int | None] = mapped_column(
        ForeignKey("devices.id", ondelete="SET NULL"), index=True
    )
    #: The phone its approval enrolled.
    device_pk: Mapped[int | None] = mapped_column(
        ForeignKey("devices.id", ondelete="SET NULL"), index=True
    )

    user: Mapped[User] = relationship(lazy="joined")
