"""Enrolling phones."""

from __future__ import annotations

import json
import secrets

from joserfc.jwk import ECKey
from sqlalchemy import select

from idp import db
from idp.accounts.services import authenticate
from idp.errors import DeviceExists, InvalidRequest
from idp.mobile.models import Device

MAX_DEVICE_NAME = 100


def enroll_device(username: str, password: str, device_name: str, key: ECKey) -> Device:
    """Register a phone's public key for the user whose password this is."""
    device_name = device_name.strip()
    if not device_name or len(device_name) > MAX_DEVICE_NAME:
        raise InvalidRequest(f"device_name must be 1-{MAX_DEVICE_NAME} characters")
    user = authenticate(username, password)
    thumbprint = key.thumbprint()
    if db.session.scalar(select(Device.id).where(Device.key_thumbprint == thumbprint)):
        raise DeviceExists()
    device = Device(
        device_id="dev_" + secrets.token_urlsafe(16),
        user_id=user.id,
        name=device_name,
        public_jwk=json.dumps(key.as_dict(private=False)),
        key_thumbprint=thumbprint,
    )
    db.session.add(device)
    db.session.commit()
    return device
