"""A new phone needs an old phone: enrolling by password while the user has a phone.

```
POST /devices (password right, the user has an active phone)
   └─> pending ──(a phone of the same user types its code, approves)──> approved
          │                                     (its Device made in the same transaction)
          ├────(that phone denies)─────────────────────────────────────> denied
          ├────(the new phone itself withdraws it: Cancel, Ctrl-C)─────────> withdrawn
          └────(IDP_ENROLLMENT_TTL passes)──────────────────────────────> expired
```

A phished password alone therefore adds no phone while the user has one: the new phone
shows a code, and one of the user's phones must type it, see the new phone's name,
network and place, and approve. ``IDP_PASSWORD_ENROLLMENT`` says when the password is
enough by itself: ``first_phone`` (the default: only while the user has no active
phone), ``always``, or ``never`` (invitations and approvals only).

The code is eight letters of the short codes' alphabet, derived from the request's id
with the IdP's secret key (so the same key asking again gets the same code back) and
stored only as its digest. A code is looked up only among the requests of the phone's
own user: another user's, an unknown, an expired or a decided one get one answer.

Concurrency: approving and denying are one compare-and-set ``pending -> approved |
denied`` (``UPDATE ... WHERE status = 'pending' AND expires_at > now``); the approval
adds the Device in the same transaction, so of two racing decisions one wins and a
refused one enrolls nothing. The deciding phone's row is locked first, so that a
revocation of that phone committing meanwhile refuses the decision. Deciding whether a
password is enough locks the user's row (PostgreSQL; SQLite's writers are serialized),
so two phones enrolling at once cannot both be "the first". The caller commits.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import timedelta

from flask import current_app
from joserfc.jwk import ECKey
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from idp import audit, db
from idp.accounts.models import User
from idp.accounts.services import authenticate
from idp.db import utcnow
from idp.errors import (
    AlreadyUsed,
    DeviceExists,
    DeviceRevoked,
    InvalidEnrollmentCode,
    InvalidRequest,
    PasswordEnrollmentDisabled,
)
from idp.mobile.models import Device, EnrollmentRequest
from idp.mobile.services import add_device, check_enrollment
from idp.oauth.models import digest
from idp.qrlogin import shortcodes
from idp.web import Caller

PENDING, APPROVED, DENIED, EXPIRED = "pending", "approved", "denied", "expired"
#: The new phone gave up waiting (its key will be forgotten): no phone may approve it.
WITHDRAWN = "withdrawn"
#: One answer for unknown, expired, decided and another user's codes.
REFUSED = "no new phone of yours is waiting for this code: check it, or start again on it"
DISABLED = (
    "Setting up a phone with a password is switched off here: ask your administrator for an"
    " invitation."
)


@dataclass(frozen=True)
class PasswordEnrollment:
    """What a right password did: a ``device`` enrolled at once, or a ``pending`` request."""

    device: Device | None = None
    pending: EnrollmentRequest | None = None


def enroll_with_password(
    username: str, password: str, device_name: str, key: ECKey, *, caller: Caller | None
) -> PasswordEnrollment:
    """Check the password, then enroll ``key`` at once when ``IDP_PASSWORD_ENROLLMENT``
    allows it for this user, or make (or find again) its pending request. A wrong
    password raises ``InvalidCredentials``; a key already enrolled ``DeviceExists``;
    ``never`` for a user with no active phone ``PasswordEnrollmentDisabled``."""
    device_name = check_enrollment(username, device_name)
    user = authenticate(username, password)
    if db.session.scalar(select(Device.id).where(Device.key_thumbprint == key.thumbprint())):
        raise DeviceExists()
    # Serialize the decision per user: two "first" phones at once are one, then another.
    db.session.execute(select(User.id).where(User.id == user.id).with_for_update())
    policy = current_app.config["IDP_PASSWORD_ENROLLMENT"]
    active = has_active_phone(user)
    if policy == "always" or (policy == "first_phone" and not active):
        device = add_device(user, device_name, key, caller=caller, via="password")
        return PasswordEnrollment(device=device)
    if not active:  # "never"
        raise PasswordEnrollmentDisabled(DISABLED)
    return PasswordEnrollment(pending=request_enrollment(user, device_name, key, caller=caller))


def has_active_phone(user: User) -> bool:
    """Does the user have a phone that is not revoked?"""
    found = select(Device.id).where(Device.user_id == user.id, Device.revoked_at.is_(None))
    return db.session.scalar(found.limit(1)) is not None


def request_enrollment(
    user: User, device_name: str, key: ECKey, *, caller: Caller | None
) -> EnrollmentRequest:
    """The pending request of ``key`` for ``user``: the one it already has (same id, same
    code), or a new one, audited (``device.enroll_pending``). In the caller's transaction."""
    thumbprint = key.thumbprint()
    now = utcnow()
    expire_stale(thumbprint)
    waiting = find_for_key(thumbprint)
    if waiting is not None:
        if waiting.user_id != user.id:
            raise InvalidRequest("this phone's key already waits to be set up for another user")
        if hmac.compare_digest(waiting.code_digest, digest(enrollment_code(waiting.id))):
            return waiting
        # The secret key changed since: its code cannot be shown again, so it ends.
        _set_status(waiting, EXPIRED)
    ttl = timedelta(seconds=current_app.config["IDP_ENROLLMENT_TTL"])
    for _ in range(3):  # a clash of two codes is astronomically rare; draw again
        request_id = secrets.token_urlsafe(16)
        code_digest = digest(enrollment_code(request_id))
        if db.session.scalar(
            select(EnrollmentRequest.id).where(EnrollmentRequest.code_digest == code_digest)
        ):
            continue
        pending = EnrollmentRequest(
            id=request_id,
            user=user,
            code_digest=code_digest,
            public_jwk=json.dumps(key.as_dict(private=False)),
            key_thumbprint=thumbprint,
            device_name=device_name,
            ip=caller.ip if caller else None,
            user_agent=caller.user_agent if caller else None,
            status=PENDING,
            created_at=now,
            expires_at=now + ttl,
        )
        try:
            with db.session.begin_nested():  # a clash undoes this attempt only
                db.session.add(pending)
        except IntegrityError:  # the same key, for another user, at this very moment
            raise InvalidRequest("this phone's key already waits to be set up") from None
        audit.record(
            "device.enroll_pending",
            caller=caller,
            username=user.username,
            name=device_name,
            request=request_id,
        )
        return pending
    raise RuntimeError("could not draw a unique enrollment code")


