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


@pytest.mark.parametrize("locale", ["en-US", "zh-CN"])
def test_every_screen_of_setting_up_another_phone_has_no_violations(chromium, site, locale):
    old = phone_context(chromium, locale=locale).new_page()
    old.goto(f"{site.issuer}/app/")
    old.locator("#username").fill("alice")
    old.locator("#password").fill(PASSWORD)
    old.locator("#enroll-button").tap()
    expect(old.locator("#screen-home")).to_be_visible()

    new = phone_context(chromium, locale=locale).new_page()
    new.goto(f"{site.issuer}/app/")
    new.locator("#username").fill("alice")
    new.locator("#password").fill(PASSWORD)
    new.locator("#device-name").fill("New phone")
    new.locator("#enroll-button").tap()
    expect(new.locator("#screen-pending")).to_be_visible()
    expect(new.locator("#pending-left")).not_to_be_empty()
    assert_accessible(new, "waiting for approval")

    old.locator("#add-phone").tap()
    expect(old.locator("#screen-add")).to_be_visible()
    assert_accessible(old, "set up another phone")
    old.locator("#add-code").fill("ABCD-EFGH")
    old.locator("#add-button").tap()
    expect(old.get_by_role("alert")).to_be_visible()
    assert_accessible(old, "a wrong code")
    old.locator("#add-code").fill(new.locator("#pending-code").inner_text())
    old.locator("#add-button").tap()
    expect(old.locator("#screen-review")).to_be_visible()
    expect(old.locator("#review-warnings li")).to_have_count(1)
    assert_accessible(old, "the new phone")
    old.locator("#review-approve").tap()
    expect(old.locator("#screen-done")).to_be_visible()
    assert_accessible(old, "approved")
    expect(new.locator("#screen-home")).to_be_visible()
    expect(new.locator("#devices li")).to_have_count(2)
    assert_accessible(new, "home with the way each phone was set up")

    refused = phone_context(chromium, locale=locale).new_page()
    refused.goto(f"{site.issuer}/app/")
    refused.locator("#username").fill("alice")
    refused.locator("#password").fill(PASSWORD)
    refused.locator("#enroll-button").tap()
    expect(refused.locator("#screen-pending")).to_be_visible()
    new.locator("#add-phone").tap()
    new.locator("#add-code").fill(refused.locator("#pending-code").inner_text())
    new.locator("#add-button").tap()
    new.locator("#review-deny").tap()
    expect(new.locator("#screen-done")).to_be_visible()
    assert_accessible(new, "refused")
    expect(refused.get_by_role("alert")).to_be_visible()
    assert_accessible(refused, "refused, on the new phone")


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
