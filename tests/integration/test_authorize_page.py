"""The authorize page people are asked to trust: the IdP's name, the client's name and
logo, a text alternative for the QR code, and a page policy that admits the logo's
origin and nothing more."""

from __future__ import annotations

import pytest

from idp import db
from idp.admin.services import create_client
from idp.errors import InvalidRequest
from support import RelyingParty

LOGO = "https://rp.example.com/static/logo.png"


def open_page(app, client, **client_options):
    with app.app_context(), db.unit_of_work():
        c, secret = create_client(
            "Photo Club", ["http://localhost:9999/callback"], **client_options
        )
    rp = RelyingParty("http://127.0.0.1:8000", c.client_id, secret)
    response = client.get(rp.authorize_url().removeprefix(rp.idp_url))
    assert response.status_code == 200
    return response


def test_the_page_names_the_idp_and_the_client(app, client):
    app.config["IDP_NAME"] = "Example ID"
    response = open_page(app, client)
    page = response.get_data(as_text=True)
    assert '<p class="brand">Example ID</p>' in page
    assert "<title>Sign in to Photo Club · Example ID</title>" in page
    assert 'Sign in to <span class="client">Photo Club</span> with your phone' in page
    assert 'role="img" aria-label="QR code to scan with the QR-IdP app on your phone"' in page
    assert 'role="status" aria-live="polite"' in page
    assert "client-logo" not in page
    assert "img-src 'self' data:;" in response.headers["Content-Security-Policy"]


def test_a_registered_logo_is_shown_and_only_its_origin_allowed(app, client):
    response = open_page(app, client, logo_uri=LOGO)
    page = response.get_data(as_text=True)
    assert f'<img class="client-logo" src="{LOGO}" alt=""' in page
    assert 'referrerpolicy="no-referrer"' in page
    policy = response.headers["Content-Security-Policy"]
    assert "img-src 'self' data: https://rp.example.com;" in policy
    assert "script-src 'self';" in policy  # nothing else loosened


def test_the_phone_sees_the_logo(world, app):
    live, rp, browser, phone = world
    with live.app.app_context():
        from sqlalchemy import select

        from idp import db
        from idp.oauth.models import Client

        c = db.session.scalar(select(Client).where(Client.client_id == rp.client_id))
        c.logo_uri = LOGO
        db.session.commit()
    view = phone.scan(browser.open(rp.authorize_url()).qr_url)["login_request"]
    assert view["client"]["logo_uri"] == LOGO


@pytest.mark.parametrize(
    "uri",
    [
        "http://rp.example.com/logo.png",  # plain http off loopback
        "javascript:alert(1)",
        "data:image/png;base64,AAAA",
        "https:///nohost.png",
        'https://rp.example.com/a"b.png',
        "https://rp.example.com/" + "x" * 500,
        "https://rp.example.com;script-src *;/logo.png",  # a directive in the host
        "https://rp.example.com,https:/logo.png",
        "https://user:pass@rp.example.com/logo.png",
        "https://rp.example.com:99999/logo.png",
        "https://evil.example\\@rp.example.com/logo.png",  # browsers read \ as /
        "https://rp.example.com/logo.png\x1b[2J",
        "https://rp_example!.com/logo.png",
    ],
)
def test_bad_logos_are_refused(app, uri):
    with app.app_context(), pytest.raises(InvalidRequest) as refused:
        create_client("X", ["http://localhost:9999/callback"], logo_uri=uri)
    assert "logo URI" in refused.value.description


@pytest.mark.parametrize(
    "logo",
    [
        "https://rp.example.com;script-src 'unsafe-inline' *;/logo.png",
        "https://rp.example.com;report-uri https://evil.example/;/logo.png",
        "https://rp.example.com:443;frame-ancestors *;/x.png",
    ],
)
def test_a_stored_logo_uri_cannot_add_to_the_page_policy(app, client, logo):
    """A logo URI stored before registration checked it (or written directly) holds a
    ``;``: the page's policy still gets only a re-serialised origin, or nothing."""
    from idp import CONTENT_SECURITY_POLICY, db
    from idp.oauth.models import Client

    with app.app_context():
        c, secret = create_client("Photo Club", ["http://localhost:9999/callback"])
        db.session.commit()  # create_client leaves the commit to its caller
        db.session.get(Client, c.id).logo_uri = logo
        db.session.commit()
    rp = RelyingParty("http://127.0.0.1:8000", c.client_id, secret)
    response = client.get(rp.authorize_url().removeprefix(rp.idp_url))
    assert response.status_code == 200
    assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY


@pytest.mark.parametrize(
    ("logo", "source"),
    [
        ("https://CDN.Example.com:8443/l.png?v=1;x", "https://cdn.example.com:8443"),
        ("https://[2001:db8::1]/l.png", "https://[2001:db8::1]"),
        ("http://127.0.0.1:5000/l.png", "http://127.0.0.1:5000"),
    ],
)
def test_the_logo_source_is_its_origin_written_anew(app, client, logo, source):
    policy = open_page(app, client, logo_uri=logo).headers["Content-Security-Policy"]
    assert f"img-src 'self' data: {source}; connect-src" in policy
