"""The phone app's screens: axe finds nothing wrong with any of them at phone size, in
English and in Chinese; and the in-app scanner, in a Chromium whose camera films the
desktop page's QR code, reaches the same approval screen as the phone's camera app."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from a11y import axe_violations
from camera import write_y4m
from desktop import new_context, read_qr, shot, start_sign_in
from phone import enroll_in_app, idp_command, phone_context
from support import PASSWORD


def assert_accessible(page: Page, screen: str) -> None:
    found = axe_violations(page)
    assert found == [], f"{screen}: {found}"


@pytest.mark.parametrize("locale", ["en-US", "zh-CN"])
def test_every_phone_screen_has_no_violations(chromium, site, locale):
    phone = phone_context(chromium, locale=locale).new_page()
    phone.goto(f"{site.issuer}/app/")
    expect(phone.locator("#screen-enroll")).to_be_visible()
    assert_accessible(phone, "set up")
    phone.locator("#username").fill("alice")
    phone.locator("#password").fill("wrong")
    phone.locator("#enroll-button").tap()
    expect(phone.get_by_role("alert")).to_be_visible()
    assert_accessible(phone, "an error")
    phone.locator("#password").fill(PASSWORD)
    phone.locator("#enroll-button").tap()
    expect(phone.locator("#screen-home")).to_be_visible()
    expect(phone.locator("#devices li")).to_have_count(1)
    assert_accessible(phone, "home")

    desktop = start_sign_in(new_context(chromium), site)
    phone.goto(read_qr(desktop, site.tmp))
    expect(phone.locator("#screen-request")).to_be_visible()
    assert_accessible(phone, "a sign-in request")
    phone.locator("#approve").tap()
    expect(phone.locator("#screen-done")).to_be_visible()
    assert_accessible(phone, "done")

    phone.goto(f"{site.issuer}/app/")
    expect(phone.locator("#devices li")).to_have_count(1)
    phone.locator("#devices button").tap()  # remove this phone
    expect(phone.locator("#screen-removed")).to_be_visible()
    assert_accessible(phone, "removed")

    printed = idp_command(site.idp, "users", "invite", "alice", "--no-qr")
    link = next(word for word in printed.split() if "/app/invite/" in word)
    phone.goto(link)
    expect(phone.locator("#enroll-note")).to_be_visible()
    assert_accessible(phone, "invitation")
    phone.locator("#enroll-button").tap()
    expect(phone.locator("#screen-home")).to_be_visible()
    phone.goto(link)
    expect(phone.locator("#screen-gone")).to_be_visible()
    assert_accessible(phone, "used invitation")


def test_the_in_app_scanner_reads_the_desktop_qr(chromium, fake_camera, site):
    desktop = start_sign_in(new_context(chromium), site)
    qr_picture = site.tmp / "qr.png"
    desktop.locator("#qr").screenshot(path=str(qr_picture))  # the camera pointed at it
    with_camera = fake_camera(write_y4m(qr_picture, site.tmp / "qr.y4m"))
    phone = enroll_in_app(phone_context(with_camera), site.issuer)
    phone.get_by_role("button", name="Scan").tap()
    expect(phone.get_by_role("heading", name="Sign in to Demo RP?")).to_be_visible()
    # The QR's own request, opened inside the app's scope (/app/q/<id>, not /q/<id>).
    assert phone.url == read_qr(desktop, site.tmp).replace("/q/", "/app/q/", 1)
    shot(phone, "phone-request-scanned")
    phone.get_by_role("button", name="Approve").tap()
    expect(phone.get_by_role("heading", name="Done: return to your computer")).to_be_visible()
    desktop.wait_for_url(f"{site.rp_url}/")
    expect(desktop.get_by_text("Alice Example").first).to_be_visible()
