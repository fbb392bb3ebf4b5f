"""Signing keys: made on first start, stored in the database (the private parts sealed
with a key derived from ``IDP_SECRET_KEY``, see :mod:`idp.oauth.sealing`), loaded once
per process."""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from datetime import datetime, timedelta
from typing import Any

from flask import Flask, current_app
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, Key, KeyParameters, KeySet, KeySetSerialization, RSAKey
from sqlalchemy import inspect, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from idp import audit, db
from idp.db import utcnow
from idp.oauth.models import SigningKey
from idp.oauth.sealing import KeySealer

log = logging.getLogger(__name__)

SigningJWK = RSAKey | ECKey
#: RS256 is what every relying party supports, so it is the default; ES256 on request.
ALGORITHMS = ("RS256", "ES256")
#: pg_advisory_xact_lock key for making the first signing keys ("QRIDPKEY").
_LOCK_KEY = 0x5152494450_4B4559


def generate_key(alg: str) -> SigningJWK:
    """A new private key for ``alg`` whose ``kid`` is its RFC 7638 thumbprint."""
    params: KeyParameters = {"alg": alg, "use": "sig"}
    if alg == "RS256":
        key: SigningJWK = RSAKey.generate_key(2048, parameters=params, private=True)
    elif alg == "ES256":
        key = ECKey.generate_key("P-256", parameters=params, private=True)
    else:
        raise ValueError(f"unsupported signing algorithm {alg!r}")
    key.ensure_kid()
    return key


class KeyStore:
    """The signing key per algorithm and the public JWKS, re-read from the database
    every ``RELOAD_SECONDS`` so that a rotation reaches every process.

    Rotation (``idp keys rotate``) adds a key that is published at once but signs only
    ``IDP_KEY_PUBLISH_AHEAD`` seconds later, once relying parties' cached JWKS have had
    time to pick it up; the key it replaces stops signing then, and stays published
    for ``IDP_ID_TOKEN_TTL`` more seconds, until every token it signed has expired.
    """

    RELOAD_SECONDS = 60.0

    def __init__(self, sealer: KeySealer) -> None:
        self.sealer = sealer
        self._lock = threading.Lock()
        self._rows: list[tuple[SigningKey, SigningJWK]] = []
        self._jwks: KeySetSerialization = {"keys": []}
        self._loaded_at = -math.inf

    def signing_key(self, alg: str) -> SigningJWK:
        """The key that signs new tokens with ``alg``."""
        rows = self._current()
        now = utcnow()
        active = [(r, k) for r, k in rows if r.alg == alg and not _retired(r, now)]
        ahead = timedelta(seconds=current_app.config["IDP_KEY_PUBLISH_AHEAD"])
        ready = [(r, k) for r, k in active if r.created_at <= now - ahead]
        # The newest key that has been published long enough; the first keys sign at once.
        chosen = ready[-1] if ready else active[0]
        return chosen[1]

    def jwks(self) -> KeySetSerialization:
        """Every published public key (RFC 7517 JWK Set), as of the last reload."""
        self._current()
        return self._jwks

    def _published(self) -> KeySetSerialization:
        now = utcnow()
        grace = timedelta(seconds=current_app.config["IDP_ID_TOKEN_TTL"]) + CLOCK_SKEW
        keys: list[Key] = [
            k for r, k in self._rows if r.retired_at is None or r.retired_at + grace > now
        ]
        return KeySet(keys).as_dict(private=False)

    def reload(self) -> None:
        """Forget the cached keys (after a rotation in this process)."""
        self._loaded_at = -math.inf

    def _current(self) -> list[tuple[SigningKey, SigningJWK]]:
        if time.monotonic() - self._loaded_at < self.RELOAD_SECONDS:
            return self._rows
        with self._lock:
            if time.monotonic() - self._loaded_at >= self.RELOAD_SECONDS:
                rows, cacheable = _load_rows()
                cached = {r.kid: k for r, k in self._rows}
                self._rows = [(r, cached.get(r.kid) or self._import(r)) for r in rows]
                self._jwks = self._published()
                self._loaded_at = time.monotonic() if cacheable else -math.inf
        return self._rows

    def _import(self, row: SigningKey) -> SigningJWK:
        return _import(self.sealer.open(row.private_jwk, row.kid))


#: Tolerated difference between our clock and a relying party's.
CLOCK_SKEW = timedelta(minutes=5)


def _retired(row: SigningKey, now: datetime) -> bool:
    return row.retired_at is not None and row.retired_at <= now


#: ``Session.info`` key: this session made the first keys, not yet committed.
_MADE_UNCOMMITTED = "idp.keys_made_uncommitted"


def _load_rows() -> tuple[list[SigningKey], bool]:
    """Every key row, oldest first, and whether they may be cached; the first keys are
    made here if there are none. The caller's transaction is never committed here.

    The rows are read (and the first keys made) in an independent transaction; but on
    SQLite, where the caller's open transaction holds the one write lock, in a savepoint
    of the caller's instead: keys made there are committed only with it, so they are not
    cached (a rollback would leave the cache signing with keys nobody can look up).
    """
    caller = db.session()  # the current scoped session itself
    if caller.get_bind().dialect.name == "sqlite" and caller.in_transaction():
        with caller.begin_nested():
            rows, made = _read_or_make(caller)
        for row in rows:
            caller.expunge(row)
        if made:
            caller.info[_MADE_UNCOMMITTED] = True
        return rows, not caller.info.get(_MADE_UNCOMMITTED)
    with db.independent_transaction() as own:
        if own.get_bind().dialect.name == "postgresql":
            # One process at a time makes the first keys, so that all agree on them
            # (on SQLite the transaction's BEGIN IMMEDIATE already serializes this).
            own.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
        rows, _made = _read_or_make(own)
    return rows, True