def enrollment_code(request_id: str) -> str:
    """The code a pending request's new phone shows (``XXXX-XXXX``): derived from its id
    with the IdP's secret key, so only the digest needs storing, and the same key asking
    again is shown the same code."""
    secret = current_app.config["IDP_SECRET_KEY"].encode()
    mac = hmac.new(secret, b"idp enrollment code\0" + request_id.encode(), hashlib.sha256)
    number = int.from_bytes(mac.digest(), "big")  # 256 bits: the modulo bias is nil
    letters = []
    for _ in range(shortcodes.LENGTH):
        number, index = divmod(number, len(shortcodes.ALPHABET))
        letters.append(shortcodes.ALPHABET[index])
    return "".join(letters[:4]) + "-" + "".join(letters[4:])


def find_for_key(thumbprint: str) -> EnrollmentRequest | None:
    """The pending request of this key, if it has one."""
    return db.session.scalar(
        select(EnrollmentRequest).where(
            EnrollmentRequest.key_thumbprint == thumbprint, EnrollmentRequest.status == PENDING
        )
    )


def find_by_id_for_key(request_id: str, thumbprint: str) -> EnrollmentRequest | None:
    """The request ``request_id`` if ``thumbprint``'s key made it (else ``None``: the same
    answer for an unknown id and another key's)."""
    found = db.session.get(EnrollmentRequest, request_id) if len(request_id) <= 64 else None
    if found is None or not hmac.compare_digest(found.key_thumbprint, thumbprint):
        return None
    return found


def lookup_by_code(text: str, device: Device) -> EnrollmentRequest:
    """The pending, unexpired request of ``device``'s user whose code this is (case,
    spaces and the dash ignored); else ``InvalidEnrollmentCode``."""
    code = shortcodes.normalize(text)
    if code is None:
        raise InvalidEnrollmentCode(REFUSED)
    found = db.session.scalar(
        select(EnrollmentRequest).where(
            EnrollmentRequest.code_digest == digest(code),
            EnrollmentRequest.user_id == device.user_id,
            EnrollmentRequest.status == PENDING,
            EnrollmentRequest.expires_at > utcnow(),
        )
    )
    if found is None:
        raise InvalidEnrollmentCode(REFUSED)
    return found


def approve_enrollment(
    request_id: str, device: Device, *, caller: Caller | None
) -> tuple[EnrollmentRequest, Device]:
    """``device`` approves its user's pending request: one compare-and-set, and the new
    phone's Device (``enrolled_via`` ``device:<device_id>``) in the same transaction."""
    pending = _decide(request_id, device, APPROVED)
    key = ECKey.import_key(json.loads(pending.public_jwk))
    new = add_device(
        pending.user, pending.device_name, key, caller=caller, via=f"device:{device.device_id}"
    )
    db.session.flush()
    pending.device_pk = new.id
    audit.record(
        "device.enroll_approved",
        caller=caller,
        username=pending.user.username,
        device_id=device.device_id,
        new_device=new.device_id,
        name=pending.device_name,
        request=pending.id,
    )
    return pending, new


