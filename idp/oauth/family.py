"""Withdrawing what was granted, a family at a time.

A family is every token descended from one authorization code. ``revoke_family``
revokes one for good when its code is replayed or a refresh token reused (the grants
call it); ``revoke_device_grants`` withdraws every family and unredeemed code a
revoked phone's approvals gave.
"""

from __future__ import annotations

from collections import Counter

from sqlalchemy import or_, update

from idp import audit, db
from idp.db import utcnow
from idp.mobile.models import Device
from idp.oauth.models import AuthorizationCode, Token
from idp.web import Caller


def revoke_family(family: str, *, client_id: str, reason: str, caller: Caller | None) -> None:
    """Revoke every token descended from one authorization code, at once and for good.

    The token request that found the replay fails, but this stands: it is committed
    alone (``db.stand_alone``: that request's work so far is rolled back first)."""
    with db.stand_alone() as session:
        result = session.execute(
            update(Token)
            .where(Token.family == family)
            .values(access_revoked=True, refresh_revoked=True)
        )
        audit.record(
            "token.family_revoked",
            caller=caller,
            client_id=client_id,
            reason=reason,
            tokens=result.rowcount,  # type: ignore[attr-defined]
        )


def revoke_device_grants(device: Device, *, caller: Caller | None) -> tuple[int, int]:
    """Withdraw what a phone's approvals gave: revoke its live tokens (one
    ``token.family_revoked`` event per family, reason ``device_revoked``) and end its
    unredeemed codes. In the caller's transaction, which revokes the device too.

    Returns the numbers of tokens and codes withdrawn.
    """
    now = utcnow()
    revoked = db.session.execute(
        update(Token)
        .where(
            Token.device_pk == device.id,
            or_(Token.access_revoked.is_(False), Token.refresh_revoked.is_(False)),
        )
        .values(access_revoked=True, refresh_revoked=True)
        .returning(Token.family, Token.client_id)
        .execution_options(synchronize_session=False)
    ).all()
    for (_family, client_id), count in sorted(Counter(map(tuple, revoked)).items(), key=str):
        audit.record(
            "token.family_revoked",
            caller=caller,
            username=device.user.username,
            device_id=device.device_id,
            client_id=client_id,
            reason="device_revoked",
            tokens=count,
        )
    # Expired rather than marked used: a used code presented again would read as a replay.
    codes = db.session.execute(
        update(AuthorizationCode)
        .where(
            AuthorizationCode.device_pk == device.id,
            AuthorizationCode.used_at.is_(None),
            AuthorizationCode.expires_at > now,
        )
        .values(expires_at=now)
        .execution_options(synchronize_session=False)
    )
    return len(revoked), codes.rowcount  # type: ignore[attr-defined]
