"""The ``Device-Proof`` header: a one-request compact JWS signed with the device key.

See ``docs/phone-api.md``. The proof binds the request's method, URL (without query or
fragment) and the exact body bytes, carries a fresh ``iat`` and a random ``jti``, and names
the device by ``kid`` (every request but enrollment) or by its public ``jwk`` (enrollment).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from joserfc import jwt
from joserfc.jwk import ECKey

PROOF_TYPE = "device-proof+jwt"
"""The ``typ`` of the proof's protected header."""

PROOF_ALG = "ES256"
"""The only signature algorithm the IdP accepts."""

_PUBLIC_MEMBERS = ("kty", "crv", "x", "y")


def public_jwk(key: ECKey) -> dict[str, str]:
    """Return the public half of ``key`` as ``{"kty", "crv", "x", "y"}`` (nothing else)."""
    public = key.as_dict(private=False)
    return {name: str(public[name]) for name in _PUBLIC_MEMBERS}


def body_hash(body: bytes) -> str:
    """Return the ``bh`` claim: base64url without padding of SHA-256 of ``body``."""
    digest = hashlib.sha256(body).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def proof_url(url: str) -> str:
    """Return the ``htu`` claim for ``url``: the URL without its query and fragment."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def make_proof(
    key: ECKey,
    method: str,
    url: str,
    body: bytes,
    *,
    kid: str | None = None,
    jwk: dict[str, Any] | None = None,
) -> str:
    """Make the ``Device-Proof`` value for one request.

    ``key`` is the device's private P-256 key; ``body`` the exact bytes that will be sent
    (``b""`` for a request without a body). Give exactly one of ``kid`` (the ``device_id``)
    or ``jwk`` (the device's public key, for enrollment only).
    """
    if (kid is None) == (jwk is None):
        raise ValueError("give exactly one of kid (device_id) or jwk (enrollment)")
    if not isinstance(key, ECKey) or key.curve_name != "P-256" or not key.is_private:
        raise ValueError("the device key must be a private EC P-256 key")
    if not isinstance(body, bytes):
        raise TypeError("body must be the exact request body as bytes")

    header: dict[str, Any] = {"typ": PROOF_TYPE, "alg": PROOF_ALG}
    if kid is not None:
        if not kid:
            raise ValueError("kid must not be empty")
        header["kid"] = kid
    else:
        assert jwk is not None
        if "d" in jwk:
            raise ValueError("refusing to put a private key in the proof header")
        missing = [name for name in _PUBLIC_MEMBERS if name not in jwk]
        if missing:
            raise ValueError(f"jwk is missing {', '.join(missing)}")
        header["jwk"] = {name: jwk[name] for name in _PUBLIC_MEMBERS}

    claims = {
        "htm": method.upper(),
        "htu": proof_url(url),
        "iat": int(time.time()),
        "jti": secrets.token_urlsafe(24),  # 32 characters
        "bh": body_hash(body),
    }
    return jwt.encode(header, claims, key, algorithms=[PROOF_ALG])
