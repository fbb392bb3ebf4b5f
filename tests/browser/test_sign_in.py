"""Sign in as a person does: the demo RP's button, the authorize page in Chromium, the
QR code read from a screenshot of the screen by the phone app, and the browser landing
back on the RP."""

from __future__ import annotations

import re

import pytest
import requests
from playwright.sync_api import expect

from desktop import PHONE, new_context, read_qr, shot, start_sign_in
from idp_phone.api import PhoneApiError, PhoneClient
from phone import enroll
from support import PASSWORD


def test_approve(chromium, site):
    phone = enroll(site)
    context = new_context(chromium)
    page = start_sign_in(context, site)
    shot(page, "authorize-page")
    text = read_qr(page, site.tmp)
    assert text.startswith(f"{site.issuer}/q/")

    view = phone.scan(text)["login_request"]
    assert view["client"]["name"] == "Demo RP"
    expect(page.locator("#status")).to_have_text("Scanned — confirm on your phone")
    shot(page, "scanned")

    phone.approve(view["id"])
    page.wait_for_url(f"{site.rp_url}/")
    expect(page.get_by_text("Alice Example").first).to_be_visible()
    expect(page.get_by_text("alice@example.com").first).to_be_visible()
    shot(page, "signed-in")
    context.close()


@pytest.mark.idp_config(IDP_NUMBER_MATCHING=True)
def test_number_matching(chromium, site):
    """The page shows two digits after the scan; the phone picks them to approve."""
    phone = enroll(site)
    context = new_context(chromium)
    page = start_sign_in(context, site)
    view = phone.scan(read_qr(page, site.tmp))["login_request"]
    number = page.locator("#match-number")
    expect(number).to_be_visible()
    shown = number.inner_text().strip()
    assert shown in view["number_matching"]["choices"]
    expect(page.locator("#status")).to_have_text(f"Scanned — on your phone, tap {shown} to approve")
    shot(page, "number-matching")
    phone.approve(view["id"], shown)
    page.wait_for_url(f"{site.rp_url}/")
    expect(page.get_by_text("Alice Example").first).to_be_visible()
    context.close()


def test_deny(chromium, site):
    phone = enroll(site)
    context = new_context(chromium)
    page = start_sign_in(context, site)
    view = phone.scan(read_qr(page, site.tmp))["login_request"]
    phone.deny(view["id"])
    page.wait_for_url(f"{site.rp_url}/callback?*")
    assert "error=access_denied" in page.url
    expect(page.get_by_role("heading", name="Sign-in was denied on the phone")).to_be_visible()
    shot(page, "denied")
    context.close()


REFUSED_ON_THE_PAGE = (
    "This sign-in was refused: the phone that scanned the code is not on this computer's"
    " network. Start again, and scan the new code with your own phone, on this network."
)


@pytest.mark.idp_config(IDP_TRUSTED_PROXIES=1, IDP_PROXIMITY="require_same_network")
def test_a_relayed_code_is_refused_and_the_page_says_why(chromium, site):
    """The relay: this page's QR code approved by a phone on another network (its requests
    reach the IdP through a trusted proxy saying 198.51.100.9; the page's come from
    127.0.0.1). The page says why it was refused, then goes back to the site."""
    far = requests.Session()
    far.headers["X-Forwarded-For"] = "198.51.100.9"
    phone = PhoneClient(site.tmp / "phone", session=far)
    phone.enroll(site.issuer, "alice", PASSWORD, "Alice's phone")
    context = new_context(chromium)
    page = start_sign_in(context, site)
    view = phone.scan(read_qr(page, site.tmp))["login_request"]
    assert view["proximity"]["allowed"] is False
    with pytest.raises(PhoneApiError) as refused:
        phone.approve(view["id"])
    assert (refused.value.status, refused.value.error) == (403, "different_network")
    expect(page.locator("#status")).to_have_text(REFUSED_ON_THE_PAGE)
    shot(page, "refused-relay")
    page.wait_for_url(f"{site.rp_url}/callback?*")  # the usual way on, once it was read
    assert "error=access_denied" in page.url
    context.close()


@pytest.mark.idp_config(IDP_LOGIN_REQUEST_TTL=4)
def test_an_expired_code_is_replaced_by_itself(chromium, site):
    phone = enroll(site)
    context = new_context(chromium)
    page = start_sign_in(context, site)
    old = read_qr(page, site.tmp, "old.png")
    # Nobody touches the page: it renews the code when the old one expires.
    expect(page.locator("#qr-text")).not_to_have_text(old)
    expect(page.locator("#status")).to_have_text("Scan with the QR-IdP app")
    new = read_qr(page, site.tmp, "new.png")
    assert new != old
    with pytest.raises(PhoneApiError) as refused:
        phone.scan(old)
    assert refused.value.error == "expired"
    phone.approve(phone.scan(new)["login_request"]["id"])
    page.wait_for_url(f"{site.rp_url}/")
    expect(page.get_by_text("Alice Example").first).to_be_visible()
    context.close()


