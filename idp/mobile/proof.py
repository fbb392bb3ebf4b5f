"""Device proofs: every phone request is signed by the phone's own key.

The scheme (docs/phone-api.md) follows DPoP (RFC 9449): a fresh ES256 JWT per
request, bound to the method, the URL and the body hash, with a ``jti`` that is
accepted once. A captured request therefore cannot be replayed or altered.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey
from sqlalchemy import bindparam, insert, select
from sqlalchemy.exc import IntegrityError

from idp import db
from idp.db import utcnow
from idp.errors import DeviceRevoked, InvalidProof, UnknownDevice
from idp.mobile.models import Device, UsedProof

PROOF_TYPE = "device-proof+jwt"
_PRINTABLE_ASCII = re.compile(r"[\x21-\x7e]+")
PROOF_ALG = "ES256"
HEADER = "Device-Proof"


@dataclass(frozen=True)
class Proof:
    """A verified proof: the key that signed it and, after enrollment, its device."""

    key: ECKey
    thumbprint: str
    device: Device | None
    jti: str
    #: Until when its ``jti`` must be remembered (the proof is stale after that anyway).
    jti_expires_at: datetime


def body_hash(body: bytes) -> str:
    """base64url (unpadded) SHA-256 of the request body, the ``bh`` claim."""
    return base64.urlsafe_b64encode(hashlib.sha256(body).digest()).rstrip(b"=").decode()


#: ``Session.info`` key of a proof whose ``jti`` is recorded but not yet committed.
UNSETTLED = "idp.unsettled_proof"
DEVICE_BY_ID = select(Device).where(Device.device_id == bindparam("device_id"))
USED_PROOF_INSERT = insert(UsedProof.__table__)
#: ``last_used_at`` is written at most this often (it is shown to admins, nothing more).
LAST_USED_RESOLUTION = timedelta(seconds=60)


def verify_proof(
    token: str | None, *, method: str, url: str, body: bytes, max_age: int, enrollment: bool
) -> Proof:
    """:func:`check_proof`, then :func:`record_proof`: check one request's proof, record
    its ``jti``, and return who signed it."""
    proof = check_proof(
        token, method=method, url=url, body=body, max_age=max_age, enrollment=enrollment
    )
    record_proof(proof)
    return proof


def check_proof(
    token: str | None, *, method: str, url: str, body: bytes, max_age: int, enrollment: bool
) -> Proof:
    """Check one request's proof and return who signed it; this only reads.

    The proof is not accepted until :func:`record_proof` has recorded its ``jti``: what
    may yield to other requests (counting the device's budget in Redis) goes in between,
    while this request holds no lock.
    """
    if not token:
        raise InvalidProof(f"the {HEADER} header is missing")
    header = _protected_header(token)
    if enrollment:
        key, device = _enrollment_key(header), None
    else:
        device = _device(header)
        key = ECKey.import_key(json.loads(device.public_jwk))
    try:
        claims = jwt.decode(token, key, algorithms=[PROOF_ALG]).claims
    except (JoseError, ValueError):
        raise InvalidProof("the proof's signature does not verify") from None
    _check_claims(claims, method=method, url=url, body=body, max_age=max_age)
    return Proof(
        key=key,
        thumbprint=key.thumbprint(),
        device=device,
        jti=claims["jti"],
        jti_expires_at=utcnow() + timedelta(seconds=2 * max_age),
    )


def _protected_header(token: str) -> dict[str, Any]:
    try:
        header = dict(jws.extract_compact(token.encode()).protected)
    except (JoseError, ValueError, TypeError, UnicodeError):
        raise InvalidProof("the proof is not a compact JWS") from None
    if header.get("typ") != PROOF_TYPE:
        raise InvalidProof(f"the proof's typ must be {PROOF_TYPE}")
    if header.get("alg") != PROOF_ALG:
        raise InvalidProof(f"the proof's alg must be {PROOF_ALG}")
    return header


def _enrollment_key(header: dict[str, Any]) -> ECKey:
    jwk = header.get("jwk")
    if "kid" in header or not isinstance(jwk, dict):
        raise InvalidProof("an enrollment proof carries the new public key as 'jwk', no 'kid'")
    if "d" in jwk or jwk.get("kty") != "EC" or jwk.get("crv") != "P-256":
        raise InvalidProof("the device key must be a public EC P-256 key")
    try:
        return ECKey.import_key({k: jwk[k] for k in ("kty", "crv", "x", "y")})
    except (JoseError, ValueError, KeyError, TypeError):
        raise InvalidProof("the device key is not a valid EC P-256 key") from None


def _device(header: dict[str, Any]) -> Device:
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid or len(kid) > 64 or "\x00" in kid:
        raise InvalidProof("the proof must name the device in 'kid'")
    device = db.session.scalar(DEVICE_BY_ID, {"device_id": kid})
    if device is None:
        raise UnknownDevice("this device is not enrolled: enroll the app again")
    if device.revoked_at is not None:
        raise DeviceRevoked()
    return device


def _check_claims(
    claims: dict[str, Any], *, method: str, url: str, body: bytes, max_age: int
) -> None:
    if claims.get("htm") != method:
        raise InvalidProof("the proof was made for another HTTP method")
    if claims.get("htu") != url:
        raise InvalidProof("the proof was made for another URL")
    if claims.get("bh") != body_hash(body):
        raise InvalidProof("the proof was made for another request body")
    iat = claims.get("iat")
    if not isinstance(iat, int | float) or isinstance(iat, bool) or not math.isfinite(iat):
        raise InvalidProof("the proof has no 'iat'")
    if abs(time.time() - iat) > max_age:
        raise InvalidProof("the proof is too old or from the future: check the phone's clock")
    jti = claims.get("jti")
    # Printable ASCII only: it is stored (PostgreSQL refuses NUL in text) and compared.
    if not isinstance(jti, str) or not 16 <= len(jti) <= 64 or not _PRINTABLE_ASCII.fullmatch(jti):
        raise InvalidProof("the proof's 'jti' must be 16 to 64 printable ASCII characters")


def record_proof(proof: Proof) -> None:
    """Accept the proof once: remember its ``jti`` until the proof is stale anyway, so a
    second use is refused (``invalid_proof``), and note when the device was last used.

    The row is inserted now, in the request's transaction: a used ``jti`` fails here,
    before the request does anything, and a concurrent request with the same ``jti``
    waits on the unique index until this transaction ends, then fails. On PostgreSQL it
    commits with the request's own work (see :func:`settle_proof`); on SQLite at once.
    From here until its commit the request holds locks: it must not yield (no Redis,
    no socket, no sleep) before it commits.
    """
    now = utcnow()
    device = proof.device
    if device is not None and (
        device.last_used_at is None or now - device.last_used_at >= LAST_USED_RESOLUTION
    ):
        device.last_used_at = now
    row = {"key_thumbprint": proof.thumbprint, "jti": proof.jti, "expires_at": proof.jti_expires_at}
    try:
        db.session.execute(USED_PROOF_INSERT, row)
    except IntegrityError:
        db.session.rollback()
        raise InvalidProof("this proof was already used") from None
    if db.session.get_bind().dialect.name == "sqlite":
        # SQLite locks the whole database for a writer, and waiting for that lock blocks
        # the process, not just this greenlet: under gevent a write transaction must never
        # stay open across a switch (the abuse limiter's lock, a log handler's). Commit now.
        db.session.commit()
        return
    db.session.info[UNSETTLED] = row
    db.on_commit(_forget_committed)


def settle_proof(succeeded: bool) -> None:
    """Make sure the request's ``jti`` is committed once its response is known.

    A request that succeeded has committed it with its work, or (a read, a repeated scan)
    commits it now. A refused one may have rolled back: whatever it left uncommitted is
    dropped and the ``jti`` alone is committed, so a refused proof can never be replayed
    once the state would let it through. So is the ``jti`` of a request that rolled back
    along the way and then succeeded.
    """
    if UNSETTLED not in db.session.info:  # none verified, or already committed
        return
    if succeeded:
        db.session.commit()  # runs _forget_committed if the jti's insert is in it
    row = db.session.info.pop(UNSETTLED, None)
    if row is None:
        return
    try:
        with db.stand_alone() as session:  # the refused request's work is dropped first
            session.execute(USED_PROOF_INSERT, row)
    except IntegrityError:  # a concurrent replay recorded it: used all the same
        pass


def _forget_committed() -> None:
    db.session.info.pop(UNSETTLED, None)
