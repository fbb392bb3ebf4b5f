"""The IdP's browser session: single sign-on after a QR sign-in, one approval for one
site (IDP_SSO_SCOPE), prompt=none / login, max_age, id_token_hint, and RP-initiated
logout (both backends). Test names follow the OpenID Foundation's Basic OP plan where
one applies."""

from __future__ import annotations

import secrets
import time
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import select, update

from idp import db
from idp.admin.services import create_client
from idp.db import utcnow
from idp.sso.models import BrowserSession, BrowserSessionClient
from support import REDIRECT_URI, RelyingParty, add_user, enroll_phone, redirect_params

LOGOUT_URI = "http://localhost:9999/signed-out"


def sign_in(rp: RelyingParty, browser, phone, **extra: str) -> dict:
    """A QR sign-in in this browser; returns the ID token's claims and the tokens."""
    page = browser.open(rp.authorize_url(**extra))
    phone.approve(phone.scan(page.qr_url)["login_request"]["id"])
    response = browser.complete(page)
    tokens = rp.exchange(redirect_params(response)["code"]).json()
    return {
        "response": response,
        "tokens": tokens,
        "claims": rp.verify_id_token(tokens["id_token"])[1],
    }


@pytest.fixture
def second_rp(world):
    live, _, _, _ = world
    with live.app.app_context(), db.unit_of_work():
        client, secret = create_client(
            "Second RP", [REDIRECT_URI], post_logout_redirect_uris=[LOGOUT_URI]
        )
    return RelyingParty(live.url, client.client_id, secret)


def authorize(browser, rp: RelyingParty, **extra: str):
    """An authorization request as a new one (a fresh state and nonce: a nonce already
    used for a code would be refused as a replay)."""
    rp.state, rp.nonce = secrets.token_urlsafe(12), secrets.token_urlsafe(12)
    return browser.session.get(rp.authorize_url(**extra), allow_redirects=False, timeout=10)


def test_the_session_cookie(world):
    _, rp, browser, phone = world
    first = sign_in(rp, browser, phone)
    cookie = first["response"].headers["Set-Cookie"]
    assert cookie.startswith("idp_sso=")
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert "Path=/" in cookie


def is_qr_page(response) -> bool:
    """The authorize page with a QR code to scan (not a redirect to the site)."""
    return response.status_code == 200 and 'data-state="' in response.text


def approved_clients(live) -> dict[int, tuple[bool, set[str]]]:
    """Each session's id: (still live, the clients approved in it)."""
    with live.app.app_context():
        sessions = db.session.scalars(select(BrowserSession)).all()
        rows = db.session.scalars(select(BrowserSessionClient)).all()
        return {
            s.id: (s.ended_at is None, {r.client_id for r in rows if r.session_id == s.id})
            for s in sessions
        }


def test_a_second_site_needs_a_new_scan(world, second_rp):
    """One approval, one site (IDP_SSO_SCOPE=per_client, the default): the session made
    by the scan for the first site answers it alone."""
    live, rp, browser, phone = world
    sign_in(rp, browser, phone)
    assert is_qr_page(authorize(browser, second_rp))
    refused = redirect_params(authorize(browser, second_rp, prompt="none"))
    assert refused["error"] == "login_required"
    assert refused["state"] == second_rp.state
    assert "code" not in refused
    again = redirect_params(authorize(browser, rp))  # the first site: still silent
    assert rp.exchange(again["code"]).status_code == 200
    assert list(approved_clients(live).values()) == [(True, {rp.client_id})]


def test_after_the_scan_for_the_second_site_both_are_silent(world, second_rp):
    live, rp, browser, phone = world
    first = sign_in(rp, browser, phone)
    second = sign_in(second_rp, browser, phone)  # the QR page, a scan, an approval
    assert second["claims"]["sub"] == first["claims"]["sub"]
    for site in (rp, second_rp):
        params = redirect_params(authorize(browser, site, prompt="none"))
        assert site.exchange(params["code"]).status_code == 200
    sessions = approved_clients(live)
    # The first session ended; its client lives on in the new one, with the new one's.
    assert sorted(sessions.values()) == [
        (False, {rp.client_id}),
        (True, {rp.client_id, second_rp.client_id}),
    ]


def test_another_users_sign_in_carries_nothing_of_the_first_users_clients(
    world, second_rp, tmp_path
):
    live, rp, browser, phone = world
    add_user(live.app, "bob")
    bobs_phone = enroll_phone(live.url, tmp_path / "bob", "bob")
    alice = sign_in(rp, browser, phone)
    bob = sign_in(second_rp, browser, bobs_phone)  # bob approves in alice's browser
    assert bob["claims"]["sub"] != alice["claims"]["sub"]
    refused = redirect_params(authorize(browser, rp, prompt="none"))
    assert refused["error"] == "login_required"  # neither as alice nor as bob
    silent = redirect_params(authorize(browser, second_rp, prompt="none"))
    tokens = second_rp.exchange(silent["code"]).json()
    assert second_rp.verify_id_token(tokens["id_token"])[1]["sub"] == bob["claims"]["sub"]
    live_sessions = [clients for alive, clients in approved_clients(live).values() if alive]
    assert live_sessions == [{second_rp.client_id}]


