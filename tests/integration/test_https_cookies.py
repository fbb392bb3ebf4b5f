"""On an https issuer: every cookie is __Host- (Secure, this host only), HttpOnly and
SameSite=Lax, and every answer carries HSTS."""

from __future__ import annotations

import pytest
from flask import Response

from idp import web
from idp.db import utcnow
from idp.sso import services as sso
from support import add_client, add_user, dispose_app, make_app

ISSUER = "https://id.example.com"


@pytest.fixture
def https_app(tmp_path, backend):
    app = make_app(tmp_path, issuer=ISSUER, **backend)
    yield app
    dispose_app(app)


def test_the_binding_cookie_and_hsts_on_https(https_app):
    client_id, _ = add_client(https_app)
    client = https_app.test_client()
    page = client.get(
        "/authorize",
        query_string={
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": "http://localhost:9999/callback",
            "scope": "openid",
            "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
            "code_challenge_method": "S256",
        },
        base_url=ISSUER,
    )
    assert page.status_code == 200
    cookie = page.headers["Set-Cookie"]
    assert cookie.startswith("__Host-idp_binding=")
    for attribute in ("Secure", "HttpOnly", "SameSite=Lax", "Path=/"):
        assert attribute in cookie
    assert "Domain" not in cookie
    assert page.headers["Strict-Transport-Security"] == "max-age=63072000"
    assert client.get("/jwks", base_url=ISSUER).headers["Strict-Transport-Security"]


def test_the_sso_cookie_on_https(https_app):
    user = add_user(https_app, "alice")
    with https_app.test_request_context("/", base_url=ISSUER):
        response = Response()
        secret = sso.start_session(user, None, utcnow(), client_id="c1", replacing=None)
        web.set_cookie(response, web.SESSION_COOKIE, secret, max_age=3600)
        cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("__Host-idp_sso=")
    for attribute in ("Secure", "HttpOnly", "SameSite=Lax", "Path=/"):
        assert attribute in cookie
