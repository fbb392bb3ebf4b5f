"""Service accounts (client_credentials), token revocation (RFC 7009) and introspection
(RFC 7662), on both backends."""

from __future__ import annotations

import time

import pytest
import requests

from idp import db
from idp.admin.services import create_client
from idp.errors import InvalidRequest
from support import REDIRECT_URI, Browser, RelyingParty, approve_and_exchange, redirect_params


@pytest.fixture
def service(live_server):
    """A confidential client registered as a service account."""
    with live_server.app.app_context(), db.unit_of_work():
        client, secret = create_client("Billing job", [REDIRECT_URI], service_account=True)
    return RelyingParty(live_server.url, client.client_id, secret)


def post(rp: RelyingParty, path: str, data: dict, *, auth: tuple | None = None):
    return requests.post(
        f"{rp.idp_url}{path}",
        data=data,
        auth=auth if auth is not None else (rp.client_id, rp.client_secret),
        timeout=10,
    )


# client_credentials ---------------------------------------------------------------------------


def test_a_service_account_gets_a_token_for_itself(service):
    response = service.token({"grant_type": "client_credentials"})
    assert response.status_code == 200, response.text
    assert response.headers["Cache-Control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert "refresh_token" not in body
    assert "id_token" not in body
    # No user stands behind it: UserInfo has nothing to say.
    info = requests.get(
        f"{service.idp_url}/userinfo",
        headers={"Authorization": f"Bearer {body['access_token']}"},
        timeout=10,
    )
    assert (info.status_code, info.json()["error"]) == (401, "invalid_token")
    assert 'error="invalid_token"' in info.headers["WWW-Authenticate"]


def test_post_authentication_works_too(service):
    response = service.token({"grant_type": "client_credentials"}, auth="post")
    assert response.status_code == 200


def test_an_ordinary_client_is_not_a_service_account(world):
    _, rp, _, _ = world
    response = rp.token({"grant_type": "client_credentials"})
    assert (response.status_code, response.json()["error"]) == (400, "unauthorized_client")


def test_a_wrong_secret_gets_nothing(service):
    service.client_secret = "wrong"
    response = service.token({"grant_type": "client_credentials"})
    assert (response.status_code, response.json()["error"]) == (401, "invalid_client")


def test_a_public_client_cannot_be_a_service_account(app):
    with app.app_context(), pytest.raises(InvalidRequest) as refused:
        create_client("X", [REDIRECT_URI], public=True, service_account=True)
    assert "needs a secret" in refused.value.description


# Introspection --------------------------------------------------------------------------------


def test_introspect_an_access_token_and_a_refresh_token(world):
    _, rp, browser, phone = world
    tokens = approve_and_exchange(rp, browser, phone)
    access = post(rp, "/introspect", {"token": tokens["access_token"]})
    assert access.status_code == 200
    assert access.headers["Cache-Control"] == "no-store"
    body = access.json()
    assert body["active"] is True
    assert body["client_id"] == rp.client_id
    assert body["token_type"] == "Bearer"
    assert body["username"] == "alice"
    assert body["scope"] == "openid profile email"
    assert body["iss"] == rp.idp_url
    assert body["exp"] == body["iat"] + 3600
    assert len(body["sub"]) > 10
    refresh = post(
        rp, "/introspect", {"token": tokens["refresh_token"], "token_type_hint": "refresh_token"}
    ).json()
    assert refresh["active"] is True
    assert refresh["token_type"] == "refresh_token"
    assert refresh["exp"] > time.time() + 29 * 24 * 3600


@pytest.mark.parametrize("token", ["nope", "x" * 600, ""])
def test_unknown_tokens_are_inactive(world, token):
    _, rp, _, _ = world
    response = post(rp, "/introspect", {"token": token})
    assert (response.status_code, response.json()) == (200, {"active": False})


def test_introspection_without_a_token_is_a_bad_request(world):
    _, rp, _, _ = world
    response = post(rp, "/introspect", {})
    assert (response.status_code, response.json()["error"]) == (400, "invalid_request")


def test_another_clients_token_is_inactive_to_me(world, service):
    _, rp, browser, phone = world
    tokens = approve_and_exchange(rp, browser, phone)
    assert post(service, "/introspect", {"token": tokens["access_token"]}).json() == {
        "active": False
    }


def test_introspection_needs_client_authentication(world):
    _, rp, browser, phone = world
    tokens = approve_and_exchange(rp, browser, phone)
    anonymous = requests.post(
        f"{rp.idp_url}/introspect", data={"token": tokens["access_token"]}, timeout=10
    )
    assert (anonymous.status_code, anonymous.json()["error"]) == (401, "invalid_client")
    wrong = post(rp, "/introspect", {"token": tokens["access_token"]}, auth=(rp.client_id, "x"))
    assert wrong.status_code == 401


# Revocation -----------------------------------------------------------------------------------


def userinfo_status(rp: RelyingParty, access_token: str) -> int:
    return requests.get(
        f"{rp.idp_url}/userinfo", headers={"Authorization": f"Bearer {access_token}"}, timeout=10
    ).status_code


def test_revoking_the_access_token_revokes_the_pair(world):
    _, rp, browser, phone = world
    tokens = approve_and_exchange(rp, browser, phone)
    assert userinfo_status(rp, tokens["access_token"]) == 200
    response = post(rp, "/revoke", {"token": tokens["access_token"]})
    assert (response.status_code, response.json()) == (200, {})
    assert userinfo_status(rp, tokens["access_token"]) == 401
    refreshed = rp.token({"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]})
    assert (refreshed.status_code, refreshed.json()["error"]) == (400, "invalid_grant")
    assert post(rp, "/introspect", {"token": tokens["access_token"]}).json() == {"active": False}


def test_revoking_the_refresh_token_revokes_its_access_token(world):
    _, rp, browser, phone = world
    tokens = approve_and_exchange(rp, browser, phone)
    response = post(
        rp, "/revoke", {"token": tokens["refresh_token"], "token_type_hint": "refresh_token"}
    )
    assert response.status_code == 200
    assert userinfo_status(rp, tokens["access_token"]) == 401


def test_revoking_an_unknown_token_is_fine(world):
    _, rp, _, _ = world
    response = post(rp, "/revoke", {"token": "never-issued"})
    assert (response.status_code, response.json()) == (200, {})


def test_a_client_cannot_revoke_another_clients_token(world, service):
    _, rp, browser, phone = world
    tokens = approve_and_exchange(rp, browser, phone)
    response = post(service, "/revoke", {"token": tokens["access_token"]})
    assert (response.status_code, response.json()["error"]) == (400, "invalid_grant")
    assert userinfo_status(rp, tokens["access_token"]) == 200


def test_revocation_needs_client_authentication(world):
    _, rp, browser, phone = world
    tokens = approve_and_exchange(rp, browser, phone)
    response = requests.post(
        f"{rp.idp_url}/revoke", data={"token": tokens["access_token"]}, timeout=10
    )
    assert (response.status_code, response.json()["error"]) == (401, "invalid_client")
    assert userinfo_status(rp, tokens["access_token"]) == 200


def test_discovery_names_the_new_endpoints(world):
    _, rp, _, _ = world
    metadata = requests.get(f"{rp.idp_url}/.well-known/openid-configuration", timeout=10).json()
    assert metadata["revocation_endpoint"] == f"{rp.idp_url}/revoke"
    assert metadata["introspection_endpoint"] == f"{rp.idp_url}/introspect"
    assert "client_credentials" in metadata["grant_types_supported"]
    assert metadata["introspection_endpoint_auth_methods_supported"] == [
        "client_secret_basic",
        "client_secret_post",
    ]


# Replays --------------------------------------------------------------------------------------


def sign_in(rp: RelyingParty, browser, phone) -> tuple[str, dict]:
    """A whole sign-in; returns the code (already exchanged once) and the tokens."""
    page = browser.open(rp.authorize_url())
    phone.approve(phone.scan(page.qr_url)["login_request"]["id"])
    code = redirect_params(browser.complete(page))["code"]
    response = rp.exchange(code)
    assert response.status_code == 200, response.text
    return code, response.json()


def test_oidcc_codereuse_revokes_what_the_code_gave(world):
    """A code used twice: the second use fails, and the tokens of the first are revoked."""
    _, rp, browser, phone = world
    code, tokens = sign_in(rp, browser, phone)
    assert userinfo_status(rp, tokens["access_token"]) == 200
    replay = rp.exchange(code)
    assert (replay.status_code, replay.json()["error"]) == (400, "invalid_grant")
    assert userinfo_status(rp, tokens["access_token"]) == 401
    refreshed = rp.token({"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]})
    assert (refreshed.status_code, refreshed.json()["error"]) == (400, "invalid_grant")


def test_a_replayed_code_revokes_the_refreshed_descendants_too(world):
    _, rp, browser, phone = world
    code, tokens = sign_in(rp, browser, phone)
    newer = rp.token({"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]})
    assert newer.status_code == 200
    assert rp.exchange(code).status_code == 400
    assert userinfo_status(rp, newer.json()["access_token"]) == 401


def test_a_reused_refresh_token_revokes_its_whole_family(world):
    """Refresh rotation with reuse detection: the old refresh token coming back means two
    parties hold the family; neither keeps it."""
    _, rp, browser, phone = world
    _, tokens = sign_in(rp, browser, phone)
    rotated = rp.token({"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]})
    assert rotated.status_code == 200
    fresh = rotated.json()
    assert userinfo_status(rp, fresh["access_token"]) == 200
    reuse = rp.token({"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]})
    assert (reuse.status_code, reuse.json()["error"]) == (400, "invalid_grant")
    assert userinfo_status(rp, fresh["access_token"]) == 401
    again = rp.token({"grant_type": "refresh_token", "refresh_token": fresh["refresh_token"]})
    assert (again.status_code, again.json()["error"]) == (400, "invalid_grant")


def test_a_replay_leaves_other_sign_ins_alone(world):
    live, rp, browser, phone = world
    code, _ = sign_in(rp, browser, phone)
    rp_other = RelyingParty(rp.idp_url, rp.client_id, rp.client_secret)
    _, other = sign_in(rp_other, Browser(live.url), phone)  # another browser: a new scan
    assert rp.exchange(code).status_code == 400
    assert userinfo_status(rp, other["access_token"]) == 200


def test_oidcc_refresh_token_rotation(world):
    """Each refresh answers a new refresh token and retires the one used."""
    _, rp, browser, phone = world
    _, tokens = sign_in(rp, browser, phone)
    first = rp.token({"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]})
    assert first.status_code == 200
    body = first.json()
    assert body["refresh_token"] != tokens["refresh_token"]
    assert body["access_token"] != tokens["access_token"]
    assert userinfo_status(rp, tokens["access_token"]) == 401  # retired with its refresh token
    second = rp.token({"grant_type": "refresh_token", "refresh_token": body["refresh_token"]})
    assert second.status_code == 200
