"""Browser sessions: made by a completed QR sign-in, used for single sign-on, ended by
logout, by revoking the phone that made them, or by their lifetime."""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app, request
from sqlalchemy import select, update
from werkzeug.wrappers import Response

from idp import db
from idp.accounts.models import User
from idp.db import utcnow
from idp.oauth.models import digest
from idp.sso.models import BrowserSession


def cookie_name() -> str:
    """``__Host-`` on https: Secure, and bound to this host."""
    secure = current_app.config["IDP_ISSUER"].startswith("https://")
    return "__Host-idp_sso" if secure else "idp_sso"


def current_session() -> BrowserSession | None:
    """This browser's live session, if it has one."""
    secret = request.cookies.get(cookie_name())
    if not secret or len(secret) > 100:
        return None
    found = db.session.scalar(
        select(BrowserSession).where(BrowserSession.secret_hash == digest(secret))
    )
    if found is None or found.ended_at is not None or found.expires_at <= utcnow():
        return None
    if found.device is not None and found.device.revoked_at is not None:
        return None
    return found


def start_session(
    response: Response, user: User, device_pk: int | None, auth_time: datetime
) -> None:
    """Sign this browser in (ending the session it had, if any) and set the cookie."""
    end_current()
    secret = secrets.token_urlsafe(32)
    now = utcnow()
    db.session.add(
        BrowserSession(
            secret_hash=digest(secret),
            user_id=user.id,
            device_pk=device_pk,
            auth_time=auth_time,
            created_at=now,
            expires_at=now + timedelta(seconds=current_app.config["IDP_SESSION_TTL"]),
        )
    )
    response.set_cookie(
        cookie_name(),
        secret,
        max_age=current_app.config["IDP_SESSION_TTL"],
        httponly=True,
        secure=cookie_name().startswith("__Host-"),
        samesite="Lax",
        path="/",
    )


def end_current(response: Response | None = None) -> bool:
    """End this browser's session; True if there was one."""
    secret = request.cookies.get(cookie_name())
    ended = False
    if secret and len(secret) <= 100:
        result = db.session.execute(
            update(BrowserSession)
            .where(BrowserSession.secret_hash == digest(secret), BrowserSession.ended_at.is_(None))
            .values(ended_at=utcnow())
        )
        ended = result.rowcount == 1  # type: ignore[attr-defined]
    if response is not None:
        response.delete_cookie(cookie_name(), path="/", secure=cookie_name().startswith("__Host-"))
    return ended


def logout_token() -> str:
    """A CSRF token for the sign-out form, bound to this browser's session cookie."""
    secret = request.cookies.get(cookie_name(), "")
    key = current_app.config["SECRET_KEY"].encode()
    return hmac.new(key, b"logout:" + secret.encode(), "sha256").hexdigest()


def end_device_sessions(device_pk: int) -> int:
    """End every live session made by this phone's approvals (the phone is being
    revoked), in the caller's transaction; how many. ``current_session`` also refuses a
    session of a revoked phone, for one that a racing sign-in wrote meanwhile."""
    now = utcnow()
    result = db.session.execute(
        update(BrowserSession)
        .where(
            BrowserSession.device_pk == device_pk,
            BrowserSession.ended_at.is_(None),
            BrowserSession.expires_at > now,
        )
        .values(ended_at=now)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount  # type: ignore[attr-defined]


@dataclass
class SessionLogin:
    """Stands in for a login request when a code is issued from the session."""

    id: str
    decided_at: datetime
    #: The phone whose approval made the session: the code descends from it too.
    device_pk: int | None = None
