"""A new phone needs an old phone, in the phone web app: two phone contexts of alice's
(two browsers, two key stores) against a real `idp serve`. The first is set up with her
password; the second sends the password too, and waits with a code; the first types
that code, sees the second, and approves or denies it."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from desktop import new_context, read_qr, shot, start_sign_in
from phone import (
    answer_code,
    ask_for_approval,
    enroll_in_app,
    phone_context,
)
from support import PASSWORD

# Runs in the page: what this browser keeps (keystore.js), without the key's secrets.
KEPT = """async () => {
  const keystore = await import("/static/app/keystore.js");
  const issuer = JSON.parse(document.getElementById("phone-app").getAttribute("data-state")).issuer;
  const record = await keystore.load(issuer);
  const pending = await keystore.loadPending(issuer);
  return {enrolled: record ? record.deviceId : null, pending: pending ? pending.code : null};
}"""


def test_a_new_phone_approved_by_the_old_one_signs_in(chromium, site):
    old = enroll_in_app(phone_context(chromium), site.issuer, name="Old phone")
    new, code = ask_for_approval(phone_context(chromium), site.issuer, name="Pixel 9")
    expect(new.locator("#screen-pending")).to_contain_text(
        "On a phone you already set up, open this app, choose 'Set up another phone' and"
        " enter this code."
    )
    expect(new.locator("#pending-left")).to_have_text(
        re.compile(r"^\d+:\d\d left to approve this phone$")
    )
    font = new.locator("#pending-code").evaluate("(e) => getComputedStyle(e).fontFamily")
    assert "monospace" in font
    shot(new, "phone-enroll-pending")
    # Waiting is not being set up: the key is kept apart, and a reload comes back here.
    assert new.evaluate(KEPT) == {"enrolled": None, "pending": code}
    new.reload()
    expect(new.locator("#pending-code")).to_have_text(code)

    answer_code(old, code.lower().replace("-", " "))  # as a person might type it
    expect(old.locator("#review-warnings")).to_have_text(  # the proximity sentence, first
        "The new phone is on the same network as this phone."
    )
    expect(old.locator("#review-name")).to_have_text("Pixel 9")
    expect(old.locator("#review-from")).to_have_text("Chrome on Android at 127.0.0.1")
    expect(old.locator("#review-when")).to_have_text(re.compile(r"^Asked "))
    expect(old.locator("#review-left")).to_have_text(re.compile(r"left to answer$"))
    approve, deny = (
        old.get_by_role("button", name="Approve"),
        old.get_by_role("button", name="Deny"),
    )
    a, d = approve.bounding_box(), deny.bounding_box()
    assert a and d and (a["width"], a["height"]) == (d["width"], d["height"])  # equally prominent
    title = old.locator("#review-title").bounding_box()
    first = old.locator("#review-warnings li").bounding_box()
    facts = old.locator("#review-name").bounding_box()
    assert title and first and facts and title["y"] < first["y"] < facts["y"]
    shot(old, "phone-enroll-review")
    approve.tap()
    expect(old.get_by_role("heading", name="Pixel 9 is set up.")).to_be_visible()

    # The new phone saw the approval by itself, and keeps the key as an enrollment now.
    expect(new.locator("#home-who")).to_have_text("This phone signs in as Alice Example (alice).")
    kept = new.evaluate(KEPT)
    assert kept["enrolled"] and kept["pending"] is None
    expect(new.locator("#devices li")).to_have_text(
        [
            re.compile("Old phone.*set up with a password"),
            re.compile("Pixel 9.*approved by Old phone"),
        ]
    )
    old.goto(f"{site.issuer}/app/")
    expect(old.locator("#devices li").nth(1)).to_contain_text("approved by this phone")

    desktop = start_sign_in(new_context(chromium), site)
    new.goto(read_qr(desktop, site.tmp))
    new.get_by_role("button", name="Approve").tap()
    expect(new.get_by_role("heading", name="Done: return to your computer")).to_be_visible()
    desktop.wait_for_url(f"{site.rp_url}/")
    expect(desktop.get_by_text("Alice Example").first).to_be_visible()


@pytest.mark.idp_config(IDP_TRUSTED_PROXIES=1)
def test_a_phone_elsewhere_is_a_warning_and_refused_keeps_no_key(chromium, site):
    """Someone with alice's password, on another network, asks her phone to approve theirs:
    her phone says where it is first, as a warning, and she denies it."""
    old = enroll_in_app(phone_context(chromium), site.issuer, name="Old phone")
    elsewhere = phone_context(chromium, extra_http_headers={"X-Forwarded-For": "203.0.113.7"})
    new, code = ask_for_approval(elsewhere, site.issuer, name="Stranger")
    answer_code(old, code)
    warning = old.locator("#review-warnings li")
    expect(warning).to_have_text(
        "The new phone is on a different network than this phone. Approve only if you are"
        " holding it."
    )
    expect(warning).to_have_class("warning")
    expect(old.locator("#review-from")).to_have_text("Chrome on Android at 203.0.113.7")
    old.get_by_role("button", name="Deny").tap()
    expect(old.get_by_role("heading", name="The phone was refused.")).to_be_visible()
    expect(new.get_by_role("alert")).to_have_text("Your other phone refused this phone.")
    expect(new.locator("#screen-enroll")).to_be_visible()
    assert new.evaluate(KEPT) == {"enrolled": None, "pending": None}
    new.reload()
    expect(new.get_by_role("heading", name="Set up this phone")).to_be_visible()
    old.goto(f"{site.issuer}/app/")
    expect(old.locator("#devices li")).to_have_count(1)
    answer_again = old.get_by_role("button", name="Set up another phone")
    answer_again.tap()
    old.get_by_label("The code the new phone shows").fill(code)  # decided: gone
    old.get_by_role("button", name="Continue").tap()
    expect(old.get_by_role("alert")).to_have_text("That code is wrong or expired.")


def test_a_wrong_code_is_a_plain_sentence_and_one_tap_sends_once(chromium, site):
    old = enroll_in_app(phone_context(chromium), site.issuer)
    sent: list[str] = []
    old.on(
        "request",
        lambda request: sent.append(request.post_data or "") if "/lookup" in request.url else None,
    )
    old.get_by_role("button", name="Set up another phone").tap()
    field = old.get_by_label("The code the new phone shows")
    field.fill("abcd efgh")
    # Two submissions before any answer can come (a double tap, Enter twice): one lookup.
    old.evaluate(
        "() => { const form = document.getElementById('add-form');"
        " form.requestSubmit(); form.requestSubmit(); }"
    )
    expect(old.get_by_role("alert")).to_have_text("That code is wrong or expired.")
    assert sent == ['{"code":"ABCD-EFGH"}']
    expect(field).to_be_focused()
    field.fill("")
    old.get_by_role("button", name="Continue").tap()
    expect(old.get_by_role("alert")).to_have_text("Type the code the new phone shows.")
    old.get_by_role("button", name="Back").tap()
    expect(old.locator("#home-who")).to_be_visible()


def test_cancel_withdraws_the_request_and_forgets_the_waiting_key(chromium, site):
    old = enroll_in_app(phone_context(chromium), site.issuer)
    new, code = ask_for_approval(phone_context(chromium), site.issuer, name="New phone")
    withdrawn: list[str] = []
    new.on("response", lambda r: withdrawn.append(r.status) if "/withdraw" in r.url else None)
    new.get_by_role("button", name="Cancel").tap()
    expect(new.get_by_role("heading", name="Set up this phone")).to_be_visible()
    assert withdrawn == [200]
    assert new.evaluate(KEPT) == {"enrolled": None, "pending": None}
    new.reload()
    expect(new.get_by_role("heading", name="Set up this phone")).to_be_visible()
    # The old phone can no longer approve it: no phone whose key nobody holds.
    old.get_by_role("button", name="Set up another phone").tap()
    old.get_by_label("The code the new phone shows").fill(code)
    old.get_by_role("button", name="Continue").tap()
    expect(old.get_by_role("alert")).to_have_text("That code is wrong or expired.")


def test_cancel_offline_still_forgets_the_waiting_key(chromium, site):
    """Withdrawing is best effort: offline, Cancel forgets the key all the same (and the
    request lasts until it expires)."""
    old = enroll_in_app(phone_context(chromium), site.issuer)
    new, code = ask_for_approval(phone_context(chromium), site.issuer, name="New phone")
    new.context.set_offline(True)
    new.get_by_role("button", name="Cancel").tap()
    expect(new.get_by_role("heading", name="Set up this phone")).to_be_visible()
    assert new.evaluate(KEPT) == {"enrolled": None, "pending": None}
    old.get_by_role("button", name="Set up another phone").tap()
    old.get_by_label("The code the new phone shows").fill(code)
    old.get_by_role("button", name="Continue").tap()
    expect(old.locator("#review-name")).to_have_text("New phone")  # still waiting there


@pytest.mark.idp_config(IDP_ENROLLMENT_TTL=60)
def test_an_unanswered_code_expires_on_both_phones(chromium, site):
    old = enroll_in_app(phone_context(chromium), site.issuer)
    new, code = ask_for_approval(phone_context(chromium), site.issuer, name="New phone")
    expect(new.get_by_role("alert")).to_have_text("The code expired: set up again.", timeout=90_000)
    expect(new.locator("#screen-enroll")).to_be_visible()
    assert new.evaluate(KEPT) == {"enrolled": None, "pending": None}
    old.get_by_role("button", name="Set up another phone").tap()
    old.get_by_label("The code the new phone shows").fill(code)
    old.get_by_role("button", name="Continue").tap()
    expect(old.get_by_role("alert")).to_have_text("That code is wrong or expired.")


@pytest.mark.idp_config(IDP_PASSWORD_ENROLLMENT="never")
def test_password_enrollment_switched_off_says_ask_for_an_invitation(chromium, site):
    phone = phone_context(chromium).new_page()
    phone.goto(f"{site.issuer}/app/")
    phone.get_by_label("Username").fill("alice")
    phone.get_by_label("Password").fill(PASSWORD)
    phone.get_by_role("button", name="Set up this phone").tap()
    expect(phone.get_by_role("alert")).to_have_text(
        "Setting up a phone with a password is switched off here: ask your administrator"
        " for an invitation."
    )
    expect(phone.locator("#screen-enroll")).to_be_visible()
