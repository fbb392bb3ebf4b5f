"""Signing keys: made on first start, stored in the database, loaded once per process."""

from __future__ import annotations

import json
import threading
from typing import Any

from flask import Flask, current_app
from joserfc.jwk import ECKey, KeySet, RSAKey
from sqlalchemy import select

from idp import db
from idp.oauth.models import SigningKey

SigningJWK = RSAKey | ECKey
#: RS256 is what every relying party supports, so it is the default; ES256 on request.
ALGORITHMS = ("RS256", "ES256")


def generate_key(alg: str) -> SigningJWK:
    """A new private key for ``alg`` whose ``kid`` is its RFC 7638 thumbprint."""
    params = {"alg": alg, "use": "sig"}
    if alg == "RS256":
        key: SigningJWK = RSAKey.generate_key(2048, parameters=params, private=True)
    elif alg == "ES256":
        key = ECKey.generate_key("P-256", parameters=params, private=True)
    else:
        raise ValueError(f"unsupported signing algorithm {alg!r}")
    key.ensure_kid()
    return key


class KeyStore:
    """The active signing key per algorithm and the public JWKS, cached."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._signing: dict[str, SigningJWK] = {}
        self._jwks: dict[str, Any] | None = None

    def signing_key(self, alg: str) -> SigningJWK:
        """The key that signs new tokens with ``alg``."""
        self._ensure_loaded()
        return self._signing[alg]

    def jwks(self) -> dict[str, Any]:
        """Every published public key (RFC 7517 JWK Set)."""
        self._ensure_loaded()
        assert self._jwks is not None
        return self._jwks

    def _ensure_loaded(self) -> None:
        if self._jwks is not None:
            return
        with self._lock:
            if self._jwks is None:
                self._load()

    def _load(self) -> None:
        rows = list(
            db.session.scalars(select(SigningKey).order_by(SigningKey.created_at, SigningKey.id))
        )
        missing = [alg for alg in ALGORITHMS if not any(r.alg == alg for r in rows)]
        for alg in missing:
            key = generate_key(alg)
            row = SigningKey(
                kid=key.kid, alg=alg, private_jwk=json.dumps(key.as_dict(private=True))
            )
            db.session.add(row)
            rows.append(row)
        if missing:
            db.session.commit()
        keys = [_import(r.private_jwk) for r in rows]
        for row, key in zip(rows, keys, strict=True):
            # The oldest active key of each algorithm signs, so that two processes
            # that both made a key on first start agree on one.
            if row.retired_at is None and row.alg not in self._signing:
                self._signing[row.alg] = key
        self._jwks = KeySet(keys).as_dict(private=False)


def _import(private_jwk: str) -> SigningJWK:
    data = json.loads(private_jwk)
    return RSAKey.import_key(data) if data["kty"] == "RSA" else ECKey.import_key(data)


def init_app(app: Flask) -> None:
    """Give the app its key store."""
    app.extensions["idp.keys"] = KeyStore()


def key_store() -> KeyStore:
    """The current app's key store."""
    return current_app.extensions["idp.keys"]
