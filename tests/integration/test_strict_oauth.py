"""Strict OAuth details that browser apps and careful RPs meet: public clients revoke
their own tokens (RFC 7009 §2.1), a failed Basic attempt is final (RFC 6749 §5.2),
UserInfo without a token is a bare challenge (RFC 6750 §3.1), and ``idp clients create
--id-token-alg ES256`` signs that client's ID tokens with ES256. On both backends."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from idp.admin.services import create_client
from support import (
    REDIRECT_URI,
    Browser,
    RelyingParty,
    add_client,
    approve_and_exchange,
    redirect_params,
)


@pytest.fixture
def public(world):
    """(the world's confidential RP, a public client's RP on the same browser and phone)."""
    live, rp, browser, phone = world
    client_id, _ = add_client(live.app, public=True, name="SPA")
    return rp, RelyingParty(live.url, client_id, None), browser, phone


def public_sign_in(rp: RelyingParty, browser: Browser, phone) -> dict:
    page = browser.open(rp.authorize_url())
    phone.approve(phone.scan(page.qr_url)["login_request"]["id"])
    response = rp.exchange(redirect_params(browser.complete(page))["code"], auth="none")
    assert response.status_code == 200, response.text
    return response.json()


def revoke(rp: RelyingParty, data: dict, **kwargs) -> requests.Response:
    return requests.post(f"{rp.idp_url}/revoke", data=data, timeout=10, **kwargs)


def userinfo(rp: RelyingParty, access_token: str) -> requests.Response:
    return requests.get(
        f"{rp.idp_url}/userinfo", headers={"Authorization": f"Bearer {access_token}"}, timeout=10
    )


# Public clients revoke their own tokens --------------------------------------------------------


@pytest.mark.parametrize("kind", ["access_token", "refresh_token"])
def test_a_public_client_revokes_its_own_tokens(public, kind):
    _, spa, browser, phone = public
    tokens = public_sign_in(spa, browser, phone)
    response = revoke(spa, {"token": tokens[kind], "client_id": spa.client_id})
    assert (response.status_code, response.json()) == (200, {})
    assert response.headers["Cache-Control"] == "no-store"
    assert userinfo(spa, tokens["access_token"]).status_code == 401
    refreshed = spa.token(
        {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}, auth="none"
    )
    assert (refreshed.status_code, refreshed.json()["error"]) == (400, "invalid_grant")


def test_a_public_client_cannot_revoke_another_clients_token(public):
    rp, spa, browser, phone = public
    tokens = approve_and_exchange(rp, browser, phone)
    response = revoke(spa, {"token": tokens["access_token"], "client_id": spa.client_id})
    assert (response.status_code, response.json()["error"]) == (400, "invalid_grant")
    assert userinfo(rp, tokens["access_token"]).status_code == 200


def test_a_confidential_client_still_needs_its_secret_to_revoke(public):
    rp, _, browser, phone = public
    tokens = approve_and_exchange(rp, browser, phone)
    response = revoke(rp, {"token": tokens["access_token"], "client_id": rp.client_id})
    assert (response.status_code, response.json()["error"]) == (401, "invalid_client")
    assert userinfo(rp, tokens["access_token"]).status_code == 200


def test_discovery_says_public_clients_may_revoke(world):
    live, _, _, _ = world
    metadata = requests.get(f"{live.url}/.well-known/openid-configuration", timeout=10).json()
    assert metadata["revocation_endpoint_auth_methods_supported"] == [
        "client_secret_basic",
        "client_secret_post",
        "none",
    ]
    assert metadata["introspection_endpoint_auth_methods_supported"] == [
        "client_secret_basic",
        "client_secret_post",
    ]


# A failed Basic attempt is final ---------------------------------------------------------------


def basic(value: str) -> str:
    return "Basic " + base64.b64encode(value.encode()).decode()


def failed_basic_headers(rp: RelyingParty, spa: RelyingParty) -> list[str]:
    return [
        basic(f"{rp.client_id}:wrong-secret"),  # a confidential client, wrong secret
        basic(f"{spa.client_id}:anything"),  # the public client itself, with a "secret"
        basic(f"{spa.client_id}:"),  # the public client, empty password
        basic("nobody:x"),  # an unknown client
        "Basic !!!not-base64",
    ]


def test_a_failed_basic_attempt_gets_401_even_naming_a_public_client(public):
    rp, spa, browser, phone = public
    for header in failed_basic_headers(rp, spa):
        spa = RelyingParty(spa.idp_url, spa.client_id, None)  # a new nonce and verifier
        page = browser.open(spa.authorize_url(prompt="login"))  # a new scan, not SSO
        phone.approve(phone.scan(page.qr_url)["login_request"]["id"])
        code = redirect_params(browser.complete(page))["code"]
        data = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": spa.verifier,
            "client_id": spa.client_id,
        }
        response = requests.post(
            f"{spa.idp_url}/token", data=data, headers={"Authorization": header}, timeout=10
        )
        assert (response.status_code, response.json()["error"]) == (401, "invalid_client"), header
        assert response.headers["WWW-Authenticate"].startswith("Basic "), header
        assert "access_token" not in response.json()
        # Without the failed attempt the same code still works: nothing was used up.
        good = spa.exchange(code, auth="none")
        assert good.status_code == 200, (header, good.text)


def test_a_failed_basic_attempt_at_revocation_is_401_too(public):
    rp, spa, browser, phone = public
    tokens = public_sign_in(spa, browser, phone)
    for header in failed_basic_headers(rp, spa):
        response = revoke(
            spa,
            {"token": tokens["access_token"], "client_id": spa.client_id},
            headers={"Authorization": header},
        )
        assert (response.status_code, response.json()["error"]) == (401, "invalid_client"), header
    assert userinfo(spa, tokens["access_token"]).status_code == 200


# UserInfo without a token: a bare challenge ------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "headers", "data"),
    [
        ("GET", {}, None),
        ("POST", {}, None),
        ("POST", {}, {"unrelated": "x"}),
        ("GET", {"Authorization": basic("someone:secret")}, None),  # not a Bearer attempt
    ],
    ids=["get", "post", "post-form-without-token", "basic-scheme"],
)
def test_userinfo_without_a_token_is_a_bare_bearer_challenge(world, method, headers, data):
    live, _, _, _ = world
    response = requests.request(
        method, f"{live.url}/userinfo", headers=headers, data=data, timeout=10
    )
    assert response.status_code == 401
    # RFC 6750 §3.1: no token at all, so no error code and no error information.
    assert response.headers["WWW-Authenticate"] == f'Bearer realm="{live.url}"'
    assert response.json() == {}
    assert response.headers["Cache-Control"] == "no-store"


def test_userinfo_with_a_bad_token_says_invalid_token(world):
    live, _, _, _ = world
    response = userinfo(RelyingParty(live.url, "x", None), "not-a-token")
    assert (response.status_code, response.json()["error"]) == (401, "invalid_token")
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith(f'Bearer realm="{live.url}", error="invalid_token"')


# idp clients create --id-token-alg ES256 --------------------------------------------------------


def run_idp(live, tmp_path: Path, *args: str) -> str:
    """The ``idp`` command an admin runs, against the live server's database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}
    env |= {
        "IDP_DATABASE_URL": live.app.config["IDP_DATABASE_URL"],
        "IDP_ISSUER": live.url,
        "IDP_SECRET_KEY": "test-secret-key",
        "IDP_INSTANCE_PATH": str(tmp_path / "cli-instance"),
    }
    result = subprocess.run(
        [str(Path(sys.executable).parent / "idp"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, (result.stdout, result.stderr)
    return result.stdout


@pytest.mark.parametrize("alg", ["ES256", "RS256"])
def test_clients_create_id_token_alg_signs_that_clients_id_tokens(world, tmp_path, alg):
    live, _, browser, phone = world
    created = json.loads(
        run_idp(
            live,
            tmp_path,
            "clients",
            "create",
            "--name",
            "EC RP",
            "--redirect-uri",
            REDIRECT_URI,
            "--id-token-alg",
            alg,
            "--json",
        )
    )
    rp = RelyingParty(live.url, created["client_id"], created["client_secret"])
    tokens = approve_and_exchange(rp, browser, phone)
    header, claims = rp.verify_id_token(tokens["id_token"])  # signature checked with the JWKS
    assert header["alg"] == alg
    jwks = requests.get(f"{live.url}/jwks", timeout=10).json()["keys"]
    assert {k["kty"] for k in jwks if k["kid"] == header["kid"]} == {
        "EC" if alg == "ES256" else "RSA"
    }
    assert claims["aud"] == rp.client_id


def test_the_default_id_token_alg_is_rs256(app):
    with app.app_context():
        client, _ = create_client("X", [REDIRECT_URI])
    assert client.id_token_signed_response_alg == "RS256"