def test_an_ended_session_carries_nothing(world, second_rp):
    """The browser still sends the cookie of a session that ended (here: expired): the
    next sign-in keeps none of its clients."""
    live, rp, browser, phone = world
    sign_in(rp, browser, phone)
    with live.app.app_context():
        db.session.execute(update(BrowserSession).values(expires_at=utcnow()))
        db.session.commit()
    sign_in(second_rp, browser, phone)
    refused = redirect_params(authorize(browser, rp, prompt="none"))
    assert refused["error"] == "login_required"
    assert "code" in redirect_params(authorize(browser, second_rp, prompt="none"))


@pytest.mark.idp_config(IDP_SSO_SCOPE="all")
def test_with_sso_scope_all_a_second_site_signs_in_without_a_scan(world, second_rp):
    _, rp, browser, phone = world
    first = sign_in(rp, browser, phone)
    response = authorize(browser, second_rp)
    params = redirect_params(response)  # straight back to the site: no QR page
    assert params["state"] == second_rp.state
    assert params["iss"] == second_rp.idp_url
    tokens = second_rp.exchange(params["code"]).json()
    _, claims = second_rp.verify_id_token(tokens["id_token"])
    assert claims["sub"] == first["claims"]["sub"]
    assert claims["aud"] == second_rp.client_id
    assert claims["auth_time"] == first["claims"]["auth_time"]  # honest: the scan's time
    assert claims["nonce"] == second_rp.nonce
    assert "code" in redirect_params(authorize(browser, second_rp, prompt="none"))


def test_oidcc_prompt_none_logged_in(world):
    _, rp, browser, phone = world
    sign_in(rp, browser, phone)
    params = redirect_params(authorize(browser, rp, prompt="none"))
    assert "code" in params


def test_oidcc_prompt_none_not_logged_in(world):
    _, rp, browser, _ = world
    params = redirect_params(authorize(browser, rp, prompt="none"))
    assert params["error"] == "login_required"
    assert params["state"] == rp.state


def test_oidcc_prompt_login_asks_for_a_new_scan(world):
    _, rp, browser, phone = world
    first = sign_in(rp, browser, phone)
    time.sleep(1.1)  # auth_time has a one-second resolution
    response = authorize(browser, rp, prompt="login")
    assert response.status_code == 200  # the QR page
    again = sign_in(rp, browser, phone, prompt="login")
    assert again["claims"]["auth_time"] > first["claims"]["auth_time"]


def test_oidcc_max_age_1(world):
    """A sign-in older than max_age seconds needs a new scan; auth_time is then fresh."""
    live, rp, browser, phone = world
    first = sign_in(rp, browser, phone)
    with live.app.app_context():
        db.session.execute(update(BrowserSession).values(auth_time=utcnow() - timedelta(seconds=5)))
        db.session.commit()
    assert authorize(browser, rp, max_age="1").status_code == 200  # the QR page
    silent = redirect_params(authorize(browser, rp, max_age="1", prompt="none"))
    assert silent["error"] == "login_required"
    later = RelyingParty(rp.idp_url, rp.client_id, rp.client_secret)
    fresh = sign_in(later, browser, phone, max_age="1")
    assert fresh["claims"]["auth_time"] >= first["claims"]["auth_time"]
    assert abs(fresh["claims"]["auth_time"] - time.time()) < 30


def test_oidcc_max_age_10000(world):
    _, rp, browser, phone = world
    sign_in(rp, browser, phone)
    assert "code" in redirect_params(authorize(browser, rp, max_age="10000"))


@pytest.mark.parametrize("max_age", ["-1", "1.5", "ten", "١٢"])
def test_a_malformed_max_age_is_an_invalid_request(world, max_age):
    _, rp, browser, _ = world
    params = redirect_params(authorize(browser, rp, max_age=max_age))
    assert params["error"] == "invalid_request"


def test_a_max_age_too_long_for_a_number_is_an_invalid_request_with_a_session(world):
    """The session decision reads max_age before the grant refuses it: a value with more
    digits than Python converts is no number there either (it was a 500)."""
    _, rp, browser, phone = world
    sign_in(rp, browser, phone)
    params = redirect_params(authorize(browser, rp, max_age="9" * 5000))
    assert params["error"] == "invalid_request"


