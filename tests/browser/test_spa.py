"""A single-page app on another origin, using oidc-client-ts (vendored in ``vendor/``):
it signs in through the QR page with a real phone approving, checks the ID token,
refreshes, revokes and signs out, all in Chromium, against a real ``idp serve``.

Every call the app makes to the IdP is cross-origin (the app is on ``localhost``, the
IdP on ``127.0.0.1``): discovery, JWKS, token, UserInfo (with a preflight: it sends
``Authorization``) and revocation answer CORS, and nothing else needs to.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from flask import Flask, jsonify, send_file
from playwright.sync_api import Browser, Page, expect

from cluster import IdPProcess, seeded_idp
from desktop import new_context, read_qr
from phone import enroll
from support import listening_socket, serve_in_thread

HERE = Path(__file__).parent
FILES = {
    "/": HERE / "spa" / "index.html",
    "/callback": HERE / "spa" / "index.html",
    "/signed-in": HERE / "spa" / "index.html",
    "/signed-out": HERE / "spa" / "index.html",
    "/app.js": HERE / "spa" / "app.js",
    "/oidc-client-ts.js": HERE / "vendor" / "oidc-client-ts.js",
}


@dataclass
class SpaSite:
    idp: IdPProcess
    spa_url: str
    tmp: Path

    @property
    def issuer(self) -> str:
        return self.idp.url


def spa_server(config: dict[str, str]) -> Flask:
    """The app's static files and its configuration, from its own origin."""
    server = Flask("spa")
    for path, file in FILES.items():
        server.add_url_rule(
            path, path, lambda file=file: send_file(file, max_age=0), methods=["GET"]
        )
    server.add_url_rule("/config.json", "config", lambda: jsonify(config))
    return server


@pytest.fixture
def spa_site(tmp_path: Path) -> Iterator[SpaSite]:
    spa_socket = listening_socket()
    spa_url = f"http://localhost:{spa_socket.getsockname()[1]}"
    # A public client; its web origin is derived from its redirect URI.
    idp, client_id, _ = seeded_idp(
        tmp_path,
        spa_url,
        "Test SPA",
        public=True,
        post_logout_redirect_uris=[f"{spa_url}/signed-out"],
    )
    issuer = idp.url
    server, thread = serve_in_thread(
        spa_socket, spa_server({"authority": issuer, "client_id": client_id})
    )
    try:
        yield SpaSite(idp=idp, spa_url=spa_url, tmp=tmp_path)
    finally:
        server.shutdown()
        thread.join(timeout=5)
        idp.stop()


def no_error(page: Page) -> None:
    expect(page.locator("#error")).to_have_text("")


def test_a_single_page_app_signs_in_refreshes_revokes_and_signs_out(
    chromium: Browser, spa_site: SpaSite
):
    phone = enroll(spa_site)
    context = new_context(chromium)
    page = context.new_page()
    page.goto(spa_site.spa_url + "/")
    page.get_by_role("button", name="Sign in").click()

    # signinRedirect: discovery (CORS), then the QR page; the phone approves.
    page.wait_for_url(f"{spa_site.issuer}/authorize?*")
    expect(page.locator("#qr svg")).to_be_visible()
    view = phone.scan(read_qr(page, spa_site.tmp))["login_request"]
    assert view["client"]["name"] == "Test SPA"
    phone.approve(view["id"])

    # signinRedirectCallback: the code exchanged at /token and UserInfo read, cross-origin.
    page.wait_for_url(f"{spa_site.spa_url}/signed-in")
    expect(page.locator("#signin")).to_have_text("signed in as Alice Example (alice@example.com)")
    expect(page.locator("#id-token")).to_have_text(
        re.compile(r"^valid: RS256 signature by key \S+; iss, aud and exp checked$")
    )
    no_error(page)

    page.get_by_role("button", name="Refresh").click()
    expect(page.locator("#refreshed")).to_have_text(
        "refreshed: new access token, refresh token rotated, still Alice Example"
    )
    no_error(page)

    page.get_by_role("button", name="Revoke tokens").click()
    expect(page.locator("#revoked")).to_have_text("revoked: UserInfo now answers 401 invalid_token")
    no_error(page)

    # signoutRedirect: the IdP's end_session_endpoint with the ID token as hint, and back.
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(f"{spa_site.spa_url}/signed-out?*")
    expect(page.locator("#signed-out")).to_have_text("signed out (state back: from the test SPA)")
    no_error(page)

    # The IdP session ended too: signing in again needs a new scan.
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{spa_site.issuer}/authorize?*")
    expect(page.locator("#qr svg")).to_be_visible()
    context.close()
