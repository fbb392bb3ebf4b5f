"""The desktop side of the browser tests: a laptop-sized context that goes from the demo
RP to the authorize page, and reads the QR code back from the pixels on its screen."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, BrowserContext, Page, expect

from idp_phone.qr import decode_qr

LAPTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
# Every wait is on a state, with room for a loaded machine: Playwright's actions and
# waits (here) and its expect() assertions (tests/browser/conftest.py) wait this long.
WAIT_MS = 30_000


def new_context(chromium: Browser, **options: object) -> BrowserContext:
    context = chromium.new_context(**({"viewport": LAPTOP} | options))  # type: ignore[arg-type]
    context.set_default_timeout(WAIT_MS)
    return context


def start_sign_in(context: BrowserContext, site: Any) -> Page:
    """Open the RP, press its sign-in button, and wait for the QR page."""
    page = context.new_page()
    page.goto(site.rp_url + "/")
    page.get_by_role("button", name="Sign in with your phone").click()
    page.wait_for_url(f"{site.issuer}/authorize?*")
    expect(page.locator("#qr svg")).to_be_visible()
    expect(page.locator("#status")).to_have_text("Scan with the QR-IdP app")
    return page


def read_qr(page: Page, tmp: Path, name: str = "screen.png") -> str:
    """What a phone camera pointed at the screen reads: decode a screenshot."""
    path = tmp / name
    page.screenshot(path=str(path))
    return decode_qr(path)


def shot(page: Page, name: str) -> None:
    """Keep a picture of this state for the README (only with IDP_SCREENSHOTS=dir)."""
    if folder := os.environ.get("IDP_SCREENSHOTS"):
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)


def show_short_code(page: Page) -> str:
    """Open "Can't scan?" on the authorize page: the code it shows, to type on the phone."""
    page.get_by_text("Can't scan?").click()
    code = page.locator("#short-code")
    expect(code).to_have_text(re.compile(r"^[A-Z]{4}-[A-Z]{4}$"))
    return code.inner_text()