def test_oidcc_id_token_hint(world):
    """A hint naming the signed-in user: silent sign-in; naming nobody we know: not."""
    _, rp, browser, phone = world
    first = sign_in(rp, browser, phone)
    hint = first["tokens"]["id_token"]
    assert "code" in redirect_params(authorize(browser, rp, prompt="none", id_token_hint=hint))
    forged = hint[:-4] + ("AAAA" if not hint.endswith("AAAA") else "BBBB")
    refused = redirect_params(authorize(browser, rp, prompt="none", id_token_hint=forged))
    assert refused["error"] == "login_required"


def test_a_revoked_phone_ends_its_sessions(world):
    live, rp, browser, phone = world
    sign_in(rp, browser, phone)
    with live.app.app_context():
        from idp import db
        from idp.mobile.services import revoke_device

        revoke_device(phone.profile.device_id)
        db.session.commit()
    assert redirect_params(authorize(browser, rp, prompt="none"))["error"] == "login_required"


@pytest.mark.idp_config(IDP_SESSION_TTL=1)
def test_a_session_ends_with_its_lifetime(world):
    _, rp, browser, phone = world
    sign_in(rp, browser, phone)
    time.sleep(1.5)
    assert redirect_params(authorize(browser, rp, prompt="none"))["error"] == "login_required"


def test_another_browser_has_no_session(world):
    live, rp, browser, phone = world
    sign_in(rp, browser, phone)
    from support import Browser

    other = Browser(live.url)
    assert redirect_params(authorize(other, rp, prompt="none"))["error"] == "login_required"


# RP-initiated logout --------------------------------------------------------------------------


def logout(browser, **params: str):
    return browser.session.get(
        f"{browser.idp_url}/logout", params=params, allow_redirects=False, timeout=10
    )


def test_logout_with_a_hint_goes_back_to_the_site(world, second_rp):
    _, _, browser, phone = world
    signed = sign_in(second_rp, browser, phone)
    response = logout(
        browser,
        id_token_hint=signed["tokens"]["id_token"],
        post_logout_redirect_uri=LOGOUT_URI,
        state="bye-1",
    )
    assert response.status_code == 302
    target = urlsplit(response.headers["Location"])
    assert f"{target.scheme}://{target.netloc}{target.path}" == LOGOUT_URI
    assert parse_qs(target.query) == {"state": ["bye-1"]}
    assert "idp_sso=;" in response.headers["Set-Cookie"]
    assert (
        redirect_params(authorize(browser, second_rp, prompt="none"))["error"] == "login_required"
    )


def test_logout_refuses_an_unregistered_return_address(world, second_rp):
    _, _, browser, phone = world
    signed = sign_in(second_rp, browser, phone)
    response = logout(
        browser,
        id_token_hint=signed["tokens"]["id_token"],
        post_logout_redirect_uri="https://evil.example/",
    )
    assert response.status_code == 400
    assert "not registered" in response.text
    assert "code" in redirect_params(authorize(browser, second_rp, prompt="none"))  # still in


def test_logout_without_a_hint_asks_first(world):
    _, rp, browser, phone = world
    sign_in(rp, browser, phone)
    page = logout(browser)
    assert page.status_code == 200
    assert "Sign out of QR-IdP?" in page.text
    token = page.text.split('name="logout_token" value="')[1].split('"')[0]
    # Still signed in: a GET alone (a link on another site) signs nobody out.
    assert "code" in redirect_params(authorize(browser, rp, prompt="none"))
    forged = browser.session.post(
        f"{browser.idp_url}/logout", data={"logout_token": "x"}, timeout=10
    )
    assert forged.status_code == 400
    done = browser.session.post(
        f"{browser.idp_url}/logout", data={"logout_token": token}, timeout=10
    )
    assert done.status_code == 200
    assert "You are signed out" in done.text
    later = RelyingParty(rp.idp_url, rp.client_id, rp.client_secret)
    assert redirect_params(authorize(browser, later, prompt="none"))["error"] == "login_required"


def test_logout_when_not_signed_in(world):
    _, _, browser, _ = world
    response = logout(browser)
    assert response.status_code == 200
    assert "You are signed out" in response.text


def test_discovery_names_the_session_endpoints(world):
    import requests

    live, _, _, _ = world
    metadata = requests.get(f"{live.url}/.well-known/openid-configuration", timeout=10).json()
    assert metadata["end_session_endpoint"] == f"{live.url}/logout"
    assert metadata["prompt_values_supported"] == ["none", "login"]


def test_a_nonce_already_used_for_a_code_is_refused(world, second_rp):
    """An authorization request replayed as it was (same nonce) gets no second code."""
    _, rp, browser, phone = world
    sign_in(rp, browser, phone)
    replay = browser.session.get(rp.authorize_url(), allow_redirects=False, timeout=10)
    params = redirect_params(replay)
    assert params["error"] == "invalid_request"
    assert "code" not in params
