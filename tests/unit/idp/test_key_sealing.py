"""Signing keys sealed at rest (idp.oauth.sealing): a database dump alone cannot sign an
ID token; the wrong IDP_SECRET_KEY refuses to start; keys from before are sealed at start."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import text

from idp import db
from idp.oauth.keys import ALGORITHMS, key_store, rotate_keys
from idp.oauth.sealing import KeySealer, WrongSecretKey
from support import dispose_app, make_app, running_app

WRONG_SECRET = (
    "IDP_SECRET_KEY does not open the signing key {kid} stored in the database: it was sealed "
    "with another IDP_SECRET_KEY. Set the IDP_SECRET_KEY it was made with (every host must "
    "have the same one; see IDP_PREVIOUS_SECRET_KEY to change it)"
)


def stored_rows(app) -> dict[str, str]:
    with app.app_context():
        rows = db.session.execute(
            text("SELECT kid, private_jwk FROM signing_keys ORDER BY id")
        ).all()
        db.session.rollback()
    return dict(rows)


def private_parts(app) -> dict[str, str]:
    """kid -> the private exponent or scalar ("d") of each signing key, as loaded."""
    with app.app_context():
        return {key.kid: key.as_dict(private=True)["d"] for _, key in key_store()._current()}


def test_a_database_dump_holds_no_private_key_material(app):
    # Before: private_jwk was the JWK's JSON, "d" and all; a dump could sign ID tokens.
    with app.app_context():
        key_store().jwks()  # the first keys are made...
        with db.unit_of_work():
            rotate_keys()  # ...then rotated ones: every row is made sealed
    secrets_by_kid = private_parts(app)
    rows = stored_rows(app)
    assert len(rows) == 2 * len(ALGORITHMS) == len(secrets_by_kid)
    for kid, stored in rows.items():
        assert stored.startswith("enc:v1:")
        assert '"d"' not in stored and "private" not in stored
        assert secrets_by_kid[kid] not in stored
        with pytest.raises(ValueError):
            json.loads(stored)


def test_a_wrong_secret_key_refuses_to_start(app, tmp_path, backend):
    with app.app_context():
        kid = key_store().signing_key("RS256").kid  # the first keys are made, sealed
    with pytest.raises(WrongSecretKey) as caught:
        make_app(tmp_path, IDP_SECRET_KEY="not-the-one-it-was-made-with", **backend)
    first_kid = next(iter(stored_rows(app)))
    assert str(caught.value) == WRONG_SECRET.format(kid=first_kid)
    assert kid in stored_rows(app)


def test_workers_with_the_same_secret_share_the_keys(app, tmp_path, backend):
    with app.app_context():
        kid = key_store().signing_key("ES256").kid
    # Another worker (or host): the same database and secret.
    with running_app(tmp_path, **backend) as other:
        with other.app_context():
            assert key_store().signing_key("ES256").kid == kid
            with db.unit_of_work():
                [(_, new_kid, _)] = rotate_keys(("ES256",))
        with app.app_context():
            key_store().reload()
            assert new_kid in {k["kid"] for k in key_store().jwks()["keys"]}


def test_a_plaintext_key_from_before_is_sealed_at_start(app, tmp_path, backend):
    with app.app_context():
        kid = key_store().signing_key("RS256").kid
        plain = {k.kid: json.dumps(k.as_dict(private=True)) for _, k in key_store()._current()}
        for row_kid, private_jwk in plain.items():  # as a database made before sealing
            db.session.execute(
                text("UPDATE signing_keys SET private_jwk = :p WHERE kid = :k"),
                {"p": private_jwk, "k": row_kid},
            )
        db.session.commit()
    assert set(stored_rows(app).values()) == set(plain.values())
    with running_app(tmp_path, **backend) as restarted:
        rows = stored_rows(restarted)
        assert all(stored.startswith("enc:v1:") for stored in rows.values())
        with restarted.app_context():
            assert key_store().signing_key("RS256").kid == kid  # the same key, now sealed
            assert private_parts(restarted) == private_parts(app)


def test_the_secret_key_is_changed_with_the_previous_one_set(app, tmp_path, backend):
    with app.app_context():
        kid = key_store().signing_key("RS256").kid  # sealed under "test-secret-key"
    with (
        running_app(
            tmp_path,
            IDP_SECRET_KEY="the-new-one",
            IDP_PREVIOUS_SECRET_KEY="test-secret-key",
            **backend,
        ) as new,
        new.app_context(),
    ):
        assert key_store().signing_key("RS256").kid == kid
    # Every key is now sealed under the new secret: it alone opens them...
    dispose_app(make_app(tmp_path, IDP_SECRET_KEY="the-new-one", **backend))
    with pytest.raises(WrongSecretKey):
        make_app(tmp_path, IDP_SECRET_KEY="test-secret-key", **backend)
    # ...and a process still running with the old one keeps the keys it had loaded.
    with app.app_context():
        key_store().reload()
        assert key_store().signing_key("RS256").kid == kid


def test_a_sealed_key_opens_only_under_its_own_kid_and_secret():
    sealer = KeySealer("secret")
    stored = sealer.seal('{"kty": "EC", "d": "x"}', "kid-a")
    assert sealer.open(stored, "kid-a") == '{"kty": "EC", "d": "x"}'
    assert sealer.seal('{"kty": "EC", "d": "x"}', "kid-a") != stored  # a fresh nonce
    with pytest.raises(WrongSecretKey):
        sealer.open(stored, "kid-b")  # copied onto another key's row
    with pytest.raises(WrongSecretKey):
        KeySealer("another secret").open(stored, "kid-a")
    changed = KeySealer("another secret", ["secret"])  # while the secret is changed
    assert changed.open(stored, "kid-a") == '{"kty": "EC", "d": "x"}'
    assert not changed.is_current(stored, "kid-a")
    assert changed.is_current(changed.seal("{}", "kid-a"), "kid-a")
    tampered = stored[:-2] + ("A" if stored[-2] != "A" else "B") + stored[-1]
    for bad in (tampered, "enc:v1:", "enc:v1:abc", "enc:v1:a.b.c", "enc:v1:!!.??"):
        with pytest.raises(WrongSecretKey):
            sealer.open(bad, "kid-a")
