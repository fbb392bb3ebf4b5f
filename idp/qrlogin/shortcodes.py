""" "Can't scan?": a short code the person types into the phone app instead of scanning.

The page asks for one only when its "Can't scan?" panel is opened; it lives
``IDP_SHORT_CODE_TTL`` seconds (never longer than its login request), a newer one
replaces it, and a scan uses it up. Eight letters from an alphabet without
look-alikes (no B/8, I/L/1, O/0, S/5, Z/2) give 20^8 ≈ 2.6·10^10 codes, about 34.6
bits: too few to stand alone, so a user who types ``IDP_SHORT_CODE_ATTEMPTS``
wrong codes within ``IDP_SHORT_CODE_WINDOW`` seconds is refused (429) until the
window has passed. With 10,000 codes live at once, a guess succeeds with odds of
about 4·10^-7, and each enrolled account gets a few guesses per ten minutes.
Codes are stored as digests, like every other secret here.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from idp import db
from idp.accounts.models import User
from idp.db import utcnow
from idp.errors import AlreadyUsed, Expired, InvalidRequest, TooManyAttempts, UnknownCode
from idp.mobile.models import Device
from idp.oauth.models import digest
from idp.qrlogin.models import LoginRequest, ShortCodeFailure, Status
from idp.qrlogin.services import find_for_browser

ALPHABET = "ACDEFGHJKMNPQRTUVWXY"
LENGTH = 8


def new_code() -> str:
    """A fresh code, shown as ``XXXX-XXXX``."""
    letters = "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))
    return f"{letters[:4]}-{letters[4:]}"


def normalize(text: str) -> str | None:
    """The canonical ``XXXX-XXXX`` form of what was typed, or ``None`` if it cannot be
    a code (case, spaces and dashes do not matter)."""
    letters = "".join(text.split()).replace("-", "").upper()
    if len(letters) != LENGTH or any(c not in ALPHABET for c in letters):
        return None
    return f"{letters[:4]}-{letters[4:]}"


def issue_code(request_id: str, binding_secret: str | None) -> tuple[str, datetime]:
    """A code for this browser's waiting request (replacing any earlier one), in the
    caller's transaction."""
    login = find_for_browser(request_id, binding_secret)
    if login.is_expired():
        raise Expired()
    if login.status != Status.PENDING:
        raise AlreadyUsed(f"this sign-in request is already {login.status}")
    ttl = timedelta(seconds=current_app.config["IDP_SHORT_CODE_TTL"])
    expires_at = min(utcnow() + ttl, login.expires_at)
    for _ in range(3):  # a clash with a live code is astronomically rare; draw again
        code = new_code()
        try:
            with db.session.begin_nested():  # a clash undoes this attempt only
                result = db.session.execute(
                    update(LoginRequest)
                    .where(LoginRequest.id == login.id, LoginRequest.status == Status.PENDING)
                    .values(short_code_hash=digest(code), short_code_expires_at=expires_at)
                )
        except IntegrityError:
            continue
        if result.rowcount != 1:  # type: ignore[attr-defined]
            raise AlreadyUsed("this sign-in request was scanned meanwhile")
        return code, expires_at
    raise RuntimeError("could not draw a unique short code")


def find_by_code(text: str, device: Device) -> LoginRequest:
    """The waiting request whose live code this is, for this device's user; wrong codes
    count against the user, and too many lock typing for a while.

    A wrong code adds its failure to the caller's transaction and raises
    ``UnknownCode``: the caller commits it all the same, and only then does the user's
    row lock (see :func:`_check_attempts`) end."""
    code = normalize(text)
    if code is None:
        raise InvalidRequest(
            f"a sign-in code is {LENGTH} letters like KXRT-WMPQ (no digits, no B, I, L, O, S, Z)"
        )
    _check_attempts(device)
    now = utcnow()
    login = db.session.scalar(
        select(LoginRequest).where(
            LoginRequest.short_code_hash == digest(code),
            LoginRequest.short_code_expires_at > now,
        )
    )
    if login is None:
        db.session.add(ShortCodeFailure(user_id=device.user_id, device_pk=device.id, at=now))
        raise UnknownCode()
    return login


def _check_attempts(device: Device) -> None:
    """Refuse when the user has typed too many wrong codes lately.

    The count and the failure it may add must not race: N concurrent wrong codes would
    all pass a count of the committed failures, then all be looked up. So the user's row
    is locked first (until this request's transaction ends): one attempt per user at a
    time. SQLite needs no lock: every transaction there takes the write lock at BEGIN.
    """
    db.session.execute(select(User.id).where(User.id == device.user_id).with_for_update())
    config = current_app.config
    window = timedelta(seconds=config["IDP_SHORT_CODE_WINDOW"])
    since = utcnow() - window
    count, oldest = db.session.execute(
        select(func.count(), func.min(ShortCodeFailure.at)).where(
            ShortCodeFailure.user_id == device.user_id, ShortCodeFailure.at > since
        )
    ).one()
    if count >= config["IDP_SHORT_CODE_ATTEMPTS"]:
        retry_after = max(1, int((oldest + window - utcnow()).total_seconds()) + 1)
        raise TooManyAttempts(retry_after=retry_after)