def deny_enrollment(request_id: str, device: Device, *, caller: Caller | None) -> EnrollmentRequest:
    """``device`` denies its user's pending request (one compare-and-set); audited."""
    pending = _decide(request_id, device, DENIED)
    audit.record(
        "device.enroll_denied",
        caller=caller,
        username=pending.user.username,
        device_id=device.device_id,
        name=pending.device_name,
        new_ip=pending.ip,
        request=pending.id,
    )
    return pending


def withdraw_enrollment(pending: EnrollmentRequest, *, caller: Caller | None) -> EnrollmentRequest:
    """The new phone gives up waiting (``pending`` found for its own key): one
    compare-and-set ``pending -> withdrawn``, so that no phone can approve it afterwards
    and enroll a key nobody holds; audited. A decided or expired one ``AlreadyUsed``."""
    now = utcnow()
    changed = db.session.execute(
        update(EnrollmentRequest)
        .where(
            EnrollmentRequest.id == pending.id,
            EnrollmentRequest.status == PENDING,
            EnrollmentRequest.expires_at > now,
        )
        .values(status=WITHDRAWN, decided_at=now)
        .execution_options(synchronize_session=False)
    )
    db.session.refresh(pending)
    if changed.rowcount != 1:  # type: ignore[attr-defined]
        raise AlreadyUsed(f"this request to set up a phone is already {current_status(pending)}")
    audit.record(
        "device.enroll_withdrawn",
        caller=caller,
        username=pending.user.username,
        name=pending.device_name,
        request=pending.id,
    )
    return pending


def _decide(request_id: str, device: Device, status: str) -> EnrollmentRequest:
    """``pending -> status`` by ``device``: another user's or an unknown request, or an
    expired one, ``InvalidEnrollmentCode``; a decided one ``AlreadyUsed``."""
    pending = db.session.get(EnrollmentRequest, request_id) if len(request_id) <= 64 else None
    if pending is None or pending.user_id != device.user_id:
        raise InvalidEnrollmentCode(REFUSED)
    # The deciding phone must still be one: its proof was checked before a revocation that
    # may be committing right now. Its row is locked until this decision commits, so that
    # a revocation in flight is waited for and then refuses it (PostgreSQL re-reads the
    # locked row; SQLite's writers are serialized), and a later one waits for the decision.
    alive = select(Device.id).where(Device.id == device.id, Device.revoked_at.is_(None))
    if db.session.scalar(alive.with_for_update()) is None:
        raise DeviceRevoked()
    now = utcnow()
    changed = db.session.execute(
        update(EnrollmentRequest)
        .where(
            EnrollmentRequest.id == pending.id,
            EnrollmentRequest.status == PENDING,
            EnrollmentRequest.expires_at > now,
        )
        .values(status=status, decided_at=now, decided_by=device.id)
        .execution_options(synchronize_session=False)
    )
    db.session.refresh(pending)
    if changed.rowcount != 1:  # type: ignore[attr-defined]
        if pending.status in (PENDING, EXPIRED):
            raise InvalidEnrollmentCode(REFUSED)
        raise AlreadyUsed(f"this new phone was already {pending.status}")
    return pending


def current_status(pending: EnrollmentRequest) -> str:
    """Its status as the new phone sees it: a pending request past its lifetime is
    expired, whether or not that was written yet."""
    if pending.status == PENDING and pending.expires_at <= utcnow():
        return EXPIRED
    return pending.status


def expire_stale(thumbprint: str) -> None:
    """Mark this key's pending request expired if its lifetime has passed (so that the key
    may ask again: one pending request per key)."""
    db.session.execute(
        update(EnrollmentRequest)
        .where(
            EnrollmentRequest.key_thumbprint == thumbprint,
            EnrollmentRequest.status == PENDING,
            EnrollmentRequest.expires_at <= utcnow(),
        )
        .values(status=EXPIRED)
        .execution_options(synchronize_session=False)
    )


def _set_status(pending: EnrollmentRequest, status: str) -> None:
    db.session.execute(
        update(EnrollmentRequest)
        .where(EnrollmentRequest.id == pending.id, EnrollmentRequest.status == PENDING)
        .values(status=status)
        .execution_options(synchronize_session=False)
    )
    db.session.flush()
