"""Private signing keys sealed at rest, so that a database dump alone cannot sign tokens.

A key's private JWK is stored as ``enc:v1:<nonce>.<ciphertext>`` (base64url): AES-256-GCM
under a key derived with HKDF-SHA256 from ``IDP_SECRET_KEY``, its ``kid`` as associated
data (a sealed key copied onto another row does not open). A row without the prefix is
a plaintext key from before sealing, and one sealed under ``IDP_PREVIOUS_SECRET_KEY``
is from before the secret was changed: :func:`idp.oauth.keys.seal_stored_keys` seals
both (again) under the current secret at start.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from idp.config import ConfigError

PREFIX = "enc:v1:"
#: HKDF's context: this key seals signing keys, and nothing else derives the same one.
_INFO = b"qr-idp signing-key sealing v1"


class WrongSecretKey(ConfigError):
    """``IDP_SECRET_KEY`` does not open a stored signing key (not the one that sealed it)."""


def is_sealed(stored: str) -> bool:
    """Whether a ``private_jwk`` column value is sealed (else it is a plaintext JWK)."""
    return stored.startswith(PREFIX)


class KeySealer:
    """Seals private JWKs with the key derived from ``secret``; opens them with it or
    with one derived from a ``previous`` secret (while ``IDP_SECRET_KEY`` is changed)."""

    def __init__(self, secret: str, previous: Sequence[str] = ()) -> None:
        self._aeads = [AESGCM(_derive(s)) for s in (secret, *previous)]

    def seal(self, private_jwk: str, kid: str) -> str:
        """The stored form of ``private_jwk`` (a fresh 96-bit nonce each time)."""
        nonce = os.urandom(12)
        sealed = self._aeads[0].encrypt(nonce, private_jwk.encode(), kid.encode())
        return f"{PREFIX}{_b64(nonce)}.{_b64(sealed)}"

    def open(self, stored: str, kid: str) -> str:
        """The private JWK of a stored value; a plaintext one (from before) as it is."""
        if not is_sealed(stored):
            return stored
        for aead in self._aeads:
            if (opened := _open(aead, stored, kid)) is not None:
                return opened
        raise WrongSecretKey(
            f"IDP_SECRET_KEY does not open the signing key {kid} stored in the database: "
            "it was sealed with another IDP_SECRET_KEY. Set the IDP_SECRET_KEY it was made "
            "with (every host must have the same one; see IDP_PREVIOUS_SECRET_KEY to change it)"
        )

    def is_current(self, stored: str, kid: str) -> bool:
        """Whether ``stored`` is sealed under the current secret (else: seal it again)."""
        return is_sealed(stored) and _open(self._aeads[0], stored, kid) is not None


def _derive(secret: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(secret.encode())


def _open(aead: AESGCM, stored: str, kid: str) -> str | None:
    try:
        nonce, sealed = (_unb64(part) for part in stored.removeprefix(PREFIX).split("."))
        return aead.decrypt(nonce, sealed, kid.encode()).decode()
    except (InvalidTag, ValueError, binascii.Error):
        return None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
