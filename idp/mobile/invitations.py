"""Invitations: a one-time link that enrolls a phone for a user, without a password.

```
idp users invite ──> open ──(a phone's signed enrollment)──> used   (once, for good)
                      │ open_invitation: read only, any number of times (a link preview)
                      └──(its lifetime passes)──> expired
```

The link is ``{issuer}/app/invite/{token}``; only the SHA-256 digest of the token is
stored, so whoever reads the database cannot enroll with it. Only the phone's signed
``POST /api/mobile/v1/devices`` uses it: a GET (a chat app's link preview, a mail
scanner) consumes nothing.

Concurrency: using it is one compare-and-set in the request's transaction (``UPDATE ...
WHERE digest = ? AND used_at IS NULL AND expires_at > now``). Of two phones sending the
same link at once, the second waits for the first's row lock (PostgreSQL) or write lock
(SQLite), then changes no row and is refused, its device rolled back. A refusal is
audited in a transaction of its own (``db.stand_alone``); the caller commits a success.
"""

from __future__ import annotations

import re
import secrets
from datetime import timedelta
from typing import NoReturn

from joserfc.jwk import ECKey
from sqlalchemy import select, update

from idp import audit, db
from idp.accounts.models import User
from idp.accounts.services import check_username
from idp.db import utcnow
from idp.errors import InvalidInvitation, InvalidRequest
from idp.mobile.models import Device, Invitation
from idp.mobile.services import add_device, check_device_name
from idp.oauth.models import digest  # SHA-256 hex: only this is stored, never the token
from idp.terminal import has_control_characters
from idp.web import Caller

MIN_TTL = timedelta(minutes=1)
MAX_TTL = timedelta(hours=24)
#: What ``secrets.token_urlsafe(32)`` makes: 256 random bits in 43 base64url characters.
TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{43}")
#: One answer for used, expired and unknown links: a guesser learns nothing from it.
REFUSED = "this invitation link was already used, has expired or is unknown: ask for a new one"


def create_invitation(
    username: str, ttl: timedelta, *, created_by: str = "cli"
) -> tuple[str, Invitation]:
    """Make a one-time enrollment link's token for ``username``, valid ``ttl`` (1 minute
    to 24 hours), in the caller's transaction (the caller commits). Return the token
    (shown once: only its digest is stored) and the invitation."""
    check_username(username)
    if not MIN_TTL <= ttl <= MAX_TTL:
        raise InvalidRequest("an invitation lasts from 1 minute to 24 hours")
    if not created_by or len(created_by) > 64 or has_control_characters(created_by):
        raise InvalidRequest("created_by must be 1-64 printable characters")
    user = db.session.scalar(select(User).where(User.username == username))
    if user is None:
        raise InvalidRequest(f"no user {username!r}")
    token = secrets.token_urlsafe(32)
    now = utcnow()
    invitation = Invitation(
        user=user,
        digest=digest(token),
        created_at=now,
        expires_at=now + ttl,
        created_by=created_by,
    )
    db.session.add(invitation)
    audit.record(
        "invitation.created",
        username=username,
        expires=invitation.expires_at.replace(microsecond=0).isoformat() + "Z",
        by=created_by,
    )
    return token, invitation


def open_invitation(token: str) -> Invitation | None:
    """The invitation this token opens, if it is unused and unexpired; else ``None``.
    Read only: asking any number of times consumes nothing. (Users have no disabled
    state yet: a deleted user's invitations are deleted with it.)"""
    if not TOKEN_RE.fullmatch(token):
        return None
    return db.session.scalar(
        select(Invitation).where(
            Invitation.digest == digest(token),
            Invitation.used_at.is_(None),
            Invitation.expires_at > utcnow(),
        )
    )


def enroll_by_invitation(
    token: str, public_key: ECKey, device_name: str, *, caller: Caller | None
) -> Device:
    """Enroll ``public_key`` for the user this invitation is for, and use the invitation
    up, atomically (see the module docstring). A used, expired or unknown token is
    refused (``InvalidInvitation``, audited); a malformed device name too
    (``InvalidRequest``), before the link is looked at. The caller commits."""
    device_name = check_device_name(device_name)
    invitation = open_invitation(token)
    if invitation is None:
        _refuse(token, caller)
    device = add_device(invitation.user, device_name, public_key, caller=caller, via="invitation")
    db.session.flush()  # the device's primary key, for the invitation to record
    now = utcnow()
    used = db.session.execute(
        update(Invitation)
        .where(
            Invitation.digest == invitation.digest,
            Invitation.used_at.is_(None),
            Invitation.expires_at > now,
        )
        .values(used_at=now, device_pk=device.id)
        .execution_options(synchronize_session=False)
    )
    if used.rowcount != 1:  # type: ignore[attr-defined]
        _refuse(token, caller)  # a concurrent use won, or it expired meanwhile
    audit.record(
        "invitation.used",
        caller=caller,
        username=invitation.user.username,
        device_id=device.device_id,
        invitation=invitation.id,
    )
    return device


def _refuse(token: str, caller: Caller | None) -> NoReturn:
    """Audit the refusal (with the user, when the link was once theirs), in a
    transaction of its own, then refuse."""
    known = None
    if TOKEN_RE.fullmatch(token):
        known = db.session.scalar(
            select(User.username)
            .join(Invitation, Invitation.user_id == User.id)
            .where(Invitation.digest == digest(token))
        )
    with db.stand_alone():  # this request's work (a device it added) is rolled back first
        audit.record("invitation.refused", caller=caller, username=known)
    raise InvalidInvitation(REFUSED)


def invitation_url(issuer: str, token: str) -> str:
    """The link a person opens on the phone: the IdP's web app's invitation page."""
    return f"{issuer}/app/invite/{token}"
