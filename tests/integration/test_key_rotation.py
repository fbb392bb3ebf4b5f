"""`idp keys rotate`: new keys are published before they sign, and old ones stay published
until the tokens they signed have expired (both backends)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update

from idp import db
from idp.db import utcnow
from idp.oauth.keys import KeyStore, key_store, list_keys, rotate_keys
from idp.oauth.models import SigningKey
from support import Browser, RelyingParty, approve_and_exchange


def kids(jwks: dict) -> set[str]:
    return {key["kid"] for key in jwks["keys"]}


def states(app) -> dict[str, str]:
    with app.app_context():
        return {(row["alg"], row["state"]): row["kid"] for row in list_keys()}


@pytest.mark.idp_config(IDP_KEY_PUBLISH_AHEAD=600)
def test_a_new_key_is_published_before_it_signs(world):
    live, rp, browser, phone = world
    with live.app.app_context():
        before = key_store().signing_key("RS256").kid
        with db.unit_of_work():
            [(alg, new_kid, _when)] = rotate_keys(("RS256",))
        assert alg == "RS256"
        assert key_store().signing_key("RS256").kid == before  # not yet
        assert {before, new_kid} <= kids(key_store().jwks())
    assert states(live.app)[("RS256", "next")] == new_kid
    tokens = approve_and_exchange(rp, browser, phone)
    header, _ = rp.verify_id_token(tokens["id_token"])
    assert header["kid"] == before


@pytest.mark.idp_config(IDP_KEY_PUBLISH_AHEAD=0)
def test_after_the_takeover_the_new_key_signs_and_the_old_one_stays_published(world):
    live, rp, browser, phone = world
    old_tokens = approve_and_exchange(rp, browser, phone)
    old_header, _ = rp.verify_id_token(old_tokens["id_token"])
    with live.app.app_context(), db.unit_of_work():
        [(_, new_kid, _)] = rotate_keys(("RS256",))
    again = RelyingParty(rp.idp_url, rp.client_id, rp.client_secret)  # a fresh nonce
    new_tokens = approve_and_exchange(again, Browser(live.url), phone)  # no session: a scan
    new_header, _ = again.verify_id_token(new_tokens["id_token"])
    assert new_header["kid"] == new_kid != old_header["kid"]
    # A token signed before the rotation still verifies against the published JWKS.
    rp.verify_id_token(old_tokens["id_token"])
    found = states(live.app)
    assert found[("RS256", "signing")] == new_kid
    assert found[("RS256", "published")] == old_header["kid"]
    assert found[("ES256", "signing")]  # the other algorithm untouched


@pytest.mark.idp_config(IDP_KEY_PUBLISH_AHEAD=0, IDP_ID_TOKEN_TTL=60)
def test_a_retired_key_goes_once_its_tokens_have_expired(world):
    live, _, _, _ = world
    with live.app.app_context():
        old = key_store().signing_key("RS256").kid
        with db.unit_of_work():
            rotate_keys(("RS256",))
        assert old in kids(key_store().jwks())
        db.session.execute(
            update(SigningKey)
            .where(SigningKey.kid == old)
            .values(retired_at=utcnow() - timedelta(seconds=60 + 5 * 60 + 1))
        )
        db.session.commit()
        key_store().reload()
        assert old not in kids(key_store().jwks())
    assert ("RS256", "expired") in states(live.app)


def test_every_process_picks_up_a_rotation(app, monkeypatch):
    """Another worker's key store re-reads the keys within RELOAD_SECONDS."""
    app.config["IDP_KEY_PUBLISH_AHEAD"] = 0
    with app.app_context():
        other = KeyStore(key_store().sealer)
        first = other.signing_key("ES256").kid
        with db.unit_of_work():
            [(_, new_kid, _)] = rotate_keys(("ES256",))
        assert other.signing_key("ES256").kid == first  # cached for now
        monkeypatch.setattr(KeyStore, "RELOAD_SECONDS", 0.0)
        assert other.signing_key("ES256").kid == new_kid
        assert new_kid in kids(other.jwks())


def test_loading_the_keys_never_commits_the_callers_transaction(app):
    """The first keys are made (and later reloaded) while a request's transaction is
    open: what that request has pending is committed only if it commits itself."""
    from idp.accounts.models import User

    with app.app_context():
        db.session.add(User(subject="pending", username="pending", password_hash="x"))
        db.session.flush()
        key_store().signing_key("RS256")
        db.session.rollback()
        assert db.session.scalar(select(User).where(User.username == "pending")) is None
        key_store().reload()
        kid = key_store().signing_key("RS256").kid
        db.session.commit()
        assert kid in set(db.session.scalars(select(SigningKey.kid)))
