"""A device's sign-in (RFC 8628) in the phone web app: its in-app scanner, in a Chromium
whose camera films the QR code a TV shows (``{issuer}/device?user_code=...``), opens the
device's request with the code to compare and the warning against codes someone sent;
Approve lets the device's next poll get its tokens."""

from __future__ import annotations

import json
import time

import pytest
import qrcode
import requests
from playwright.sync_api import expect

from a11y import axe_violations
from camera import write_y4m
from phone import enroll_in_app, idp_command, phone_context
from support import checked_id_token

DEVICE = "urn:ietf:params:oauth:grant-type:device_code"


@pytest.mark.idp_config(IDP_DEVICE_POLL_INTERVAL=1)
def test_the_in_app_scanner_reads_a_devices_qr_code(fake_camera, site):
    created = idp_command(
        site.idp, "clients", "create", "--name", "Living-room TV", "--public", "--device-grant",
        "--json",
    )  # fmt: skip
    client_id = json.loads(created)["client_id"]
    codes = start(site, client_id)
    picture = site.tmp / "tv.png"
    qrcode.make(codes["verification_uri_complete"], box_size=8).save(picture)  # the TV's screen
    phone = enroll_in_app(
        phone_context(fake_camera(write_y4m(picture, site.tmp / "tv.y4m"))), site.issuer
    )

    phone.get_by_role("button", name="Scan").tap()
    expect(
        phone.get_by_role("heading", name="A device wants to sign in as you to Living-room TV")
    ).to_be_visible()
    expect(phone.locator("#request-code")).to_have_text(codes["user_code"])
    expect(phone.locator("#request-warnings li").first).to_contain_text(
        "If someone sent you this code or link"
    )
    expect(phone.locator("#request-host")).to_be_hidden()  # a device returns to no site
    assert axe_violations(phone) == []
    phone.get_by_role("button", name="Approve").tap()
    expect(phone.get_by_role("heading", name="Done: the device is signing in")).to_be_visible()

    time.sleep(codes["interval"])
    tokens = poll(site, client_id, codes)
    assert tokens.status_code == 200, tokens.text
    claims = checked_id_token(site.issuer, tokens.json()["id_token"], client_id)
    assert claims["preferred_username"] == "alice"

    # The /device page's link, /app/#device=CODE: the code is filled in, with a warning,
    # and nothing is sent before the tap; then the same screen, and Deny.
    second = start(site, client_id)
    phone = phone.context.new_page()  # the link opens the app anew
    phone.goto(f"{site.issuer}/app/#device={second['user_code']}")
    expect(phone.locator("#code")).to_have_value(second["user_code"])
    expect(phone.locator("#code-note")).to_contain_text("Never enter a code someone sent you.")
    assert axe_violations(phone) == []
    assert "#" not in phone.url
    assert poll(site, client_id, second).json()["error"] == "authorization_pending"
    phone.get_by_role("button", name="Continue").tap()
    expect(phone.locator("#request-code")).to_have_text(second["user_code"])
    phone.get_by_role("button", name="Deny").tap()
    expect(phone.locator("#screen-done")).to_be_visible()
    time.sleep(second["interval"])
    assert poll(site, client_id, second).json()["error"] == "access_denied"


def start(site, client_id):
    return requests.post(
        f"{site.issuer}/device_authorization",
        data={"client_id": client_id, "scope": "openid profile"},
        timeout=10,
    ).json()


def poll(site, client_id, codes):
    return requests.post(
        f"{site.issuer}/token",
        data={"grant_type": DEVICE, "device_code": codes["device_code"], "client_id": client_id},
        timeout=10,
    )
