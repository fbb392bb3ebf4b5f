"""Enrolling, listing and revoking phones."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field

from joserfc.jwk import ECKey
from sqlalchemy import select, update

from idp import audit, db
from idp.accounts.models import User
from idp.accounts.services import authenticate, check_username
from idp.db import utcnow
from idp.errors import DeviceExists, InvalidRequest
from idp.mobile.models import Device
from idp.oauth.family import revoke_device_grants
from idp.qrlogin.services import refuse_device_logins
from idp.sso.services import end_device_sessions
from idp.terminal import has_control_characters
from idp.web import Caller

MAX_DEVICE_NAME = 100


def check_enrollment(username: str, device_name: str) -> str:
    """Refuse a malformed username or device name (``InvalidRequest``); return the device
    name as it is stored. Called before the password is counted or checked, so that
    nothing of a malformed one reaches the audit log or the password budget."""
    check_username(username)
    return check_device_name(device_name)


def check_device_name(device_name: str) -> str:
    """Refuse a device name that is empty, too long or holds control characters
    (``InvalidRequest``); return it as it is stored."""
    device_name = device_name.strip()
    if not device_name or len(device_name) > MAX_DEVICE_NAME:
        raise InvalidRequest(f"device_name must be 1-{MAX_DEVICE_NAME} characters")
    if has_control_characters(device_name):
        raise InvalidRequest("device_name must not contain control characters")
    return device_name


def enroll_device(
    username: str, password: str, device_name: str, key: ECKey, *, caller: Caller | None
) -> Device:
    """Register a phone's public key for the user whose password this is (the names are
    checked first, see :func:`check_enrollment`); ``caller``: the phone's request."""
    device_name = check_enrollment(username, device_name)
    user = authenticate(username, password)
    return add_device(user, device_name, key, caller=caller, via="password")


def add_device(
    user: User, device_name: str, key: ECKey, *, caller: Caller | None, via: str | None = None
) -> Device:
    """Register ``key`` as a phone of ``user``, who has proven who they are (a password,
    an invitation, another phone's approval: ``via``, as ``Device.enrolled_via`` records
    it), in the caller's transaction; a key enrolls once (``DeviceExists``).
    ``device_name`` is one :func:`check_device_name` returned."""
    thumbprint = key.thumbprint()
    if db.session.scalar(select(Device.id).where(Device.key_thumbprint == thumbprint)):
        raise DeviceExists()
    device = Device(
        device_id="dev_" + secrets.token_urlsafe(16),
        user=user,
        name=device_name,
        public_jwk=json.dumps(key.as_dict(private=False)),
        key_thumbprint=thumbprint,
        enrolled_via=via,
    )
    db.session.add(device)
    audit.record(
        "device.enrolled",
        caller=caller,
        username=user.username,
        device_id=device.device_id,
        name=device_name,
        via=via,
    )
    return device


def list_devices(username: str) -> list[Device]:
    """A user's phones, oldest first, revoked ones included."""
    user = db.session.scalar(select(User).where(User.username == username))
    if user is None:
        raise InvalidRequest(f"no user {username!r}")
    return list(
        db.session.scalars(
            select(Device).where(Device.user_id == user.id).order_by(Device.created_at, Device.id)
        )
    )


def find_device(device_id: str) -> Device | None:
    """The device with this public id, if any."""
    return db.session.scalar(select(Device).where(Device.device_id == device_id))


@dataclass
class DeviceRevocation:
    """What revoking a phone did."""

    device: Device
    #: False: the phone was already revoked, and nothing changed.
    changed: bool
    #: The sign-ins it had scanned or approved, now denied (each published after commit).
    refused_logins: list[str] = field(default_factory=list)


def revoke_device(
    device_id: str, *, by: str | None = None, caller: Caller | None = None
) -> DeviceRevocation:
    """Revoke a phone, and withdraw what its approvals gave: its next request fails
    (``device_revoked``), for good; its tokens are revoked, its unredeemed codes end,
    the IdP sessions it made end, and the sign-ins it scanned or approved that no
    browser has completed are denied. ``by`` is the device that asked (a user revoking
    from a phone); ``None``: an admin. ``caller``: the phone's request (``None`` from the
    command line).

    All in the caller's transaction: the caller commits (one transaction: the phone is
    never revoked with its tokens still live); each denied sign-in is published once it
    has committed.
    """
    device = find_device(device_id)
    if device is None:
        raise InvalidRequest(f"no device {device_id!r}")
    if device.revoked_at is not None:
        return DeviceRevocation(device, changed=False)
    result = db.session.execute(
        update(Device)
        .where(Device.id == device.id, Device.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    db.session.refresh(device)
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return DeviceRevocation(device, changed=False)  # a concurrent revocation won
    tokens, codes = revoke_device_grants(device, caller=caller)
    sessions = end_device_sessions(device.id)
    refused = refuse_device_logins(device, caller=caller)
    audit.record(
        "device.revoked",
        caller=caller,
        username=device.user.username,
        device_id=device_id,
        by=by or "admin",
        tokens=tokens,
        codes=codes,
        sessions=sessions,
        logins=len(refused),
    )
    return DeviceRevocation(device, changed=True, refused_logins=refused)
