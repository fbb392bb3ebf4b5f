"""Browser sessions: made by a completed QR sign-in, used for single sign-on, ended by
logout, by revoking the phone that made them, or by their lifetime.

One approval, one site: each session remembers the clients approved on the phone in it,
and with ``IDP_SSO_SCOPE=per_client`` (the default) answers only those without a scan;
another client gets the QR page (``prompt=none``: ``login_required``), and its scan
makes a new session that keeps the earlier clients if the same user approved it (see
``start_session``). A phished approval for one site is not a key to every other one.

The views read and write the session cookie (``idp.web.SESSION_COOKIE``); these take
and return the secret it holds."""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Mapping, Set
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import select, update

from idp import db
from idp.accounts.models import User
from idp.db import utcnow
from idp.oauth.checks import max_age_seconds
from idp.oauth.models import digest
from idp.sso.models import BrowserSession, BrowserSessionClient

#: Longer than any secret we set: not looked up.
MAX_SECRET = 100


def current_session(secret: str | None) -> BrowserSession | None:
    """The live session whose cookie holds ``secret``, if there is one."""
    if not secret or len(secret) > MAX_SECRET:
        return None
    found = db.session.scalar(
        select(BrowserSession).where(BrowserSession.secret_hash == digest(secret))
    )
    if found is None or found.ended_at is not None or found.expires_at <= utcnow():
        return None
    if found.device is not None and found.device.revoked_at is not None:
        return None
    return found


def approved_clients(browser_session: BrowserSession) -> Set[str] | None:
    """The client ids this session may answer without a scan; ``None`` for any client
    (``IDP_SSO_SCOPE=all``)."""
    if current_app.config["IDP_SSO_SCOPE"] == "all":
        return None
    return frozenset(approval.client_id for approval in browser_session.approvals)


def session_satisfies(
    browser_session: BrowserSession,
    params: Mapping[str, str],
    *,
    approved: Set[str] | None,
    hinted: Mapping[str, Any] | None,
    now: datetime,
) -> bool:
    """May this authorization request (``params``) be answered from the browser's IdP
    session, without a scan?

    Only for a client approved in this session (``approved``: their ids; ``None``: any
    client, ``IDP_SSO_SCOPE=all``). Not with ``prompt=login``, not when the sign-in is
    older than ``max_age`` seconds (or ``max_age`` is not a number: the grant refuses
    it), and not when the ``id_token_hint`` names someone else (OIDC Core §3.1.2.1).
    ``hinted``: the hint's verified claims (``{}`` for a hint we did not sign), ``None``
    without a hint.
    """
    if approved is not None and params.get("client_id", "") not in approved:
        return False
    if "login" in params.get("prompt", "").split():
        return False
    if max_age := params.get("max_age", ""):
        seconds = max_age_seconds(max_age)
        if seconds is None or (now - browser_session.auth_time).total_seconds() > seconds:
            return False
    return hinted is None or hinted.get("sub") == browser_session.user.subject


def start_session(
    user: User,
    device_pk: int | None,
    auth_time: datetime,
    *,
    client_id: str,
    replacing: str | None,
) -> str:
    """Sign a browser in after the phone approved ``client_id``, ending the session whose
    secret is ``replacing`` (the one it had, if any); the new session's secret, for the
    browser's cookie.

    The new session answers ``client_id``, and the clients of the session it replaces
    when that session is live and the same user's: each of them was approved on this
    user's phone in this browser, and the new scan proves the user is still here (their
    ``auth_time`` becomes the new scan's, which is when the user last authenticated). A
    different user's sign-in, or one over an ended, expired or revoked session, carries
    nothing over: one person's approvals never serve another.
    """
    now = utcnow()
    replaced = current_session(replacing)
    kept: dict[str, datetime] = {}
    if replaced is not None and replaced.user_id == user.id:
        kept = {approval.client_id: approval.approved_at for approval in replaced.approvals}
    kept[client_id] = now
    end_session(replacing)
    secret = secrets.token_urlsafe(32)
    db.session.add(
        BrowserSession(
            secret_hash=digest(secret),
            user_id=user.id,
            device_pk=device_pk,
            auth_time=auth_time,
            created_at=now,
            expires_at=now + timedelta(seconds=current_app.config["IDP_SESSION_TTL"]),
            approvals=[
                BrowserSessionClient(client_id=client, approved_at=at)
                for client, at in sorted(kept.items())
            ],
        )
    )
    return secret


def end_session(secret: str | None) -> bool:
    """End the session whose cookie holds ``secret``; True if there was one."""
    if not secret or len(secret) > MAX_SECRET:
        return False
    result = db.session.execute(
        update(BrowserSession)
        .where(BrowserSession.secret_hash == digest(secret), BrowserSession.ended_at.is_(None))
        .values(ended_at=utcnow())
    )
    return result.rowcount == 1  # type: ignore[attr-defined]


def logout_token(secret: str | None) -> str:
    """A CSRF token for the sign-out form, bound to the browser's session cookie."""
    key = current_app.config["IDP_SECRET_KEY"].encode()
    return hmac.new(key, b"logout:" + (secret or "").encode(), "sha256").hexdigest()


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
