"""Signing keys: made on first start, stored in the database, loaded once per process."""

from __future__ import annotations

import json
import threading
from typing import Any

from flask import Flask, current_app
from joserfc.jwk import ECKey, KeySet, RSAKey
from sqlalchemy import select, text

from idp import db
from idp.oauth.models import SigningKey

SigningJWK = RSAKey | ECKey
#: RS256 is what every relying party supports, so it is the default; ES256 on request.
ALGORITHMS = ("RS256", "ES256")
#: pg_advisory_xact_lock key for making the first signing keys ("QRIDPKEY").
_LOCK_KEY = 0x5152494450_4B4559


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
        # One process at a time makes the first keys, so that all agree on them
        # (on SQLite the transaction's BEGIN IMMEDIATE already serializes this).
        if db.session.get_bind().dialect.name == "postgresql":
            db.session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
        rows = list(
            db.session.scalars(select(SigningKey).order_by(SigningKey.created_at, SigningKey.id))
        )
        for alg in ALGORITHMS:
            if not any(r.alg == alg for r in rows):
                key = generate_key(alg)
                row = SigningKey(
                    kid=key.kid, alg=alg, private_jwk=json.dumps(key.as_dict(private=True))
                )
                db.session.add(row)
                rows.append(row)
        db.session.commit()  # also ends the read transaction and releases the lock
        keys = [_import(r.private_jwk) for r in rows]
        for row, key in zip(rows, keys, strict=True):
            if row.retired_at is None and row.alg not in self._signing:
                self._signing[row.alg] = key  # the oldest active key of each algorithm signs
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