@pytest.mark.idp_config(IDP_PASSWORD_ENROLLMENT="always")  # two phones of alice
def test_a_code_scanned_by_the_wrong_phone_is_given_back_as_a_new_one(chromium, site):
    """Someone else's phone scanned the code (a glimpse of the screen): "Not you? Show a
    new code" ends that request, and the page shows a fresh code and follows it."""
    passer_by = enroll(site)  # any enrolled phone; here the same account's, which is enough
    context = new_context(chromium)
    page = start_sign_in(context, site)
    not_you = page.get_by_role("button", name="Not you? Show a new code")
    expect(not_you).to_be_hidden()  # nothing to give back before a scan
    old = read_qr(page, site.tmp, "old.png")
    view = passer_by.scan(old)["login_request"]
    expect(page.locator("#status")).to_have_text("Scanned — confirm on your phone")
    shot(page, "scanned-not-you")

    not_you.click()
    expect(page.locator("#qr-text")).not_to_have_text(old)
    expect(page.locator("#status")).to_have_text("Scan with the QR-IdP app")
    expect(not_you).to_be_hidden()
    new = read_qr(page, site.tmp, "new.png")
    assert new != old
    with pytest.raises(PhoneApiError) as refused:  # the old scan decides nothing now
        passer_by.approve(view["id"])
    assert refused.value.error == "already_used"

    phone = enroll(site, "right-phone")
    fresh = phone.scan(new)["login_request"]
    expect(page.locator("#status")).to_have_text("Scanned — confirm on your phone")  # followed
    expect(not_you).to_be_visible()
    phone.approve(fresh["id"])
    page.wait_for_url(f"{site.rp_url}/")
    expect(page.get_by_text("Alice Example").first).to_be_visible()
    context.close()


def test_the_server_restarting_while_the_page_waits(chromium, site):
    """A deploy restarts the IdP under a waiting page: the page reconnects by itself and
    the login completes."""
    phone = enroll(site)
    context = new_context(chromium)
    page = start_sign_in(context, site)
    text = read_qr(page, site.tmp)
    assert site.idp.terminate() == 0
    site.idp.start()
    view = phone.scan(text)["login_request"]
    expect(page.locator("#status")).to_have_text("Scanned — confirm on your phone")
    phone.approve(view["id"])
    page.wait_for_url(f"{site.rp_url}/")
    expect(page.get_by_text("Alice Example").first).to_be_visible()
    context.close()


# Counts the page's closed WebSockets (a refused connection closes too), for the test.
COUNT_CLOSED_SOCKETS = """
(() => {
  const Native = window.WebSocket;
  window.closedSockets = 0;
  window.WebSocket = function (url, protocols) {
    const socket = new Native(url, protocols);
    socket.addEventListener("close", () => { window.closedSockets += 1; });
    return socket;
  };
  window.WebSocket.prototype = Native.prototype;
})();
"""


@pytest.mark.idp_config(IDP_LOGIN_REQUEST_TTL=600)
def test_the_page_keeps_reconnecting_while_its_code_is_valid(chromium, site):
    """A server away for a long deploy: the page retries for as long as its code is valid
    (it gave up after eight tries, about 45 s, with minutes left), and once the server is
    back it reconnects, reads the state and the login goes on. The page's clock is
    Playwright's, moved on by hand: no waiting out the backoff in real time."""
    phone = enroll(site)
    context = new_context(chromium)
    context.add_init_script(COUNT_CLOSED_SOCKETS)
    context.clock.install()
    page = start_sign_in(context, site)
    text = read_qr(page, site.tmp)
    assert site.idp.terminate() == 0
    refresh = page.locator("#refresh")
    for closed in range(1, 13):  # each failed try closes one socket; 12 > the old 8
        page.wait_for_function(f"window.closedSockets >= {closed}")
        expect(refresh).to_be_hidden()
        expect(page.locator("#status")).to_have_text("Scan with the QR-IdP app")
        # Past any backoff (under 10 s of the page's time): the next try starts.
        page.clock.run_for(10_000)
    site.idp.start()
    view = phone.scan(text)["login_request"]
    # The next try reaches the server, which sends the current state first. A try already
    # under way while the server came back may still fail (on a loaded machine): the page
    # then waits out one more backoff, so the clock moves on until the state arrives.
    status = page.locator("#status")
    for _ in range(5):
        page.clock.run_for(10_000)
        try:
            expect(status).to_have_text("Scanned — confirm on your phone", timeout=3_000)
            break
        except AssertionError:
            continue
    expect(status).to_have_text("Scanned — confirm on your phone")
    phone.approve(view["id"])
    page.wait_for_url(f"{site.rp_url}/")
    expect(page.get_by_text("Alice Example").first).to_be_visible()
    context.close()


