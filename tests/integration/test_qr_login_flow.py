"""The whole QR sign-in through a live server: page, real WebSocket, phone, RP."""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests

from idp_phone.api import PhoneApiError
from support import (
    Browser,
    Page,
    RelyingParty,
    add_client,
    add_user,
    close_socket,
    enroll_phone,
    next_status,
    redirect_params,
)

# The whole flow runs on the embedded default and on PostgreSQL with the Redis broker.
pytestmark = pytest.mark.parametrize("backend", ["sqlite", "postgres+redis"], indirect=True)


def sign_in(rp, browser, phone):
    """Drive one approval; returns the redirect params."""
    page = browser.open(rp.authorize_url())
    ws = browser.socket(page)
    assert next_status(ws) == "pending"
    view = phone.scan(page.qr_url)["login_request"]
    assert next_status(ws) == "scanned"
    phone.approve(view["id"])
    assert next_status(ws) == "approved"
    close_socket(ws)
    return redirect_params(browser.complete(page))


def half_hash(token: str) -> str:
    digest = hashlib.sha256(token.encode()).digest()
    return base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode()


def test_oidcc_server(world):
    live, rp, browser, phone = world
    page = browser.open(rp.authorize_url())
    assert "Sign in to" in page.response.text and "Test RP" in page.response.text
    assert page.qr_url == f"{live.url}/q/{page.id}"
    assert len(page.id) == 43  # 256 random bits
    cookie = page.response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie

    ws = browser.socket(page)
    assert next_status(ws) == "pending"

    view = phone.scan(page.qr_url)["login_request"]
    assert view["client"] == {
        "client_id": rp.client_id,
        "name": "Test RP",
        "logo_uri": None,
        "redirect_host": "localhost:9999",
    }
    assert [s["name"] for s in view["scopes"]] == ["openid", "profile", "email"]
    assert view["browser"]["ip"] == "127.0.0.1"
    assert view["browser"]["summary"] == "Chrome on Linux"
    assert view["login_hint"] is None
    assert next_status(ws) == "scanned"

    phone.approve(view["id"])
    assert next_status(ws) == "approved"

    params = redirect_params(browser.complete(page))
    assert params["state"] == rp.state
    assert params["iss"] == live.url
    assert set(params) == {"code", "state", "iss"}

    response = rp.exchange(params["code"])
    assert response.status_code == 200, response.text
    assert response.headers["Cache-Control"] == "no-store"
    tokens = response.json()
    assert tokens["token_type"].lower() == "bearer"
    header, claims = rp.verify_id_token(tokens["id_token"])
    jwks_kids = {k["kid"] for k in requests.get(f"{live.url}/jwks", timeout=5).json()["keys"]}
    assert header["alg"] == "RS256" and header["kid"] in jwks_kids
    assert claims["iss"] == live.url
    assert claims["aud"] == rp.client_id
    assert claims["nonce"] == rp.nonce
    assert claims["at_hash"] == half_hash(tokens["access_token"])
    assert claims["amr"] == ["swk", "user"] and claims["acr"]
    assert claims["exp"] > claims["iat"] >= claims["auth_time"]
    assert claims["preferred_username"] == "alice" and claims["email"] == "alice@example.com"

    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    got = requests.get(f"{live.url}/userinfo", headers=bearer, timeout=5).json()
    posted = requests.post(f"{live.url}/userinfo", headers=bearer, timeout=5).json()
    assert got == posted
    assert got["sub"] == claims["sub"]
    assert got["name"] == "Alice Example" and got["email"] == "alice@example.com"


def test_oidcc_refresh_token(world):
    _, rp, browser, phone = world
    tokens = rp.exchange(sign_in(rp, browser, phone)["code"]).json()
    first = tokens["refresh_token"]
    refreshed = rp.token({"grant_type": "refresh_token", "refresh_token": first})
    assert refreshed.status_code == 200, refreshed.text
    assert refreshed.json()["refresh_token"] != first
    reused = rp.token({"grant_type": "refresh_token", "refresh_token": first})
    assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"


def test_oidcc_server_client_secret_post(world):
    _, rp, browser, phone = world
    response = rp.exchange(sign_in(rp, browser, phone)["code"], auth="post")
    assert response.status_code == 200, response.text


def test_wrong_client_secret_refused(world):
    _, rp, browser, phone = world
    code = sign_in(rp, browser, phone)["code"]
    rp.client_secret = "not-the-secret"
    response = rp.exchange(code)
    assert response.status_code == 401 and response.json()["error"] == "invalid_client"


def test_deny_sends_access_denied(world):
    live, rp, browser, phone = world
    page = browser.open(rp.authorize_url())
    ws = browser.socket(page)
    assert next_status(ws) == "pending"
    view = phone.scan(page.qr_url)["login_request"]
    assert next_status(ws) == "scanned"
    assert phone.deny(view["id"])["login_request"]["status"] == "denied"
    assert next_status(ws) == "denied"
    params = redirect_params(browser.complete(page))
    assert (params["error"], params["state"], params["iss"]) == (
        "access_denied",
        rp.state,
        live.url,
    )
    assert "code" not in params
    with pytest.raises(PhoneApiError) as error:
        phone.approve(view["id"])
    assert (error.value.status, error.value.error) == (409, "already_used")