def _read_or_make(session: Session) -> tuple[list[SigningKey], bool]:
    rows = list(session.scalars(select(SigningKey).order_by(SigningKey.created_at, SigningKey.id)))
    missing = [alg for alg in ALGORITHMS if not any(r.alg == alg for r in rows)]
    rows.extend(_new_row(alg, utcnow(), session) for alg in missing)
    session.flush()
    return rows, bool(missing)


def _new_row(alg: str, created_at: datetime, session: Session | None = None) -> SigningKey:
    key = generate_key(alg)
    kid = key.kid
    assert kid is not None  # generate_key set it
    row = SigningKey(
        kid=kid,
        alg=alg,
        private_jwk=key_store().sealer.seal(json.dumps(key.as_dict(private=True)), kid),
        created_at=created_at,
    )
    (session or db.session).add(row)
    return row


def rotate_keys(algorithms: tuple[str, ...] = ALGORITHMS) -> list[tuple[str, str, datetime]]:
    """Add a new key per algorithm; the keys it replaces stop signing once it takes over.
    In the caller's transaction (``idp keys rotate``'s); this process's key store reads
    the keys again once that has committed.

    Returns (alg, new kid, when it starts signing) per algorithm.
    """
    now = utcnow()
    takes_over = now + timedelta(seconds=current_app.config["IDP_KEY_PUBLISH_AHEAD"])
    rotated = []
    for alg in algorithms:
        old = db.session.scalars(
            select(SigningKey).where(
                SigningKey.alg == alg,
                (SigningKey.retired_at.is_(None)) | (SigningKey.retired_at > now),
            )
        ).all()
        for row in old:
            row.retired_at = min(row.retired_at or takes_over, takes_over)
        row = _new_row(alg, now)
        rotated.append((alg, row.kid, takes_over))
        audit.record("keys.rotated", alg=alg, kid=row.kid, signs_from=takes_over.isoformat())
    db.on_commit(key_store().reload)
    return rotated


def list_keys() -> list[dict[str, Any]]:
    """Every key with its state: signing, next, published (retired, tokens still valid),
    expired (no longer published)."""
    store = key_store()
    store.reload()
    now = utcnow()
    signing = {store.signing_key(alg).kid for alg in ALGORITHMS}
    published = {k["kid"] for k in store.jwks()["keys"]}
    result = []
    for row, _key in store._current():
        if row.kid in signing:
            state = "signing"
        elif row.kid in published and not _retired(row, now):
            state = "next"
        elif row.kid in published:
            state = "published"
        else:
            state = "expired"
        result.append(
            {
                "kid": row.kid,
                "alg": row.alg,
                "created_at": row.created_at,
                "retired_at": row.retired_at,
                "state": state,
            }
        )
    return result


def _import(private_jwk: str) -> SigningJWK:
    data = json.loads(private_jwk)
    return RSAKey.import_key(data) if data["kty"] == "RSA" else ECKey.import_key(data)


def init_app(app: Flask) -> None:
    """Give the app its key store; refuse to start if the stored keys do not open."""
    previous = app.config["IDP_PREVIOUS_SECRET_KEY"]
    sealer = KeySealer(app.config["IDP_SECRET_KEY"], [previous] if previous else [])
    app.extensions["idp.keys"] = KeyStore(sealer)
    seal_stored_keys(app.extensions["idp.db"].engine, sealer)


def seal_stored_keys(engine: Engine, sealer: KeySealer) -> None:
    """At start, in a transaction of its own: check that every stored key opens with this
    ``IDP_SECRET_KEY`` or ``IDP_PREVIOUS_SECRET_KEY`` (else
    :class:`~idp.oauth.sealing.WrongSecretKey`, a ConfigError), and seal in place under
    ``IDP_SECRET_KEY`` any key that is not yet: plaintext, left by a version before sealing
    (no migration can: it does not know the secret), or sealed under the previous secret.
    Processes already running keep the keys they loaded (they never open them again).
    Before ``idp db upgrade`` there is nothing to check."""
    try:
        if not inspect(engine).has_table(SigningKey.__tablename__):
            return
        with Session(engine) as session, session.begin():
            for row in session.scalars(select(SigningKey).order_by(SigningKey.id)):
                private_jwk = sealer.open(row.private_jwk, row.kid)
                if not sealer.is_current(row.private_jwk, row.kid):
                    row.private_jwk = sealer.seal(private_jwk, row.kid)
                    log.info("sealed the signing key %s under IDP_SECRET_KEY", row.kid)
    except OperationalError:
        # Not reachable now: the first request that needs a key checks it then.
        log.warning("database unreachable at start; signing keys not checked", exc_info=True)
    finally:
        # `idp serve` builds an app before forking its workers: no pooled connection of
        # this check may be inherited by them.
        engine.dispose()


def key_store() -> KeyStore:
    """The current app's key store."""
    return current_app.extensions["idp.keys"]


def hinted_claims(id_token: str) -> dict[str, Any]:
    """The claims of an ID token we signed (expired ones too), or ``{}``: what an
    ``id_token_hint`` says (OIDC Core §3.1.2.1, RP-Initiated Logout §2)."""
    if len(id_token) > 8192:
        return {}
    try:
        token = jwt.decode(id_token, KeySet.import_key_set(key_store().jwks()), list(ALGORITHMS))
    except (JoseError, ValueError):
        return {}
    if token.claims.get("iss") != current_app.config["IDP_ISSUER"]:
        return {}
    return dict(token.claims)
