"""CORS for browser apps on other origins: discovery and JWKS answer anyone; token,
UserInfo and revocation answer only origins registered for the client concerned; no
other endpoint ever answers CORS. On both backends."""

from __future__ import annotations

import pytest
import requests

from idp import db
from idp.admin.services import create_client
from support import REDIRECT_URI, Browser, RelyingParty, add_user, enroll_phone, redirect_params

#: The SPA's redirect URI is REDIRECT_URI, so its derived origin is this one...
DERIVED = "http://localhost:9999"
#: ... and it registered this one with --web-origin.
REGISTERED = "https://spa.example"
#: Registered, but for another client.
OTHERS = "https://other.example"
UNKNOWN = "https://evil.example"


@pytest.fixture
def spa(live_server, tmp_path):
    """(public SPA client, browser, enrolled phone), and another client on OTHERS."""
    add_user(live_server.app, "alice")
    with live_server.app.app_context(), db.unit_of_work():
        client, _ = create_client("SPA", [REDIRECT_URI], public=True, web_origins=[REGISTERED])
        create_client("Other", [f"{OTHERS}/cb"], public=True)
    rp = RelyingParty(live_server.url, client.client_id, None)
    return rp, Browser(live_server.url), enroll_phone(live_server.url, tmp_path / "phone")


def sign_in(rp: RelyingParty, browser: Browser, phone) -> str:
    """A whole QR sign-in up to the code."""
    page = browser.open(rp.authorize_url())
    phone.approve(phone.scan(page.qr_url)["login_request"]["id"])
    return redirect_params(browser.complete(page))["code"]


def exchange(rp: RelyingParty, code: str, origin: str) -> requests.Response:
    """What oidc-client-ts sends: a form POST with the client_id, from its page's origin."""
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": rp.redirect_uri,
        "code_verifier": rp.verifier,
        "client_id": rp.client_id,
    }
    return requests.post(f"{rp.idp_url}/token", data=data, headers={"Origin": origin}, timeout=10)


def preflight(url: str, origin: str, method: str, headers: str = "") -> requests.Response:
    asked = {"Origin": origin, "Access-Control-Request-Method": method}
    if headers:
        asked["Access-Control-Request-Headers"] = headers
    return requests.options(url, headers=asked, timeout=10)


def assert_no_cors(response: requests.Response) -> None:
    cors = {k for k in response.headers if k.lower().startswith("access-control-")}
    assert cors == set(), response.headers


def assert_allows(response: requests.Response, origin: str) -> None:
    assert response.headers["Access-Control-Allow-Origin"] == origin
    assert "Origin" in response.headers["Vary"]
    assert "Access-Control-Allow-Credentials" not in response.headers


# Discovery and JWKS: public documents --------------------------------------------------------


@pytest.mark.parametrize("path", ["/.well-known/openid-configuration", "/jwks"])
def test_public_documents_answer_every_origin_without_credentials(live_server, path):
    response = requests.get(live_server.url + path, headers={"Origin": UNKNOWN}, timeout=10)
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in response.headers
    # The same without an Origin: one cacheable answer for everyone.
    plain = requests.get(live_server.url + path, timeout=10)
    assert plain.headers["Access-Control-Allow-Origin"] == "*"

    asked = preflight(live_server.url + path, UNKNOWN, "GET", "authorization")
    assert asked.status_code == 204
    assert asked.headers["Access-Control-Allow-Origin"] == "*"
    assert asked.headers["Access-Control-Allow-Methods"] == "GET"
    assert "Access-Control-Allow-Credentials" not in asked.headers


# Preflights of the client endpoints -----------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "method", "methods"),
    [("/token", "POST", "POST"), ("/revoke", "POST", "POST"), ("/userinfo", "GET", "GET, POST")],
)
@pytest.mark.parametrize("origin", [DERIVED, REGISTERED, OTHERS])
def test_a_preflight_from_any_registered_origin_is_answered(
    live_server, spa, path, method, methods, origin
):
    response = preflight(live_server.url + path, origin, method, "authorization,content-type")
    assert response.status_code == 204
    assert response.content == b""
    assert_allows(response, origin)
    assert response.headers["Access-Control-Allow-Methods"] == methods
    assert response.headers["Access-Control-Allow-Headers"] == "Authorization, Content-Type"
    assert response.headers["Access-Control-Max-Age"] == "600"


@pytest.mark.parametrize("path", ["/token", "/revoke", "/userinfo"])
@pytest.mark.parametrize("origin", [UNKNOWN, "null", DERIVED + ":1", "HTTPS://SPA.EXAMPLE"])
def test_a_preflight_from_an_unregistered_origin_gets_no_cors_headers(
    live_server, spa, path, origin
):
    response = preflight(live_server.url + path, origin, "POST", "authorization")
    assert response.status_code == 200  # Flask's own OPTIONS answer: the browser stops here
    assert_no_cors(response)
    assert "Origin" in response.headers["Vary"]


# Token, UserInfo and revocation: only the client's own origins read the answer ----------------


