"""The OpenID Foundation's Basic OP certification plan, module by module, against a live
IdP with a real QR sign-in: each test is named after the module it stands for.

Modules tested elsewhere under their names: oidcc-server, oidcc-server-client-secret-post,
oidcc-ensure-registered-redirect-uri, oidcc-login-hint, oidcc-ensure-post-request-succeeds,
oidcc-refresh-token (test_qr_login_flow.py); oidcc-prompt-none-logged-in,
oidcc-prompt-none-not-logged-in, oidcc-prompt-login, oidcc-max-age-1, oidcc-max-age-10000,
oidcc-id-token-hint (test_single_sign_on.py); oidcc-codereuse (test_token_management.py).
"""

from __future__ import annotations

import base64
import json
import time

import requests

from support import Browser, RelyingParty, redirect_params


def sign_in(world, **overrides: str | None) -> tuple[dict, dict, Browser]:
    """A whole QR sign-in with these authorization parameters: the token response, the
    verified ID token's claims, and the browser."""
    _, rp, browser, phone = world
    page = browser.open(rp.authorize_url(**overrides))
    phone.approve(phone.scan(page.qr_url)["login_request"]["id"])
    params = redirect_params(browser.complete(page))
    response = rp.exchange(params["code"])
    assert response.status_code == 200, response.text
    tokens = response.json()
    _, claims = rp.verify_id_token(tokens["id_token"])
    return tokens, claims, browser


