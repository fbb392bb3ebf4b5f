"""Number matching (off by default): after the scan the page shows two digits, and the
phone must pick them among three to approve; a wrong pick denies the sign-in."""

from __future__ import annotations

import json

import pytest
import requests

from idp import audit, db
from idp.admin.services import create_client
from idp_phone.api import PhoneApiError
from idp_phone.cli import main as phone_main
from idp_phone.proof import make_proof
from support import (
    REDIRECT_URI,
    RelyingParty,
    close_socket,
    next_message,
    next_status,
    redirect_params,
)


@pytest.fixture
def matching_rp(world):
    """A relying party registered with --number-matching."""
    live = world[0]
    with live.app.app_context(), db.unit_of_work():
        client, secret = create_client("Bank", [REDIRECT_URI], number_matching=True)
    return RelyingParty(live.url, client.client_id, secret)


def scan_and_read_number(browser, phone, rp):
    page = browser.open(rp.authorize_url())
    ws = browser.socket(page)
    assert next_message(ws) == {"status": "pending"}
    view = phone.scan(page.qr_url)["login_request"]
    message = next_message(ws)
    return page, ws, view, message


def test_off_by_default(world):
    _, rp, browser, phone = world
    _, ws, view, message = scan_and_read_number(browser, phone, rp)
    assert view["number_matching"] is None
    assert message == {"status": "scanned"}
    phone.approve(view["id"])
    assert next_status(ws) == "approved"
    close_socket(ws)


def test_the_page_shows_the_number_and_the_phone_picks_it(world, matching_rp):
    _, _, browser, phone = world
    page, ws, view, message = scan_and_read_number(browser, phone, matching_rp)
    number = message["number"]
    assert message == {"status": "scanned", "number": number}
    assert len(number) == 2 and number.isdigit()
    choices = view["number_matching"]["choices"]
    assert number in choices and len(set(choices)) == 3 and choices == sorted(choices)
    # Scanning again (a retry) shows the same three.
    assert phone.scan(page.qr_url)["login_request"]["number_matching"]["choices"] == choices
    # A page that reconnects reads the number from the database.
    again = browser.socket(page)
    assert next_message(again) == {"status": "scanned", "number": number}
    close_socket(again)

    with pytest.raises(PhoneApiError) as missing:
        phone.approve(view["id"])
    assert (missing.value.status, missing.value.error) == (400, "invalid_request")
    assert "number matching" in missing.value.description
    phone.approve(view["id"], number)
    assert next_status(ws) == "approved"
    close_socket(ws)
    code = redirect_params(browser.complete(page))["code"]
    assert matching_rp.exchange(code).status_code == 200


def test_a_wrong_number_denies_the_sign_in(world, matching_rp):
    live, _, browser, phone = world
    page, ws, view, message = scan_and_read_number(browser, phone, matching_rp)
    wrong = next(c for c in view["number_matching"]["choices"] if c != message["number"])
    with pytest.raises(PhoneApiError) as refused:
        phone.approve(view["id"], wrong)
    assert (refused.value.status, refused.value.error) == (403, "wrong_number")
    assert next_message(ws) == {"status": "denied", "reason": "wrong_number"}  # the page says why
    close_socket(ws)
    # No second try: the request is decided.
    with pytest.raises(PhoneApiError) as again:
        phone.approve(view["id"], message["number"])
    assert again.value.error == "already_used"
    params = redirect_params(browser.complete(page))
    assert (params["error"], params["error_description"]) == (
        "access_denied",
        "the phone picked another number than the page showed",
    )
    with live.app.app_context():
        denied = audit.query()[-1]
    assert (denied.event, denied.detail["reason"]) == ("login.denied", "wrong number")


@pytest.mark.parametrize("number", [7, "7", "123", "ab", ""])
def test_a_malformed_number_is_refused(world, matching_rp, number):
    live, _, browser, phone = world
    _, ws, view, _ = scan_and_read_number(browser, phone, matching_rp)
    close_socket(ws)
    url = f"{live.url}/api/mobile/v1/login-requests/{view['id']}/approve"
    body = json.dumps({"number": number}).encode()
    profile = phone.profile
    proof = make_proof(profile.key, "POST", url, body, kid=profile.device_id)
    response = requests.post(
        url,
        data=body,
        headers={"Device-Proof": proof, "Content-Type": "application/json"},
        timeout=5,
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert "two digits" in response.json()["error_description"]


@pytest.mark.idp_config(IDP_NUMBER_MATCHING=True)
def test_on_for_every_client_with_the_setting(world):
    _, rp, browser, phone = world
    _, ws, view, message = scan_and_read_number(browser, phone, rp)
    assert message["number"] in view["number_matching"]["choices"]
    phone.approve(view["id"], message["number"])
    assert next_status(ws) == "approved"
    close_socket(ws)


def test_the_phone_app_asks_for_the_number(world, matching_rp, capsys):
    _, _, browser, phone = world
    page = browser.open(matching_rp.authorize_url())
    ws = browser.socket(page)
    next_message(ws)
    profile = ["--profile", str(phone.profile_dir)]
    assert phone_main([*profile, "scan", page.qr_url, "--approve"]) == 2
    assert "give --number with the number the screen shows" in capsys.readouterr().err
    number = next_message(ws)["number"]
    assert phone_main([*profile, "scan", page.qr_url, "--approve", "--number", number]) == 0
    out = capsys.readouterr().out
    assert "pick the one the screen shows" in out and "Approved" in out
    assert next_status(ws) == "approved"
    close_socket(ws)
