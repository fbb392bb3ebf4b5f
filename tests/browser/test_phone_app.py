"""The phone web app in a real browser: a phone context (phone-sized, touch, a phone's
user agent) uses ``/app/`` as a person with only a phone browser does, and a desktop
context signs in to the demo RP. The QR code is read from the desktop page's pixels and
opened in the phone browser, as its camera app would open it."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
from pathlib import Path
from urllib.parse import urlencode

import pytest
from joserfc import jws
from joserfc.jwk import ECKey
from playwright.sync_api import Page, expect

from camera import write_y4m
from desktop import new_context, read_qr, shot, show_short_code, start_sign_in
from idp.webapp.views import APP_FILES
from phone import enroll, enroll_approved_in_app, enroll_in_app, idp_command, phone_context
from support import PASSWORD

SCOPE_TEXT = "Sign you in with your account identifier"


def open_qr(phone: Page, url: str) -> None:
    """The phone's camera app opened the QR code's URL in this browser."""
    phone.goto(url)


def expect_signed_in(desktop: Page, site) -> None:
    desktop.wait_for_url(f"{site.rp_url}/")  # the RP validated the ID token to get here
    expect(desktop.get_by_text("Alice Example").first).to_be_visible()


# Runs in the page: what changed inside a live region (what a screen reader reads out
# unasked) in 3 seconds.
ANNOUNCED_IN_3_SECONDS = """async () => {
  const live = "[aria-live]:not([aria-live=off]), [role=alert], [role=status], [role=log]";
  const changed = [];
  const observer = new MutationObserver((records) => {
    for (const record of records) {
      const target = record.target.nodeType === Node.ELEMENT_NODE
        ? record.target : record.target.parentElement;
      const region = target && target.closest(live);
      if (region) { changed.push(region.id || region.tagName); }
    }
  });
  observer.observe(document.body, { subtree: true, childList: true, characterData: true });
  await new Promise((resolve) => setTimeout(resolve, 3000));
  observer.disconnect();
  return changed;
}"""


def test_approve_from_the_qr_url(chromium, site):
    phone = enroll_in_app(phone_context(chromium), site.issuer)
    # Not installed to the home screen: it says what a browser may do to its key.
    expect(phone.locator("#storage-note")).to_contain_text("Safari")
    shot(phone, "phone-home")
    desktop = start_sign_in(new_context(chromium), site)
    open_qr(phone, read_qr(desktop, site.tmp))
    expect(phone.get_by_role("heading", name="Sign in to Demo RP?")).to_be_visible()
    expect(phone.locator("#request-scopes")).to_contain_text(SCOPE_TEXT)
    expect(phone.locator("#request-warnings")).to_have_text(  # both on 127.0.0.1
        "This sign-in was started on the same network as your phone."
    )
    expect(phone.locator("#request-host")).to_have_text(re.compile(r"^localhost:\d+$"))
    expect(phone.locator("#request-browser")).to_contain_text("Chrome on Linux at 127.0.0.1")
    expect(phone.locator("#request-left")).to_contain_text("left to answer")
    approve, deny = (
        phone.get_by_role("button", name="Approve"),
        phone.get_by_role("button", name="Deny"),
    )
    a, d = approve.bounding_box(), deny.bounding_box()
    assert a and d and (a["width"], a["height"]) == (d["width"], d["height"])  # equally prominent
    expect(desktop.locator("#status")).to_have_text("Scanned — confirm on your phone")
    assert phone.evaluate(ANNOUNCED_IN_3_SECONDS) == []  # the countdown ticks silently
    shot(phone, "phone-request")
    approve.tap()
    expect(phone.get_by_role("heading", name="Done: return to your computer")).to_be_visible()
    shot(phone, "phone-done")
    expect_signed_in(desktop, site)


def test_deny_from_the_phone(chromium, site):
    phone = enroll_in_app(phone_context(chromium), site.issuer)
    desktop = start_sign_in(new_context(chromium), site)
    open_qr(phone, read_qr(desktop, site.tmp))
    phone.get_by_role("button", name="Deny").tap()
    expect(phone.get_by_role("heading", name="Denied: nobody was signed in")).to_be_visible()
    desktop.wait_for_url(f"{site.rp_url}/callback?*")
    assert "error=access_denied" in desktop.url


@pytest.mark.idp_config(IDP_NUMBER_MATCHING=True)
def test_number_matching_the_right_and_a_wrong_number(chromium, site):
    phone = enroll_in_app(phone_context(chromium), site.issuer)
    desktop = start_sign_in(new_context(chromium), site)
    open_qr(phone, read_qr(desktop, site.tmp))
    expect(phone.get_by_text("Which number does the computer show?")).to_be_visible()
    expect(phone.get_by_role("button", name="Approve")).to_be_hidden()
    choices = phone.locator("#number-choices button")
    expect(choices).to_have_count(3)
    shown = desktop.locator("#match-number")
    expect(shown).to_be_visible()
    row, deny = (
        phone.locator("#number-choices").bounding_box(),
        phone.locator("#deny").bounding_box(),
    )
    assert row and deny and deny["width"] == row["width"]  # Deny as wide as the three numbers
    shot(phone, "phone-number-matching")
    phone.get_by_role("button", name=shown.inner_text().strip(), exact=True).tap()
    expect(phone.get_by_role("heading", name="Done: return to your computer")).to_be_visible()
    expect_signed_in(desktop, site)

    other = start_sign_in(new_context(chromium), site)
    open_qr(phone, read_qr(other, site.tmp, "second.png"))
    expect(choices).to_have_count(3)
    right = other.locator("#match-number")
    expect(right).to_be_visible()
    wrong = next(n for n in choices.all_inner_texts() if n != right.inner_text().strip())
    phone.get_by_role("button", name=wrong, exact=True).tap()
    expect(
        phone.get_by_role("heading", name="Wrong number: the sign-in was denied")
    ).to_be_visible()
    other.wait_for_url(f"{site.rp_url}/callback?*")
    assert "error=access_denied" in other.url


FAR = {"X-Forwarded-For": "198.51.100.9"}  # through the trusted proxy: another network


@pytest.mark.idp_config(IDP_TRUSTED_PROXIES=1, IDP_PROXIMITY="require_same_network")
def test_a_phone_off_the_computers_network_is_offered_only_deny(chromium, site):
    """The scan answer says in advance that this phone may not approve (``allowed``
    false): the app shows the refusal first and offers Deny alone."""
    phone = enroll_in_app(phone_context(chromium, extra_http_headers=FAR), site.issuer)
    desktop = start_sign_in(new_context(chromium), site)
    open_qr(phone, read_qr(desktop, site.tmp))
    expect(phone.get_by_role("heading", name="Sign in to Demo RP?")).to_be_visible()
    expect(phone.locator("#request-warnings")).to_have_text(
        "This site accepts sign-ins only from a phone on the same network as the computer,"
        " and this phone is not on it: this sign-in can only be denied. If you are at that"
        " computer, connect this phone to its network (its Wi-Fi), then scan the code again."
    )
    expect(phone.get_by_role("button", name="Approve")).to_be_hidden()
    deny = phone.get_by_role("button", name="Deny")
    expect(deny).to_be_visible()
    shot(phone, "phone-refused-network")
    deny.tap()
    expect(phone.get_by_role("heading", name="Denied: nobody was signed in")).to_be_visible()
    desktop.wait_for_url(f"{site.rp_url}/callback?*")
    assert "error=access_denied" in desktop.url


@pytest.mark.idp_config(IDP_TRUSTED_PROXIES=1, IDP_PROXIMITY="require_same_network")
def test_a_phone_that_left_the_network_before_approving_is_refused(chromium, site):
    """Scanned on the computer's network, approved from another: the approval's own
    address decides. The phone says so, and so does the page."""
    context = phone_context(chromium)
    phone = enroll_in_app(context, site.issuer)
    desktop = start_sign_in(new_context(chromium), site)
    open_qr(phone, read_qr(desktop, site.tmp))
    approve = phone.get_by_role("button", name="Approve")
    expect(approve).to_be_visible()  # both on 127.0.0.1: allowed
    context.set_extra_http_headers(FAR)  # off the Wi-Fi, onto mobile data
    approve.tap()
    expect(
        phone.get_by_role("heading", name="Refused: this phone is not on the computer's network")
    ).to_be_visible()
    expect(desktop.locator("#status")).to_have_text(
        re.compile(r"^This sign-in was refused: the phone that scanned the code is not on")
    )
    desktop.wait_for_url(f"{site.rp_url}/callback?*")
    assert "error=access_denied" in desktop.url


@pytest.mark.idp_config(IDP_LOGIN_REQUEST_TTL=6)
def test_an_expired_code_says_so_and_cannot_be_approved(chromium, site):
    phone = enroll_in_app(phone_context(chromium), site.issuer)
    desktop = start_sign_in(new_context(chromium), site)
    url = read_qr(desktop, site.tmp)
    open_qr(phone, url)
    expect(phone.get_by_role("heading", name="Sign in to Demo RP?")).to_be_visible()
    # Nobody answers: the time runs out on the phone's screen too.
    expect(phone.locator("#request-left")).to_have_text(
        "Time is up: this sign-in code has expired."
    )
    expect(phone.get_by_role("button", name="Approve")).to_be_disabled()
    expect(phone.get_by_role("alert")).to_have_text(
        "This sign-in code has expired. Get a new code on the computer and scan it again."
    )
    # Opened again later (the desktop page has a new code by then): the same sentence.
    open_qr(phone, url)
    expect(phone.get_by_role("alert")).to_have_text(
        "This sign-in code has expired. Get a new code on the computer and scan it again."
    )


def test_a_short_code_typed_in_the_app(chromium, site):
    phone = enroll_in_app(phone_context(chromium), site.issuer)
    desktop = start_sign_in(new_context(chromium), site)
    code = show_short_code(desktop)
    phone.get_by_label("Can't scan? Type the code the computer or device shows").fill(
        code.lower().replace("-", " ")  # as a person might type it
    )
    phone.get_by_role("button", name="Continue").tap()
    expect(phone.get_by_role("heading", name="Sign in to Demo RP?")).to_be_visible()
    phone.get_by_role("button", name="Approve").tap()
    expect_signed_in(desktop, site)


def test_a_mistyped_code_is_a_plain_sentence(chromium, site):
    phone = enroll_in_app(phone_context(chromium), site.issuer)
    field = phone.get_by_label("Can't scan? Type the code the computer or device shows")
    field.fill("ACDE-FGHJ")
    phone.get_by_role("button", name="Continue").tap()
    expect(phone.get_by_role("alert")).to_have_text(
        "No sign-in is waiting for this code. Check the code on the computer and try again."
    )
    field.fill("ABCD")
    phone.get_by_role("button", name="Continue").tap()
    expect(phone.get_by_role("alert")).to_have_text(
        "That is not a sign-in code: it has 8 letters, like ACDE-FGHJ. Check it and try again."
    )


def test_a_browser_without_the_key_changes_nothing_then_sets_up_and_returns(chromium, site):
    desktop = start_sign_in(new_context(chromium), site)
    phone = phone_context(chromium).new_page()
    open_qr(phone, read_qr(desktop, site.tmp))
    expect(phone.get_by_role("heading", name="Set up this phone")).to_be_visible()
    expect(phone.locator("#enroll-note")).to_have_text(
        "Set up this phone first, then you can answer this sign-in."
    )
    expect(phone.get_by_label("Name of this phone")).to_have_value("Chrome on Android")
    expect(desktop.locator("#status")).to_have_text("Scan with the QR-IdP app")  # unchanged
    shot(phone, "phone-enroll")
    phone.get_by_label("Username").fill("alice")
    phone.get_by_label("Password").fill("not the password")
    phone.get_by_role("button", name="Set up this phone").tap()
    expect(phone.get_by_role("alert")).to_have_text("The username or password is wrong.")
    phone.get_by_label("Password").fill(PASSWORD)
    phone.get_by_role("button", name="Set up this phone").tap()
    expect(phone.get_by_role("heading", name="Sign in to Demo RP?")).to_be_visible()
    phone.get_by_role("button", name="Approve").tap()
    expect_signed_in(desktop, site)


KEY_OF_THIS_PHONE = """async () => {
  const keystore = await import("/static/app/keystore.js");
  const record = await keystore.load(JSON.parse(
    document.getElementById("phone-app").getAttribute("data-state")).issuer);
  let exported = "no";
  try { await crypto.subtle.exportKey("jwk", record.keyPair.privateKey); exported = "yes"; }
  catch (error) { exported = error.name; }
  const key = record.keyPair.privateKey;
  return {deviceId: record.deviceId, extractable: key.extractable, exported, type: key.type,
          password: JSON.stringify(record).includes("battery")};
}"""

ANOTHER_KEY_AS_THAT_PHONE = """async ([deviceId, qr]) => {
  const { PhoneApi } = await import("/static/app/api.js");
  const { newDeviceKey } = await import("/static/app/proof.js");
  const state = JSON.parse(document.getElementById("phone-app").getAttribute("data-state"));
  const api = new PhoneApi(state, await newDeviceKey(), deviceId);
  try { await api.scanUrl(qr); return "accepted"; } catch (error) { return error.code; }
}"""


def test_the_key_survives_a_reload_never_leaves_and_works_nowhere_else(chromium, site):
    phone = enroll_in_app(phone_context(chromium), site.issuer)
    phone.reload()
    expect(phone.locator("#home-who")).to_have_text("This phone signs in as Alice Example (alice).")
    expect(phone.locator("#devices")).to_contain_text("Chrome on Android")
    expect(phone.locator("#devices")).to_contain_text("This phone")
    key = phone.evaluate(KEY_OF_THIS_PHONE)
    assert key["type"] == "private" and key["extractable"] is False
    assert key["exported"] == "InvalidAccessError"  # exportKey refuses
    assert key["password"] is False  # the password is not kept

    desktop = start_sign_in(new_context(chromium), site)
    qr = read_qr(desktop, site.tmp)
    other = phone_context(chromium).new_page()
    other.goto(f"{site.issuer}/app/")
    expect(other.get_by_role("heading", name="Set up this phone")).to_be_visible()  # its own store
    assert other.evaluate(ANOTHER_KEY_AS_THAT_PHONE, [key["deviceId"], qr]) == "invalid_proof"
    expect(desktop.locator("#status")).to_have_text("Scan with the QR-IdP app")


def test_a_phone_removed_from_the_cli_says_so(chromium, site):
    phone = enroll_in_app(phone_context(chromium), site.issuer)
    device_id = phone.evaluate(KEY_OF_THIS_PHONE)["deviceId"]
    assert "revoked" in idp_command(site.idp, "devices", "revoke", device_id)
    phone.reload()
    expect(phone.get_by_role("heading", name="This phone was removed")).to_be_visible()
    shot(phone, "phone-removed")
    phone.get_by_role("button", name="Set up this phone").tap()
    expect(phone.get_by_role("heading", name="Set up this phone")).to_be_visible()


def test_the_phones_list_removes_another_phone_and_this_one(chromium, site):
    first = enroll_in_app(phone_context(chromium), site.issuer, name="Old phone")
    second = enroll_approved_in_app(phone_context(chromium), site.issuer, first, name="New phone")
    devices = second.locator("#devices")
    expect(devices.locator("li")).to_have_count(2)
    second.get_by_role("button", name="Remove Old phone").tap()
    expect(second.get_by_role("alert")).to_have_text("Old phone was removed.")
    expect(devices.locator("li")).to_have_count(1)
    first.reload()
    expect(first.get_by_role("heading", name="This phone was removed")).to_be_visible()
    second.get_by_role("button", name="Remove New phone").tap()
    expect(second.get_by_role("heading", name="This phone was removed")).to_be_visible()


def test_a_chinese_phone_gets_the_chinese_app(chromium, site):
    context = phone_context(chromium, locale="zh-CN")
    phone = context.new_page()
    phone.goto(f"{site.issuer}/app/")
    expect(phone.locator("html")).to_have_attribute("lang", "zh-CN")
    expect(phone.get_by_role("heading", name="设置这部手机")).to_be_visible()
    phone.get_by_label("用户名").fill("alice")
    phone.get_by_label("密码").fill(PASSWORD)
    phone.get_by_role("button", name="设置这部手机").tap()
    expect(phone.locator("#home-who")).to_have_text("这部手机以 Alice Example（alice）的身份登录。")
    desktop = start_sign_in(new_context(chromium), site)
    open_qr(phone, read_qr(desktop, site.tmp))
    expect(phone.get_by_role("heading", name="要登录 Demo RP 吗？")).to_be_visible()
    expect(phone.locator("#request-scopes")).to_contain_text("用你的账号标识为你登录")
    shot(phone, "phone-request-zh-CN")
    phone.get_by_role("button", name="批准").tap()
    expect(phone.get_by_role("heading", name="完成：请回到你的电脑")).to_be_visible()
    expect_signed_in(desktop, site)


SERVICE_WORKER_STATE = """async () => {
  const registration = await navigator.serviceWorker.ready;
  const cache = await caches.open("qr-idp-app-v1");
  const kept = (await cache.keys()).map((request) => new URL(request.url).pathname);
  return {scope: new URL(registration.scope).pathname, kept, names: await caches.keys()};
}"""

OFFLINE_FETCHES = """async (paths) => {
  const answers = {};
  for (const path of paths) {
    try { answers[path] = (await fetch(path, {cache: "no-store"})).status; }
    catch (error) { answers[path] = "network error"; }
  }
  return answers;
}"""


def test_the_service_worker_keeps_the_apps_files_and_nothing_else(chromium, site):
    context = phone_context(chromium)
    phone = enroll_in_app(context, site.issuer)
    state = phone.evaluate(SERVICE_WORKER_STATE)
    assert state["scope"] == "/app/"
    assert state["names"] == ["qr-idp-app-v1"]
    assert sorted(state["kept"]) == sorted(f"/static/{name}" for name in APP_FILES)
    phone.reload()  # now the page is the worker's client
    phone.wait_for_function("navigator.serviceWorker.controller !== null")
    context.set_offline(True)
    paths = ["/static/app/app.js", "/api/mobile/v1/devices/me", "/q/x", "/authorize", "/token"]
    answers = phone.evaluate(OFFLINE_FETCHES, [*paths, "/app/"])
    assert answers.pop("/static/app/app.js") == 200  # from the cache
    assert set(answers.values()) == {"network error"}, answers  # never answered from it


def test_an_invitation_sets_up_a_phone_without_a_password_once(chromium, site):
    printed = idp_command(site.idp, "users", "invite", "alice", "--ttl", "15m", "--no-qr")
    link = re.search(r"http://\S+/app/invite/\S+", printed)
    assert link, printed
    context = phone_context(chromium)
    assert context.request.get(link.group()).status == 200  # a link preview: nothing used
    phone = context.new_page()
    phone.goto(link.group())
    expect(phone.locator("#enroll-note")).to_have_text(
        "This invitation sets up this phone for Alice Example (alice)."
    )
    expect(phone.get_by_label("Password")).to_be_hidden()
    shot(phone, "phone-invitation")
    phone.get_by_role("button", name="Set up this phone").tap()
    expect(phone.locator("#home-who")).to_have_text("This phone signs in as Alice Example (alice).")
    assert phone.url == f"{site.issuer}/app/"  # the used link left the address bar

    again = phone_context(chromium).new_page()
    again.goto(link.group())
    expect(again.get_by_role("heading", name="This invitation cannot be used")).to_be_visible()
    desktop = start_sign_in(new_context(chromium), site)  # and the invited phone signs in
    open_qr(phone, read_qr(desktop, site.tmp))
    phone.get_by_role("button", name="Approve").tap()
    expect_signed_in(desktop, site)


def test_plain_http_off_localhost_says_why_nothing_works(chromium, site):
    """The IdP's real answers, routed to http://phone.example: not a secure context, so
    no WebCrypto and no camera, and the app says so instead of failing silently."""
    context = phone_context(chromium)

    def forward(route) -> None:
        real = route.request.url.replace("http://phone.example", site.issuer, 1)
        route.fulfill(response=route.fetch(url=real))

    context.route("http://phone.example/**", forward)
    phone = context.new_page()
    phone.goto("http://phone.example/app/")
    expect(phone.get_by_role("alert")).to_have_text(
        "This page must be opened over https: the camera and this phone's key work only"
        " on a secure connection."
    )
    expect(phone.locator("#screen-enroll")).to_be_hidden()


@pytest.mark.idp_config(IDP_LIMIT_PASSWORD="2 per 15 minutes")
def test_a_locked_username_says_how_long_to_wait(chromium, site):
    phone = phone_context(chromium).new_page()
    phone.goto(f"{site.issuer}/app/")
    phone.get_by_label("Username").fill("alice")
    for _ in range(2):
        phone.get_by_label("Password").fill("not the password")
        phone.get_by_role("button", name="Set up this phone").tap()
        expect(phone.get_by_role("alert")).to_have_text("The username or password is wrong.")
        phone.evaluate("() => { document.getElementById('message').hidden = true; }")
    phone.get_by_label("Password").fill(PASSWORD)  # even the right one, until the wait is over
    phone.get_by_role("button", name="Set up this phone").tap()
    expect(phone.get_by_role("alert")).to_have_text(
        re.compile(r"^Too many attempts\. Try again in \d+ seconds\.$")
    )


def test_the_network_down_and_a_code_another_phone_took(chromium, site):
    first = enroll_in_app(phone_context(chromium), site.issuer)
    second_context = phone_context(chromium)
    second = enroll_approved_in_app(second_context, site.issuer, first, name="Second phone")
    desktop = start_sign_in(new_context(chromium), site)
    url = read_qr(desktop, site.tmp)
    open_qr(first, url)
    expect(first.get_by_role("heading", name="Sign in to Demo RP?")).to_be_visible()
    open_qr(second, url)
    expect(second.get_by_role("alert")).to_have_text(
        "This sign-in code was already used. Get a new code on the computer."
    )
    first.context.set_offline(True)
    first.get_by_role("button", name="Approve").tap()
    expect(first.get_by_role("alert")).to_have_text(
        "The sign-in service could not be reached. Check your connection and try again."
    )
    first.context.set_offline(False)
    first.get_by_role("button", name="Approve").tap()  # worth another try: it works now
    expect(first.get_by_role("heading", name="Done: return to your computer")).to_be_visible()
    expect_signed_in(desktop, site)


MAKE_PROOFS = """async (issuer) => {
  const { makeProof, newDeviceKey, publicJwk } = await import("/static/app/proof.js");
  const keyPair = await newDeviceKey();
  const jwk = await publicJwk(keyPair);
  const body = JSON.stringify({ qr: issuer + "/q/abc", "émoji": "✓" });
  const url = issuer + "/api/mobile/v1/login-requests/scan";
  return {
    jwk, body,
    enrollment: await makeProof(keyPair, { method: "post", url, body, jwk }),
    device: await makeProof(keyPair, { method: "GET", url, body: "", kid: "device-1" }),
  };
}"""


def test_the_web_apps_proof_follows_the_wire_contract(chromium, site):
    """The same contract idp-phone and the server are held to (tests/data/phone_wire.json):
    the proofs the browser makes, checked in Python, signature included."""
    wire = json.loads((Path(__file__).parents[1] / "data" / "phone_wire.json").read_text())
    contract = wire["proof"]
    page = phone_context(chromium).new_page()
    page.goto(f"{site.issuer}/app/")
    made = page.evaluate(MAKE_PROOFS, site.issuer)
    key = ECKey.import_key(made["jwk"])
    assert sorted(made["jwk"]) == sorted(contract["key"]["public_members"])
    for kind, body in (("enrollment", made["body"].encode()), ("device", b"")):
        token = jws.deserialize_compact(made[kind], key, algorithms=[contract["alg"]])
        header, claims = token.headers(), json.loads(token.payload)
        assert sorted(header) == contract["header_names"][kind]
        assert header["typ"] == contract["typ"] and header["alg"] == contract["alg"]
        assert sorted(claims) == contract["claim_names"]
        assert claims["htu"] == f"{site.issuer}/api/mobile/v1/login-requests/scan"
        assert claims["htm"] == ("POST" if kind == "enrollment" else "GET")
        digest = base64.urlsafe_b64encode(hashlib.sha256(body).digest()).rstrip(b"=").decode()
        assert claims["bh"] == digest
        assert abs(claims["iat"] - time.time()) < contract["iat_max_skew_seconds"]
        jti = claims["jti"]
        assert contract["jti"]["min_length"] <= len(jti) <= contract["jti"]["max_length"]
        assert all(0x21 <= ord(c) <= 0x7E for c in jti)
    assert made["enrollment"].split(".")[1] != made["device"].split(".")[1]


def test_a_double_tap_on_continue_sends_the_typed_code_once(chromium, site):
    # The scan uses the code up: a second scan of it would be a wrong code, counted.
    phone = enroll_in_app(phone_context(chromium), site.issuer)
    desktop = start_sign_in(new_context(chromium), site)
    code = show_short_code(desktop)
    typed: list[str] = []

    def slow_scan(route) -> None:  # the answer comes after the second tap
        if '"code"' in (route.request.post_data or ""):
            typed.append(route.request.post_data)
            time.sleep(0.5)
        route.continue_()

    phone.route("**/login-requests/scan", slow_scan)
    phone.get_by_label("Can't scan? Type the code the computer or device shows").fill(code)
    field = phone.get_by_label("Can't scan? Type the code the computer or device shows")
    field.press("Enter")
    field.press("Enter")
    expect(phone.get_by_role("heading", name="Sign in to Demo RP?")).to_be_visible()
    assert len(typed) == 1, typed


STALL_THE_CAMERA = """() => {
  // The person takes a while to allow the camera; every stream it gives is kept here.
  const original = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
  window.streams = [];
  navigator.mediaDevices.getUserMedia = async (constraints) => {
    await new Promise((resolve) => setTimeout(resolve, 1500));
    const stream = await original(constraints);
    window.streams.push(stream);
    return stream;
  };
}"""

LIVE_TRACKS = """() => window.streams.flatMap((stream) => stream.getTracks())
  .filter((track) => track.readyState === "live").length"""


def test_stop_scanning_before_the_camera_starts_leaves_it_off(chromium, fake_camera, site):
    desktop = start_sign_in(new_context(chromium), site)
    qr_picture = site.tmp / "qr.png"
    desktop.locator("#qr").screenshot(path=str(qr_picture))
    context = phone_context(fake_camera(write_y4m(qr_picture, site.tmp / "qr.y4m")))
    context.add_init_script(script=f"({STALL_THE_CAMERA})()")
    phone = enroll_in_app(context, site.issuer)
    phone.get_by_role("button", name="Scan").tap()
    phone.get_by_role("button", name="Stop scanning").tap()  # before the camera came on
    phone.wait_for_timeout(3000)  # the camera came on, and a running scanner reads the code
    assert phone.evaluate("() => window.streams.length") == 1
    assert phone.evaluate(LIVE_TRACKS) == 0
    assert phone.url == f"{site.issuer}/app/"  # nothing read, nothing opened
    expect(phone.locator("#scanner")).to_be_hidden()
    expect(phone.get_by_role("button", name="Scan")).to_be_visible()


@pytest.mark.parametrize(
    ("hint", "shown"),
    [
        ("alice@example.com", "The site suggests the account alice@example.com."),
        ("alice. Checked by your bank: it is safe to approve", None),
    ],
)
def test_only_an_account_shaped_login_hint_is_shown(chromium, site, hint, shown):
    # Whoever opens the sign-in page chooses login_hint: it must not be a sentence of theirs.
    phone = enroll_in_app(phone_context(chromium), site.issuer)
    desktop = start_sign_in(new_context(chromium), site)
    desktop.goto(f"{desktop.url}&{urlencode({'login_hint': hint})}")
    expect(desktop.locator("#qr svg")).to_be_visible()
    open_qr(phone, read_qr(desktop, site.tmp))
    expect(phone.get_by_role("heading", name="Sign in to Demo RP?")).to_be_visible()
    if shown:
        expect(phone.locator("#request-hint")).to_have_text(shown)
    else:
        expect(phone.locator("#request-hint")).to_be_hidden()
        expect(phone.locator("#screen-request")).not_to_contain_text("safe to approve")


def test_a_sign_in_for_another_account_is_refused_and_shows_nothing(chromium, site):
    """The site named bob (login_hint): alice's phone, pointed at bob's screen, is told
    so, and sees nothing of his sign-in; bob's page still waits for bob's phone."""
    idp_command(site.idp, "users", "create", "bob", "--email", "bob@example.com",
                "--password-stdin", stdin=PASSWORD + "\n")  # fmt: skip
    phone = enroll_in_app(phone_context(chromium), site.issuer)
    desktop = start_sign_in(new_context(chromium), site)
    desktop.goto(f"{desktop.url}&{urlencode({'login_hint': 'Bob@example.com'})}")
    expect(desktop.locator("#qr svg")).to_be_visible()
    open_qr(phone, read_qr(desktop, site.tmp))
    expect(phone.get_by_role("alert")).to_have_text(
        "This sign-in is for another account, not the one on this phone. Nothing was approved."
    )
    expect(phone.get_by_role("heading", name="Sign in to Demo RP?")).to_be_hidden()
    expect(phone.get_by_role("button", name="Approve")).to_be_hidden()
    phone.wait_for_timeout(1000)
    expect(desktop.locator("#status")).to_have_text("Scan with the QR-IdP app")  # not scanned


@pytest.mark.idp_config(IDP_PASSWORD_ENROLLMENT="always")  # two phones of alice
def test_a_code_scanned_by_mistake_is_given_back_to_the_page(chromium, site):
    """Someone else's screen: "Not my sign-in" gives the code back, and the page waits
    for the right phone again (which then signs in with the same code)."""
    phone = enroll_in_app(phone_context(chromium), site.issuer)
    desktop = start_sign_in(new_context(chromium), site)
    url = read_qr(desktop, site.tmp)
    open_qr(phone, url)
    expect(phone.get_by_role("heading", name="Sign in to Demo RP?")).to_be_visible()
    expect(desktop.locator("#status")).to_have_text("Scanned — confirm on your phone")
    phone.get_by_role("button", name="Not my sign-in: give it back").tap()
    expect(phone.get_by_role("heading", name="Given back: nothing was approved")).to_be_visible()
    expect(desktop.locator("#status")).to_have_text("Scan with the QR-IdP app")
    expect(desktop.get_by_role("button", name="Not you? Show a new code")).to_be_hidden()

    right_phone = enroll(site)
    right_phone.approve(right_phone.scan(url)["login_request"]["id"])
    expect_signed_in(desktop, site)


def test_a_username_no_account_can_have_is_a_plain_sentence(chromium, site):
    phone = phone_context(chromium).new_page()
    phone.goto(f"{site.issuer}/app/")
    phone.get_by_label("Username").fill("alice example")  # a space: no username has one
    phone.get_by_label("Password").fill(PASSWORD)
    phone.get_by_role("button", name="Set up this phone").tap()
    expect(phone.get_by_role("alert")).to_have_text("The username or password is wrong.")
    expect(phone.get_by_label("Username")).to_be_focused()


@pytest.mark.idp_config(IDP_LOGIN_REQUEST_TTL=6)
def test_an_answer_lost_after_the_code_expired_does_not_offer_approve_again(chromium, site):
    phone = enroll_in_app(phone_context(chromium), site.issuer)
    desktop = start_sign_in(new_context(chromium), site)
    open_qr(phone, read_qr(desktop, site.tmp))
    approve = phone.get_by_role("button", name="Approve")
    expect(approve).to_be_enabled()

    def lost_after_expiry(route) -> None:  # the network fails, after the code's time is up
        time.sleep(7)
        route.abort()

    phone.route("**/approve", lost_after_expiry)
    approve.tap()
    expect(phone.get_by_role("alert")).to_have_text(
        "The sign-in service could not be reached. Check your connection and try again."
    )
    left = phone.locator("#request-left")
    expect(left).to_have_text("Time is up: this sign-in code has expired.")
    expect(approve).to_be_disabled()
    expect(phone.get_by_role("button", name="Deny")).to_be_disabled()


# Runs in the page: the app's own proofs, for a device and for an enrollment.


def test_a_sign_in_another_website_opens_is_scanned_only_after_a_tap(chromium, site):
    # Any site the phone visits could navigate it to a stranger's /q/<id>: that alone
    # must not scan it (tie it to this phone, tell the stranger's page it was scanned).
    from a11y import axe_violations

    phone = enroll_in_app(phone_context(chromium), site.issuer)
    desktop = start_sign_in(new_context(chromium), site)
    qr = read_qr(desktop, site.tmp)
    phone.goto(site.rp_url + "/")  # another site (localhost is not 127.0.0.1)
    phone.evaluate("(url) => { window.location.assign(url); }", qr)
    expect(phone.get_by_role("heading", name="Did you scan this code yourself?")).to_be_visible()
    assert axe_violations(phone) == []
    phone.wait_for_timeout(1000)
    expect(desktop.locator("#status")).to_have_text("Scan with the QR-IdP app")  # not scanned
    phone.get_by_role("button", name="Continue").tap()
    expect(phone.get_by_role("heading", name="Sign in to Demo RP?")).to_be_visible()
    expect(desktop.locator("#status")).to_have_text("Scanned — confirm on your phone")


def test_an_invitation_on_a_phone_already_set_up_replaces_it_and_retires_the_old_one(
    chromium, site
):
    context = phone_context(chromium)
    phone = enroll_in_app(context, site.issuer, name="First setup")
    printed = idp_command(site.idp, "users", "invite", "alice", "--no-qr")
    phone.goto(next(word for word in printed.split() if "/app/invite/" in word))
    expect(phone.locator("#enroll-note")).to_contain_text(
        "This phone signs in as Alice Example now: setting it up with this invitation"
        " replaces that."
    )
    phone.get_by_label("Name of this phone").fill("Second setup")
    phone.get_by_role("button", name="Set up this phone").tap()
    expect(phone.locator("#devices li")).to_have_count(1)
    expect(phone.locator("#devices")).to_contain_text("Second setup")
    listed = idp_command(site.idp, "devices", "list", "alice")
    assert re.search(r"revoked .* First setup$", listed, re.MULTILINE), listed


def test_the_in_app_paths_stay_inside_the_apps_scope(chromium, site):
    """An app added to the home screen keeps its own storage on some phones: a typed code
    opens the approval screen under /app/, where the installed app still has its key."""
    phone = enroll_in_app(phone_context(chromium), site.issuer)
    desktop = start_sign_in(new_context(chromium), site)
    code = show_short_code(desktop)
    phone.get_by_label("Can't scan? Type the code the computer or device shows").fill(code)
    phone.get_by_role("button", name="Continue").tap()
    expect(phone.get_by_role("heading", name="Sign in to Demo RP?")).to_be_visible()
    assert phone.url.startswith(f"{site.issuer}/app/q/")


def test_every_warning_the_server_gives_is_shown_first(chromium, site):
    """The scan answer's ``proximity`` and ``warnings`` (the relay-resistance work adds
    them) are shown above everything else, as the server words them: here the real
    answer, with both added on its way to the page."""
    phone = enroll_in_app(phone_context(chromium), site.issuer)

    def with_warnings(route) -> None:
        answer = route.fetch()
        body = answer.json()
        body["login_request"]["proximity"] = {
            "verdict": "different_network",
            "message": "This sign-in was started on a different network than your phone.",
        }
        body["login_request"]["warnings"] = [{"code": "first_sign_in", "message": "<b>New</b>"}]
        route.fulfill(response=answer, json=body)

    phone.route("**/login-requests/scan", with_warnings)
    desktop = start_sign_in(new_context(chromium), site)
    open_qr(phone, read_qr(desktop, site.tmp))
    warnings = phone.locator("#request-warnings li")
    expect(warnings).to_have_text(
        ["This sign-in was started on a different network than your phone.", "<b>New</b>"]
    )  # as text: the server's words are never parsed as HTML
    title = phone.get_by_role("heading", name="Sign in to Demo RP?").bounding_box()
    first = warnings.first.bounding_box()
    facts = phone.locator("#request-host").bounding_box()
    assert title and first and facts and title["y"] < first["y"] < facts["y"]