def test_approval_reaches_a_page_that_reconnects_later(world):
    _, rp, browser, phone = world
    page = browser.open(rp.authorize_url())
    ws = browser.socket(page)
    assert next_status(ws) == "pending"
    close_socket(ws)  # the page lost its connection
    view = phone.scan(page.qr_url)["login_request"]
    phone.approve(view["id"])
    ws = browser.socket(page)  # reconnects after the approval happened
    assert next_status(ws) == "approved"
    assert "code" in redirect_params(browser.complete(page))


def test_code_is_single_use(world):
    _, rp, browser, phone = world
    code = sign_in(rp, browser, phone)["code"]
    assert rp.exchange(code).status_code == 200
    again = rp.exchange(code)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"


def test_completion_is_single_use(world):
    _, rp, browser, phone = world
    page = browser.open(rp.authorize_url())
    view = phone.scan(page.qr_url)["login_request"]
    phone.approve(view["id"])
    assert "code" in redirect_params(browser.complete(page))
    again = browser.complete(page)
    assert again.status_code == 409 and "already_used" in again.text


def test_wrong_pkce_verifier_refused(world):
    _, rp, browser, phone = world
    code = sign_in(rp, browser, phone)["code"]
    response = rp.exchange(code, verifier="x" * 50)
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"


def test_expired_code_refused(world):
    live, rp, browser, phone = world
    live.app.config["IDP_CODE_TTL"] = 1
    code = sign_in(rp, browser, phone)["code"]
    import time

    time.sleep(1.2)
    response = rp.exchange(code)
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"


def test_public_client_needs_pkce_and_no_secret(live_server, tmp_path):
    add_user(live_server.app)
    client_id, secret = add_client(live_server.app, public=True, name="SPA")
    assert secret is None
    rp = RelyingParty(live_server.url, client_id, None)
    browser = Browser(live_server.url)
    without_pkce = browser.session.get(
        rp.authorize_url(code_challenge=None, code_challenge_method=None), allow_redirects=False
    )
    params = redirect_params(without_pkce)
    assert params["error"] == "invalid_request" and "PKCE" in params["error_description"]

    phone = enroll_phone(live_server.url, tmp_path / "phone")
    code = sign_in(rp, browser, phone)["code"]
    response = rp.exchange(code, auth="none")
    assert response.status_code == 200, response.text
    assert "id_token" in response.json()


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"code_challenge_method": None}, "invalid_request"),
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"scope": "openid", "prompt": "none"}, "login_required"),
        ({"request": "eyJhbGciOiJub25lIn0.e30."}, "request_not_supported"),
        ({"request_uri": "https://rp.example/request.jwt"}, "request_uri_not_supported"),
        ({"max_age": "soon"}, "invalid_request"),
    ],
)
def test_bad_authorization_requests_go_back_to_the_rp(world, overrides, error):
    live, rp, browser, _ = world
    response = browser.session.get(rp.authorize_url(**overrides), allow_redirects=False)
    params = redirect_params(response)
    assert params["error"] == error
    assert params["state"] == rp.state and params["iss"] == live.url


@pytest.mark.parametrize(
    "overrides",
    [
        {"redirect_uri": "http://localhost:9999/other"},
        {"redirect_uri": "https://evil.example/callback"},
        {"client_id": "no-such-client"},
        {"client_id": None},
    ],
)
def test_oidcc_ensure_registered_redirect_uri(world, overrides):
    _, rp, browser, _ = world
    response = browser.session.get(rp.authorize_url(**overrides), allow_redirects=False)
    assert response.status_code == 400
    assert "Location" not in response.headers
    assert "Sign-in problem" in response.text


def test_unknown_parameters_are_ignored(world):
    _, rp, browser, phone = world
    page = browser.open(rp.authorize_url(unknown_param="whatever"))
    view = phone.scan(page.qr_url)["login_request"]
    phone.approve(view["id"])
    assert "code" in redirect_params(browser.complete(page))


def test_oidcc_login_hint(world):
    """A login_hint that names no account is not shown and refuses nothing; the phone's
    own account signs in (tests/integration/test_passer_by.py has the other hints)."""
    _, rp, browser, phone = world
    page = browser.open(rp.authorize_url(login_hint="mallory@example.com"))
    view = phone.scan(page.qr_url)["login_request"]
    assert view["login_hint"] is None
    phone.approve(view["id"])
    tokens = rp.exchange(redirect_params(browser.complete(page))["code"]).json()
    _, claims = rp.verify_id_token(tokens["id_token"])
    assert claims["preferred_username"] == "alice"


def post_authorize(browser: Browser, live_url: str, rp: RelyingParty, **extra: str):
    """The authorization request as a form POST (OIDC Core §3.1.2.1)."""
    form = dict(parse_qsl(urlsplit(rp.authorize_url(**extra)).query))
    return browser.session.post(
        f"{live_url}/authorize", data=form, allow_redirects=False, timeout=10
    )


def test_oidcc_ensure_post_request_succeeds(world):
    live, rp, browser, phone = world
    response = post_authorize(browser, live.url, rp)
    assert response.status_code == 200
    state = json.loads(html.unescape(re.search(r'data-state="([^"]*)"', response.text).group(1)))
    page = Page(state, response)
    phone.approve(phone.scan(page.qr_url)["login_request"]["id"])
    params = redirect_params(browser.complete(page))
    assert params["state"] == rp.state
    assert rp.exchange(params["code"]).status_code == 200


def test_prompt_none_by_post_without_a_session(world):
    live, rp, browser, _ = world
    response = post_authorize(browser, live.url, rp, prompt="none")
    assert redirect_params(response)["error"] == "login_required"
