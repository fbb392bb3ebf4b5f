"""The login request: one per authorize page, the heart of QR sign-in."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import JSON, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from idp.accounts.models import User
from idp.db import Base, utcnow
from idp.mobile.models import Device
from idp.oauth.models import Client
from idp.qrlogin.lifecycle import Kind, Status, is_lapsed

__all__ = [
    "DENIAL_DESCRIPTIONS",
    "DenialReason",
    "Kind",
    "LoginRequest",
    "ShortCodeFailure",
    "Status",
]


class DenialReason(StrEnum):
    """Why a sign-in was denied (``login_requests.denied_reason``)."""

    DENIED = "denied"  # the user tapped Deny
    WRONG_NUMBER = "wrong_number"  # number matching: another number was picked
    DEVICE_REVOKED = "device_revoked"  # the phone that scanned or approved it was revoked
    DIFFERENT_NETWORK = "different_network"  # IDP_PROXIMITY=require_same_network refused it
    RELEASED = "released"  # the page showed a new code instead ("Not you?")


#: The ``error_description`` of the ``access_denied`` the browser takes back to the site
#: (for its developers: ASCII, RFC 6749 §4.1.2.1).
DENIAL_DESCRIPTIONS: dict[str, str] = {
    DenialReason.DENIED: "the user denied the sign-in on the phone",
    DenialReason.WRONG_NUMBER: "the phone picked another number than the page showed",
    DenialReason.DEVICE_REVOKED: "the phone that scanned the code was revoked",
    DenialReason.DIFFERENT_NETWORK: (
        "the phone was not on the network of the browser that started the sign-in,"
        " which the proximity policy require_same_network requires"
    ),
    DenialReason.RELEASED: "the browser asked for a new code after someone else scanned this one",
}


class LoginRequest(Base):
    """A QR sign-in waiting on a browser page.

    ``id`` is public (it is in the QR code); ``binding_hash`` is the digest of
    the secret in the browser's HttpOnly cookie, and only that browser may watch
    or complete the request.
    """

    __tablename__ = "login_requests"
    __table_args__ = (Index("ix_login_requests_subject_key_client_id", "subject_key", "client_id"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    binding_hash: Mapped[str] = mapped_column(String(64))
    client_id: Mapped[str] = mapped_column(
        ForeignKey("clients.client_id", ondelete="CASCADE"), index=True
    )
    # The validated authorization request, replayed through Authlib at completion.
    params: Mapped[dict[str, str]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default=Status.PENDING)  # lifecycle.Status
    renewals: Mapped[int] = mapped_column(default=0)
    browser_ip: Mapped[str | None] = mapped_column(String(64))
    browser_user_agent: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)
    device_pk: Mapped[int | None] = mapped_column(
        ForeignKey("devices.id", ondelete="SET NULL"), index=True
    )
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    scanned_at: Mapped[datetime | None]
    decided_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]
    # Set once when a fresh request replaces this expired one: it is renewed only once.
    renewed_at: Mapped[datetime | None]
    # "Can't scan?": the digest of the short typable code the page shows on request, and
    # until when the phone may type it instead of scanning (idp.qrlogin.shortcodes).
    short_code_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    short_code_expires_at: Mapped[datetime | None]
    # Number matching (idp.qrlogin.matching): the two digits the page shows after the
    # scan; the phone must pick them to approve. Set only when matching is required.
    match_number: Mapped[str | None] = mapped_column(String(2))
    # Why a denied request was denied, for the page (its socket and its completion):
    # a DenialReason. Set by every denial, in the same compare-and-set.
    denied_reason: Mapped[str | None] = mapped_column(String(24))
    # What asks (idp.qrlogin.lifecycle.Kind): an authorize page ("browser"), a device
    # polling with its device_code (RFC 8628, "device") or a site polling or pinged with
    # its auth_req_id (CIBA, "backchannel"). Only a browser request has a page (binding).
    kind: Mapped[str] = mapped_column(String(16), default="browser", server_default="browser")
    # The digest of the device_code or auth_req_id the client polls with.
    secret_hash: Mapped[str | None] = mapped_column(String(64), unique=True, index=True)
    # Polling (idp.oauth.polling): the interval the client must keep (slow_down adds 5 s
    # each time it does not), and the earliest time of its next poll.
    poll_interval: Mapped[int | None]
    next_poll_at: Mapped[datetime | None]
    # CIBA: the site's binding_message, shown on the phone; whom the request is for
    # ("user:<id>", or "hint:<digest>" for a hint that names nobody, treated alike); the
    # client's client_notification_token (ping mode).
    binding_message: Mapped[str | None] = mapped_column(String(64))
    subject_key: Mapped[str | None] = mapped_column(String(80))
    notification_token: Mapped[str | None] = mapped_column(String(1024))

    client: Mapped[Client] = relationship(lazy="joined")
    device: Mapped[Device | None] = relationship()
    user: Mapped[User | None] = relationship()

    @property
    def denial_description(self) -> str | None:
        """Why it was denied, for the site's developers; ``None`` if it was not (or before
        reasons were kept)."""
        if self.status != Status.DENIED or self.denied_reason is None:
            return None
        return DENIAL_DESCRIPTIONS.get(self.denied_reason)

    def is_expired(self) -> bool:
        """Expired: marked so, or waiting on the phone past its lifetime."""
        return is_lapsed(self)


class ShortCodeFailure(Base):
    """A typed code that matched no waiting sign-in; too many in a while lock the user out
    of typing codes (the codes are short, so guessing must stay hopeless)."""

    __tablename__ = "short_code_failures"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    device_pk: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)

    __table_args__ = (Index("ix_short_code_failures_user_id_at", "user_id", "at"),)
