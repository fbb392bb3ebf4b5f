"""The phone web app's inbox in a real browser: a site asks from its server (OpenID CIBA),
the request appears on the home screen while it is open (the inbox socket), a tap opens
the review screen with the site's message, and Approve lets the site redeem its
auth_req_id for tokens."""

from __future__ import annotations

import json
import time

import requests
from playwright.sync_api import expect

from a11y import axe_violations
from desktop import shot
from phone import enroll_in_app, idp_command, phone_context
from support import checked_id_token

CIBA = "urn:openid:params:grant-type:ciba"


def test_a_site_s_request_shows_live_and_is_approved(chromium, site):
    made = idp_command(
        site.idp, "clients", "create", "--name", "Call centre",
        "--redirect-uri", "https://rp.example/cb", "--ciba", "--json",
    )  # fmt: skip
    client = json.loads(made)
    auth = (client["client_id"], client["client_secret"])
    phone = enroll_in_app(phone_context(chromium), site.issuer)
    expect(phone.locator("#inbox-box")).to_be_hidden()

    asked = requests.post(
        f"{site.issuer}/bc-authorize",
        data={"scope": "openid profile", "login_hint": "alice", "binding_message": "Call 4711"},
        auth=auth,
        timeout=10,
    )
    assert asked.status_code == 200, asked.text
    auth_req_id = asked.json()["auth_req_id"]
    item = phone.get_by_role("button", name="Call centre asks you to approve")
    expect(item).to_be_visible()  # pushed by the inbox socket: no reload, no tap
    expect(item).to_contain_text("Call 4711")
    shot(phone, "phone-inbox")
    assert axe_violations(phone) == []

    item.tap()
    expect(phone.get_by_role("heading", name="Call centre asks for your approval")).to_be_visible()
    expect(phone.locator("#request-binding")).to_have_text("Call 4711")
    expect(phone.locator("#request-host")).to_be_hidden()  # no browser, no redirect
    expect(phone.get_by_role("button", name="Not my sign-in: give it back")).to_be_hidden()
    shot(phone, "phone-inbox-request")
    assert axe_violations(phone) == []
    phone.get_by_role("button", name="Approve").tap()
    expect(phone.get_by_role("heading", name="Approved")).to_be_visible()
    expect(phone.locator("#done-text")).to_have_text("Call centre is told that you approved.")

    time.sleep(asked.json()["interval"])
    tokens = requests.post(
        f"{site.issuer}/token",
        data={"grant_type": CIBA, "auth_req_id": auth_req_id},
        auth=auth,
        timeout=10,
    )
    assert tokens.status_code == 200, tokens.text
    claims = checked_id_token(site.issuer, tokens.json()["id_token"], auth[0])
    assert claims["preferred_username"] == "alice"
    phone.get_by_role("link", name="Open the app").tap()
    expect(phone.locator("#home-who")).to_be_visible()
    expect(phone.locator("#inbox-box")).to_be_hidden()  # nothing waits any more
