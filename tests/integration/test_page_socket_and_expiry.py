"""The waiting page: who may listen, expiry and renewal, completion binding."""

from __future__ import annotations

import time

import pytest
from simple_websocket import ConnectionError as HandshakeRefused

from idp_phone.api import PhoneApiError
from support import (
    Browser,
    close_socket,
    next_status,
    redirect_params,
)


def test_socket_without_binding_cookie_is_refused(world):
    live, rp, browser, _ = world
    page = browser.open(rp.authorize_url())
    with pytest.raises(HandshakeRefused) as refused:
        browser.socket(page, cookies=False)
    assert refused.value.status_code == 403
    # The subscription made before the cookie check is closed with the refused request.
    assert live.app.extensions["idp.broker"].subscriptions() == 0


def test_socket_from_another_browser_is_refused(world):
    live, rp, browser, _ = world
    page = browser.open(rp.authorize_url())
    other = Browser(live.url)
    other.open(rp.authorize_url())  # it has a binding cookie, but for its own request
    with pytest.raises(HandshakeRefused) as refused:
        other.socket(page)
    assert refused.value.status_code == 403


@pytest.mark.parametrize("origin", ["https://evil.example", "http://localhost:9999", "null"])
def test_socket_from_a_foreign_origin_is_refused(world, origin):
    _, rp, browser, _ = world
    page = browser.open(rp.authorize_url())
    with pytest.raises(HandshakeRefused) as refused:
        browser.socket(page, origin=origin)
    assert refused.value.status_code == 403


def test_socket_for_an_unknown_request_is_refused_as_another_browsers(world):
    """Unknown ids and other browsers' requests get one answer: a guesser learns nothing."""
    live, rp, browser, _ = world
    browser.open(rp.authorize_url())
    with pytest.raises(HandshakeRefused) as unknown:
        browser.socket("/ws/login/" + "A" * 43)
    someone_elses = Browser(live.url).open(rp.authorize_url())
    with pytest.raises(HandshakeRefused) as foreign:
        browser.socket(someone_elses)
    assert unknown.value.status_code == foreign.value.status_code == 403


def test_another_browser_cannot_complete(world):
    live, rp, browser, phone = world
    page = browser.open(rp.authorize_url())
    view = phone.scan(page.qr_url)["login_request"]
    phone.approve(view["id"])
    thief = Browser(live.url)
    thief.open(rp.authorize_url())
    stolen = thief.complete(page)
    assert stolen.status_code == 403 and "Location" not in stolen.headers
    # The rightful browser still completes.
    assert "code" in redirect_params(browser.complete(page))


def test_completion_before_approval_is_refused(world):
    _, rp, browser, phone = world
    page = browser.open(rp.authorize_url())
    assert browser.complete(page).status_code == 409
    phone.scan(page.qr_url)
    early = browser.complete(page)
    assert early.status_code == 409 and "not_approved" in early.text


@pytest.mark.idp_config(IDP_LOGIN_REQUEST_TTL=2)
def test_expiry_renewal_and_the_old_code_refused(world):
    _, rp, browser, phone = world
    page = browser.open(rp.authorize_url())
    ws = browser.socket(page)
    assert next_status(ws) == "pending"
    assert next_status(ws, timeout=5) == "expired"  # pushed by the server at expiry
    close_socket(ws)

    renewed = browser.renew(page)
    assert renewed.status_code == 200, renewed.text
    fresh = renewed.json()
    assert fresh["id"] != page.id and fresh["qr_svg"].startswith("<svg")
    assert fresh["renewals_left"] == page.state["renewals_left"] - 1

    with pytest.raises(PhoneApiError) as old:
        phone.scan(page.qr_url)
    assert (old.value.status, old.value.error) == (410, "expired")

    page.state = fresh
    view = phone.scan(fresh["qr_url"])["login_request"]
    phone.approve(view["id"])
    assert "code" in redirect_params(browser.complete(page))


@pytest.mark.idp_config(IDP_LOGIN_REQUEST_TTL=1, IDP_QR_MAX_RENEWALS=1)
def test_renewal_is_bounded(world):
    _, rp, browser, _ = world
    page = browser.open(rp.authorize_url())
    time.sleep(1.1)
    first = browser.renew(page)
    assert first.status_code == 200
    page.state = first.json()
    time.sleep(1.1)
    second = browser.renew(page)
    assert second.status_code == 429 and second.json()["error"] == "renewal_limit"


def test_renewal_refused_before_expiry_and_from_another_origin(world):
    _, rp, browser, _ = world
    page = browser.open(rp.authorize_url())
    early = browser.renew(page)
    assert early.status_code == 400 and early.json()["error"] == "invalid_request"
    foreign = browser.renew(page, origin="https://evil.example")
    assert foreign.status_code == 403 and foreign.json()["error"] == "foreign_origin"


@pytest.mark.idp_config(IDP_LOGIN_REQUEST_TTL=1)
def test_approval_after_expiry_is_refused(world):
    _, rp, browser, phone = world
    page = browser.open(rp.authorize_url())
    view = phone.scan(page.qr_url)["login_request"]
    time.sleep(1.1)
    with pytest.raises(PhoneApiError) as late:
        phone.approve(view["id"])
    assert (late.value.status, late.value.error) == (410, "expired")
    assert browser.complete(page).status_code == 410


def test_opening_the_qr_url_in_a_plain_browser_does_nothing(world):
    live, rp, browser, _ = world
    page = browser.open(rp.authorize_url())
    ws = browser.socket(page)
    assert next_status(ws) == "pending"
    landing = Browser(live.url).session.get(page.qr_url, timeout=5)
    assert landing.status_code == 200 and 'id="phone-app"' in landing.text  # the app, idle
    assert ws.receive(timeout=0.5) is None  # no state change reached the page
    close_socket(ws)


def test_page_security_headers(world):
    _, rp, browser, _ = world
    page = browser.open(rp.authorize_url())
    headers = page.response.headers
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["Cache-Control"] == "no-store"
    assert "<script>" not in page.response.text  # no inline script
