"""The phone side of the browser tests: a phone-sized, touch, phone-user-agent context
that uses the IdP's own web app (``/app/``), as a person with only a phone browser does."""

from __future__ import annotations

import re
import subprocess
from typing import Any

from playwright.sync_api import Browser, BrowserContext, Page, expect

from cluster import BIN
from idp_phone.api import PhoneClient
from support import PASSWORD

WAIT_MS = 30_000
ENROLLMENT_CODE = re.compile(r"^[A-Z0-9]{4}-[A-Z0-9]{4}$")
ANDROID = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Mobile Safari/537.36"
)
PHONE_OPTIONS: dict[str, Any] = {
    "viewport": {"width": 390, "height": 844},
    "device_scale_factor": 2,
    "is_mobile": True,
    "has_touch": True,
    "user_agent": ANDROID,
}


def phone_context(chromium: Browser, **options: Any) -> BrowserContext:
    context = chromium.new_context(**(PHONE_OPTIONS | options))
    context.set_default_timeout(WAIT_MS)
    context.on("page", lambda page: page.on("dialog", lambda dialog: dialog.accept()))
    return context


def enroll_in_app(context: BrowserContext, issuer: str, *, name: str | None = None) -> Page:
    """Open ``/app/``, set up this phone with alice's password, and land on the home screen."""
    page = context.new_page()
    page.goto(f"{issuer}/app/")
    expect(page.get_by_role("heading", name="Set up this phone")).to_be_visible()
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill(PASSWORD)
    if name is not None:
        page.get_by_label("Name of this phone").fill(name)
    page.get_by_role("button", name="Set up this phone").tap()
    expect(page.locator("#home-who")).to_have_text("This phone signs in as Alice Example (alice).")
    return page


def ask_for_approval(context: BrowserContext, issuer: str, *, name: str) -> tuple[Page, str]:
    """A new phone of alice's (she has one already): her password, then the waiting screen.
    Returns the page and the code it shows, to type on the old phone."""
    page = context.new_page()
    page.goto(f"{issuer}/app/")
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_label("Name of this phone").fill(name)
    page.get_by_role("button", name="Set up this phone").tap()
    expect(
        page.get_by_role("heading", name="Approve this phone on your other phone")
    ).to_be_visible()
    code = page.locator("#pending-code")
    expect(code).to_have_text(ENROLLMENT_CODE)
    return page, code.inner_text()


def answer_code(old: Page, code: str) -> None:
    """On a phone set up already: Set up another phone, the code typed, the review screen."""
    old.get_by_role("button", name="Set up another phone").tap()
    old.get_by_label("The code the new phone shows").fill(code)
    old.get_by_role("button", name="Continue").tap()
    expect(old.get_by_role("heading", name="Let a new phone sign in as you?")).to_be_visible()


def enroll_approved_in_app(context: BrowserContext, issuer: str, old: Page, *, name: str) -> Page:
    """Set up another phone of alice's as a person does: the new phone sends her password,
    the old one (on its home screen) types the code and approves; the new one lands home."""
    page, code = ask_for_approval(context, issuer, name=name)
    answer_code(old, code)
    old.get_by_role("button", name="Approve").tap()
    expect(old.get_by_role("heading", name=f"{name} is set up.")).to_be_visible()
    expect(page.locator("#home-who")).to_have_text("This phone signs in as Alice Example (alice).")
    return page


def idp_command(idp: Any, *args: str, stdin: str | None = None) -> str:
    """Run ``idp ARGS`` against the running IdP's database, as its admin would (``stdin``:
    what it reads, e.g. a password)."""
    done = subprocess.run(
        [str(BIN / "idp"), *args],
        env=idp.env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def enroll(site: Any, profile: str = "phone") -> PhoneClient:
    """The reference phone client, idp-phone, enrolled as alice's phone (its profile in
    ``site.tmp / profile``: another name for another phone)."""
    phone = PhoneClient(site.tmp / profile)
    phone.enroll(site.issuer, "alice", PASSWORD, "Alice's phone")
    return phone