@pytest.mark.idp_config(IDP_LOGIN_REQUEST_TTL=30)
def test_a_page_whose_code_expired_while_the_server_was_away_offers_a_new_one(chromium, site):
    """Past the code's expiry the page stops retrying and says the connection was lost,
    with the button for a new code."""
    context = new_context(chromium)
    context.add_init_script(COUNT_CLOSED_SOCKETS)
    context.clock.install()
    page = start_sign_in(context, site)
    assert site.idp.terminate() == 0
    page.wait_for_function("window.closedSockets >= 1")
    page.clock.run_for(31_000)  # past the code's 30 s; the pending try fails once more
    expect(page.locator("#status")).to_have_text("Connection lost — get a new code to try again")
    expect(page.locator("#refresh")).to_be_visible()
    context.close()


def test_another_browser_cannot_reach_the_result(chromium, site):
    """An attacker who has the QR link (or sees the page's URLs) but not the browser
    that opened it gets nothing: no socket, no completion, no code."""
    phone = enroll(site)
    victim = new_context(chromium)
    page = start_sign_in(victim, site)
    text = read_qr(page, site.tmp)
    state = page.locator("#qr-login").get_attribute("data-state") or ""
    complete_path = re.search(r'"complete_url": *"([^"]+)"', state).group(1)  # type: ignore[union-attr]

    attacker = new_context(chromium)
    spy = attacker.new_page()
    spy.goto(site.rp_url + "/")  # any page, for a same-site fetch context
    view = phone.scan(text)["login_request"]
    phone.approve(view["id"])
    page.wait_for_url(f"{site.rp_url}/")  # the victim is signed in

    response = spy.goto(site.issuer + complete_path)
    assert response is not None
    assert response.status == 403
    expect(spy.get_by_text("This sign-in was started elsewhere or is over")).to_be_visible()
    assert not spy.url.startswith(site.rp_url + "/callback")
    victim.close()
    attacker.close()


def test_a_phone_sized_screen_shows_a_readable_code(chromium, site):
    phone = enroll(site)
    context = new_context(chromium, viewport=PHONE, device_scale_factor=2, is_mobile=True)
    page = start_sign_in(context, site)
    box = page.locator("#qr svg").bounding_box()
    assert box is not None
    assert box["x"] >= 0
    assert box["x"] + box["width"] <= PHONE["width"]
    assert box["width"] >= 200  # CSS pixels: big enough for another phone's camera
    shot(page, "authorize-page-phone")
    text = read_qr(page, site.tmp)
    phone.approve(phone.scan(text)["login_request"]["id"])
    page.wait_for_url(f"{site.rp_url}/")
    context.close()


def test_cant_scan_shows_a_code_to_type(chromium, site):
    phone = enroll(site)
    context = new_context(chromium)
    page = start_sign_in(context, site)
    # By keyboard alone: Tab until "Can't scan?" has the focus, then Enter.
    for _ in range(10):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.tagName") == "SUMMARY":
            break
    assert page.evaluate("document.activeElement.textContent") == "Can't scan?"
    page.keyboard.press("Enter")
    code = page.locator("#short-code")
    expect(code).to_have_text(re.compile(r"^[A-Z]{4}-[A-Z]{4}$"))
    expect(page.locator("#short-code-note")).to_have_text(re.compile(r"Valid for \d+ seconds"))
    shot(page, "cant-scan")
    view = phone.scan_code(code.inner_text())["login_request"]
    expect(page.locator("#status")).to_have_text("Scanned — confirm on your phone")
    phone.approve(view["id"])
    page.wait_for_url(f"{site.rp_url}/")
    expect(page.get_by_text("Alice Example").first).to_be_visible()
    context.close()


def test_a_chinese_browser_gets_the_page_in_chinese(chromium, site):
    phone = enroll(site)
    context = new_context(chromium, locale="zh-CN")  # sends Accept-Language: zh-CN
    page = context.new_page()
    page.goto(site.rp_url + "/")
    page.get_by_role("button", name="Sign in with your phone").click()
    page.wait_for_url(f"{site.issuer}/authorize?*")
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    expect(page.get_by_role("heading")).to_have_text("用手机登录 Demo RP")
    expect(page.locator("#status")).to_have_text("请用 QR-IdP App 扫码")
    expect(page.locator("#countdown")).to_contain_text("二维码将在")
    shot(page, "authorize-page-zh-CN")
    view = phone.scan(read_qr(page, site.tmp))["login_request"]
    expect(page.locator("#status")).to_have_text("已扫码——请在手机上确认")
    phone.approve(view["id"])
    page.wait_for_url(f"{site.rp_url}/")
    context.close()
