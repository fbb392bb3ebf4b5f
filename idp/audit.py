"""The audit log: who did what, when, from where, with which phone and for which site.

Every enrollment (and refused password), scan, approval, denial, completed sign-in,
token issued or revoked, device revoked, client registered or deleted, user created
and signing-key rotation is recorded here. ``record`` adds the row to the caller's
transaction, so an event is in the log exactly when the change it describes was
committed; an event that changes nothing else (a wrong password) is committed by the
view that refuses the request.

Rows hold names, not foreign keys: the log outlives the users, phones and clients it
mentions. Read it with ``idp audit [--user U] [--since ...]``; ``idp purge`` keeps it
``IDP_AUDIT_RETENTION_DAYS`` days.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, String, select
from sqlalchemy.orm import Mapped, mapped_column

from idp import db
from idp.db import Base, utcnow
from idp.web import Caller

#: Every event name, and what it means (``idp audit --help`` lists them).
EVENTS = {
    "user.created": "an admin created a user",
    "device.enrolled": "a phone was enrolled (with a password, an invitation or another"
    " phone's approval)",
    "device.enroll_refused": "an enrollment gave a wrong username or password, or a password"
    " where passwords enroll no phone",
    "device.enroll_pending": "a new phone gave its user's password and waits for another"
    " phone's approval",
    "device.enroll_approved": "a phone approved the enrollment of a new phone of its user",
    "device.enroll_denied": "a phone denied the enrollment of a new phone of its user",
    "device.enroll_withdrawn": "a new phone waiting for another phone's approval gave up"
    " (its request can no longer be approved)",
    "device.revoked": "a phone was revoked",
    "invitation.created": "an admin made a one-time enrollment link for a user",
    "invitation.used": "a phone was enrolled with an invitation link",
    "invitation.refused": "an enrollment gave a used, expired or unknown invitation link",
    "device.authorization_started": "a device (a TV, a command line) asked for a user code"
    " to sign in with (RFC 8628)",
    "login.scanned": "a phone scanned a sign-in request",
    "login.code_refused": "a phone typed (or its camera read) a sign-in code that matches no"
    " waiting sign-in (counted against its user's tries)",
    "login.scan_refused": "a scan refused: the login_hint names another account",
    "login.released": "a phone gave back a sign-in request it scanned (not its user's)",
    "login.restarted": (
        "the browser showed a new code instead of one another phone had scanned (user and"
        " device: that phone's)"
    ),
    "login.approved": "a phone approved a sign-in request",
    "login.denied": "a phone denied a sign-in request",
    "login.completed": "a browser completed a sign-in and went back to the site",
    "login.sso": "a browser signed in to a site from its IdP session, without a scan",
    "ciba.requested": "a site asked from its server for a user's approval on the phone"
    " (OpenID CIBA; username: the user the hint named, none for a hint naming nobody)",
    "ciba.muted": "a site's backchannel request was refused: the user denied its last three",
    "token.issued": "the token endpoint issued tokens",
    "token.revoked": "a client revoked a token (RFC 7009)",
    "token.family_revoked": "a replayed code or reused refresh token revoked a whole family",
    "client.created": "an admin registered a client",
    "client.deleted": "an admin deleted a client",
    "keys.rotated": "an admin rotated the signing key",
}


class AuditEvent(Base):
    """One line of the audit log."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    event: Mapped[str] = mapped_column(String(40), index=True)
    username: Mapped[str | None] = mapped_column(String(150), index=True)
    device_id: Mapped[str | None] = mapped_column(String(64))
    client_id: Mapped[str | None] = mapped_column(String(64))
    ip: Mapped[str | None] = mapped_column(String(64))
    # The login request, token grant, reason... (small, never a secret).
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


def record(
    event: str,
    *,
    caller: Caller | None = None,
    username: str | None = None,
    device_id: str | None = None,
    client_id: str | None = None,
    **detail: Any,
) -> None:
    """Add an event to the current transaction: it is stored when that commits.

    ``caller``: who sent the request that did it (its IP address is recorded); ``None``
    for a command.
    """
    if event not in EVENTS:
        raise ValueError(f"unknown audit event {event!r}")
    db.session.add(
        AuditEvent(
            at=utcnow(),
            event=event,
            username=username,
            device_id=device_id,
            client_id=client_id,
            ip=caller.ip if caller else None,
            detail={k: v for k, v in detail.items() if v is not None},
        )
    )


@dataclass(frozen=True)
class Line:
    """An audit event as ``idp audit`` shows it."""

    at: datetime
    event: str
    username: str | None
    device_id: str | None
    client_id: str | None
    ip: str | None
    detail: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        """The event as a JSON object (``idp audit --json``)."""
        return {
            "at": self.at.replace(microsecond=0).isoformat() + "Z",
            "event": self.event,
            "user": self.username,
            "device": self.device_id,
            "client": self.client_id,
            "ip": self.ip,
            "detail": self.detail,
        }

    def as_text(self) -> str:
        """One line for people: time, event, then the fields that are set."""
        fields = [
            ("user", self.username),
            ("device", self.device_id),
            ("client", self.client_id),
            ("ip", self.ip),
        ]
        parts = [f"{name}={value}" for name, value in fields if value]
        if self.detail:
            parts.append(json.dumps(self.detail, sort_keys=True, separators=(",", ":")))
        stamp = self.at.replace(microsecond=0).isoformat() + "Z"
        return f"{stamp}  {self.event:<22} {' '.join(parts)}".rstrip()


def query(
    *, username: str | None = None, since: datetime | None = None, limit: int = 1000
) -> list[Line]:
    """The most recent ``limit`` events (of ``username``, after ``since``), oldest first."""
    statement = select(AuditEvent).order_by(AuditEvent.at.desc(), AuditEvent.id.desc())
    if username is not None:
        statement = statement.where(AuditEvent.username == username)
    if since is not None:
        statement = statement.where(AuditEvent.at >= since)
    rows = db.session.scalars(statement.limit(limit)).all()
    return [
        Line(r.at, r.event, r.username, r.device_id, r.client_id, r.ip, dict(r.detail or {}))
        for r in reversed(rows)
    ]