def test_the_spa_signs_in_refreshes_and_revokes_from_its_origins(spa):
    rp, browser, phone = spa
    tokens = exchange(rp, sign_in(rp, browser, phone), REGISTERED)
    assert tokens.status_code == 200, tokens.text
    assert_allows(tokens, REGISTERED)
    access, refresh = tokens.json()["access_token"], tokens.json()["refresh_token"]

    info = requests.get(
        f"{rp.idp_url}/userinfo",
        headers={"Authorization": f"Bearer {access}", "Origin": DERIVED},
        timeout=10,
    )
    assert info.status_code == 200
    assert_allows(info, DERIVED)
    assert info.headers["Access-Control-Expose-Headers"] == "WWW-Authenticate"

    refreshed = requests.post(
        f"{rp.idp_url}/token",
        data={"grant_type": "refresh_token", "refresh_token": refresh, "client_id": rp.client_id},
        headers={"Origin": DERIVED},
        timeout=10,
    )
    assert refreshed.status_code == 200, refreshed.text
    assert_allows(refreshed, DERIVED)

    revoked = requests.post(
        f"{rp.idp_url}/revoke",
        data={"token": refreshed.json()["refresh_token"], "client_id": rp.client_id},
        headers={"Origin": REGISTERED},
        timeout=10,
    )
    assert (revoked.status_code, revoked.json()) == (200, {})
    assert_allows(revoked, REGISTERED)


def test_another_clients_origin_cannot_read_this_clients_tokens(spa):
    rp, browser, phone = spa
    tokens = exchange(rp, sign_in(rp, browser, phone), OTHERS)
    assert tokens.status_code == 200  # issued (a server could ask too) but unreadable by a page
    assert_no_cors(tokens)
    info = requests.get(
        f"{rp.idp_url}/userinfo",
        headers={"Authorization": f"Bearer {tokens.json()['access_token']}", "Origin": OTHERS},
        timeout=10,
    )
    assert info.status_code == 200
    assert_no_cors(info)
    revoked = requests.post(
        f"{rp.idp_url}/revoke",
        data={"token": tokens.json()["access_token"], "client_id": rp.client_id},
        headers={"Origin": OTHERS},
        timeout=10,
    )
    assert revoked.status_code == 200
    assert_no_cors(revoked)


def test_an_unregistered_origin_reads_nothing(spa):
    rp, browser, phone = spa
    tokens = exchange(rp, sign_in(rp, browser, phone), UNKNOWN)
    assert tokens.status_code == 200
    assert_no_cors(tokens)
    for headers in ({"Authorization": f"Bearer {tokens.json()['access_token']}"}, {}):
        info = requests.get(
            f"{rp.idp_url}/userinfo", headers=headers | {"Origin": UNKNOWN}, timeout=10
        )
        assert_no_cors(info)


def test_the_clients_origin_reads_its_errors(spa):
    rp, _, _ = spa
    refused = exchange(rp, "not-a-code", REGISTERED)
    assert (refused.status_code, refused.json()["error"]) == (400, "invalid_grant")
    assert_allows(refused, REGISTERED)
    # Before any client is known (no token, an unknown client), any registered origin
    # may read the error; no other origin may.
    for origin in (DERIVED, OTHERS):
        info = requests.get(f"{rp.idp_url}/userinfo", headers={"Origin": origin}, timeout=10)
        assert info.status_code == 401
        assert_allows(info, origin)
        unknown = requests.post(
            f"{rp.idp_url}/token",
            data={"grant_type": "refresh_token", "refresh_token": "x", "client_id": "nobody"},
            headers={"Origin": origin},
            timeout=10,
        )
        assert (unknown.status_code, unknown.json()["error"]) == (400, "invalid_client")
        assert_allows(unknown, origin)
    unknown = exchange(rp, "not-a-code", UNKNOWN)
    assert unknown.status_code == 400
    assert_no_cors(unknown)


def test_an_explicit_web_origin_alone_is_enough(live_server):
    """A client whose redirect URI is a native app's still serves a web origin."""
    with live_server.app.app_context(), db.unit_of_work():
        client, _ = create_client(
            "App", ["com.example.app:/cb"], public=True, web_origins=["https://web.example:8443"]
        )
        origins = [o.origin for o in client.web_origins]
    assert origins == ["https://web.example:8443"]
    response = preflight(live_server.url + "/token", "https://web.example:8443", "POST")
    assert_allows(response, "https://web.example:8443")


def test_a_deleted_client_takes_its_origins_along(live_server):
    from idp.admin.services import delete_client

    with live_server.app.app_context(), db.unit_of_work():
        client, _ = create_client("Gone", ["https://gone.example/cb"], public=True)
        assert delete_client(client.client_id)
    assert_no_cors(preflight(live_server.url + "/token", "https://gone.example", "POST"))


# Nothing else answers CORS ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/authorize"),
        ("GET", "/authorize/complete/x"),
        ("POST", "/authorize/renew/x"),
        ("POST", "/authorize/short-code/x"),
        ("POST", "/authorize/restart/x"),
        ("GET", "/q/x"),
        ("GET", "/ws/login/x"),
        ("POST", "/api/mobile/v1/devices"),
        ("POST", "/api/mobile/v1/login-requests/scan"),
        ("GET", "/logout"),
        ("POST", "/introspect"),
        ("GET", "/"),
    ],
)
def test_the_page_the_phone_api_and_logout_never_answer_cors(spa, method, path):
    rp, _, _ = spa
    url = rp.idp_url + path
    assert_no_cors(preflight(url, DERIVED, method, "authorization,content-type"))
    assert_no_cors(requests.request(method, url, headers={"Origin": DERIVED}, timeout=10))


def test_the_authorize_page_itself_answers_no_cors(spa):
    rp, browser, _ = spa
    page = browser.session.get(rp.authorize_url(), headers={"Origin": DERIVED}, timeout=10)
    assert page.status_code == 200
    assert_no_cors(page)