def userinfo(rp: RelyingParty, access_token: str) -> dict:
    response = requests.get(
        f"{rp.idp_url}/userinfo", headers={"Authorization": f"Bearer {access_token}"}, timeout=5
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_oidcc_response_type_missing(world):
    live, rp, browser, _ = world
    response = browser.session.get(rp.authorize_url(response_type=None), allow_redirects=False)
    params = redirect_params(response)
    assert params["error"] == "unsupported_response_type"
    assert params["state"] == rp.state and params["iss"] == live.url


def test_oidcc_userinfo_get(world):
    _, rp, _, _ = world
    tokens, claims, _ = sign_in(world)
    assert userinfo(rp, tokens["access_token"])["sub"] == claims["sub"]


def test_oidcc_userinfo_post_header(world):
    live, _, _, _ = world
    tokens, claims, _ = sign_in(world)
    response = requests.post(
        f"{live.url}/userinfo",
        headers={"Authorization": f"Bearer {tokens['access_token']}"},
        timeout=5,
    )
    assert response.status_code == 200 and response.json()["sub"] == claims["sub"]


def test_oidcc_userinfo_post_body(world):
    """RFC 6750 §2.2: the access token as a form field of a POST."""
    live, _, _, _ = world
    tokens, claims, _ = sign_in(world)
    response = requests.post(
        f"{live.url}/userinfo", data={"access_token": tokens["access_token"]}, timeout=5
    )
    assert response.status_code == 200, response.text
    assert response.json()["sub"] == claims["sub"]


def test_oidcc_ensure_request_without_nonce_succeeds_for_code_flow(world):
    _, claims, _ = sign_in(world, nonce=None)
    assert "nonce" not in claims


def test_oidcc_scope_profile(world):
    _, rp, _, _ = world
    tokens, claims, _ = sign_in(world, scope="openid profile")
    info = userinfo(rp, tokens["access_token"])
    assert info["name"] == "Alice Example" and info["preferred_username"] == "alice"
    assert "email" not in info and "email" not in claims
    assert tokens["scope"] == "openid profile"


def test_oidcc_scope_email(world):
    _, rp, _, _ = world
    tokens, _, _ = sign_in(world, scope="openid email")
    info = userinfo(rp, tokens["access_token"])
    assert info["email"] == "alice@example.com" and info["email_verified"] is False
    assert "name" not in info


def test_oidcc_scope_address(world):
    """address is not offered (not in scopes_supported): it is ignored, not an error
    (OIDC Core §3.1.2.1), and the token response names the scope granted."""
    _, rp, _, _ = world
    tokens, _, _ = sign_in(world, scope="openid address")
    assert tokens["scope"] == "openid"
    assert set(userinfo(rp, tokens["access_token"])) == {"sub"}


def test_oidcc_scope_phone(world):
    _, rp, _, _ = world
    tokens, _, _ = sign_in(world, scope="openid phone")
    assert tokens["scope"] == "openid"
    assert "phone_number" not in userinfo(rp, tokens["access_token"])


def test_oidcc_scope_all(world):
    _, rp, _, _ = world
    tokens, _, _ = sign_in(world, scope="openid profile email address phone")
    assert tokens["scope"] == "openid profile email"
    info = userinfo(rp, tokens["access_token"])
    assert info["name"] == "Alice Example" and info["email"] == "alice@example.com"


def test_unknown_scopes_are_not_shown_on_the_phone(world):
    _, rp, browser, phone = world
    page = browser.open(rp.authorize_url(scope="address openid phone email"))
    view = phone.scan(page.qr_url)["login_request"]
    assert [s["name"] for s in view["scopes"]] == ["openid", "email"]


def test_oidcc_ensure_other_scope_order_succeeds(world):
    _, rp, _, _ = world
    tokens, _, _ = sign_in(world, scope="email profile openid")
    assert set(tokens["scope"].split()) == {"openid", "profile", "email"}
    assert userinfo(rp, tokens["access_token"])["email"] == "alice@example.com"


def test_oidcc_display_page(world):
    sign_in(world, display="page")


def test_oidcc_display_popup(world):
    sign_in(world, display="popup")


def test_oidcc_ui_locales(world):
    """ui_locales is honoured where we have the language (zh-CN), accepted otherwise."""
    _, rp, browser, _ = world
    chinese = browser.open(rp.authorize_url(ui_locales="zh-CN"))
    assert '<html lang="zh-CN">' in chinese.response.text
    sign_in(world, ui_locales="se")


def test_oidcc_claims_locales(world):
    sign_in(world, claims_locales="se")


def test_oidcc_ensure_request_with_acr_values_succeeds(world):
    _, claims, _ = sign_in(world, acr_values="1 2")
    assert claims["acr"]  # the acr this IdP gives (a phone's key and its user's approval)


def test_oidcc_unsigned_request_object_supported_correctly_or_rejected_as_unsupported(world):
    """Request objects are rejected as unsupported (OIDC Core §6.1), never half-used."""
    live, rp, browser, _ = world
    header = _b64(json.dumps({"alg": "none"}))
    body = _b64(json.dumps({"iss": rp.client_id, "aud": live.url, "scope": "openid"}))
    response = browser.session.get(
        rp.authorize_url(request=f"{header}.{body}."), allow_redirects=False
    )
    params = redirect_params(response)
    assert params["error"] == "request_not_supported" and params["state"] == rp.state


def test_oidcc_claims_essential(world):
    """claims_parameter_supported is false: the parameter is ignored and sign-in works."""
    claims_request = json.dumps({"userinfo": {"name": {"essential": True}}})
    _, rp, _, _ = world
    tokens, _, _ = sign_in(world, claims=claims_request)
    assert userinfo(rp, tokens["access_token"])["name"] == "Alice Example"


def test_oidcc_ensure_request_with_valid_pkce_succeeds(world):
    tokens, claims, _ = sign_in(world)
    assert tokens["access_token"] and claims["exp"] > time.time()


def test_discovery_describes_what_the_plan_checks(world):
    live, _, _, _ = world
    metadata = requests.get(f"{live.url}/.well-known/openid-configuration", timeout=5).json()
    assert metadata["issuer"] == live.url
    assert metadata["response_types_supported"] == ["code"]
    assert metadata["claims_parameter_supported"] is False
    assert metadata["request_parameter_supported"] is False
    assert set(metadata["scopes_supported"]) == {"openid", "profile", "email"}
    assert metadata["code_challenge_methods_supported"] == ["S256"]


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()
