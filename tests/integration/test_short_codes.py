""" "Can't scan?": the short code the page shows and the phone types instead of scanning,
its lifetime, and the limits that keep guessing it hopeless (both backends)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from idp.qrlogin.shortcodes import ALPHABET, new_code, normalize
from idp_phone.api import PhoneApiError, PhoneClient, normalize_short_code
from idp_phone.proof import make_proof
from support import Browser, close_socket, enroll_phone, next_status, redirect_params

CODE = re.compile(r"^[ACDEFGHJKMNPQRTUVWXY]{4}-[ACDEFGHJKMNPQRTUVWXY]{4}$")


def refused(call, status: int, error: str) -> PhoneApiError:
    with pytest.raises(PhoneApiError) as info:
        call()
    assert (info.value.status, info.value.error) == (status, error), info.value
    return info.value


# The code itself ------------------------------------------------------------------------------


def test_codes_use_letters_without_look_alikes():
    assert set(ALPHABET).isdisjoint("BILOSZ0123456789")
    assert len(ALPHABET) == 20
    codes = {new_code() for _ in range(200)}
    assert len(codes) == 200
    assert all(CODE.match(code) for code in codes)


@pytest.mark.parametrize(
    ("typed", "canonical"),
    [
        ("KXRT-WMPQ", "KXRT-WMPQ"),
        ("kxrt-wmpq", "KXRT-WMPQ"),
        (" kxrt wmpq ", "KXRT-WMPQ"),
        ("KXRTWMPQ", "KXRT-WMPQ"),
        ("KXRT-WMP", None),  # too short
        ("KXRT-WMPQA", None),  # too long
        ("K0RT-WMPQ", None),  # a digit
        ("KXRT-WMPS", None),  # S looks like 5
        ("\uff2bXRT-WMPQ", None),  # a full-width letter
    ],
)
def test_normalize(typed, canonical):
    assert normalize(typed) == canonical
    assert normalize_short_code(typed) == canonical  # the phone app agrees with the server


# The flow -------------------------------------------------------------------------------------


def test_sign_in_with_a_typed_code(world):
    _, rp, browser, phone = world
    page = browser.open(rp.authorize_url())
    ws = browser.socket(page)
    assert next_status(ws) == "pending"
    given = browser.short_code(page)
    assert given.status_code == 200
    assert given.headers["Cache-Control"] == "no-store"
    body = given.json()
    assert CODE.match(body["code"])
    assert 0 < body["expires_in"] <= 120

    view = phone.scan_code(body["code"].lower().replace("-", " "))["login_request"]
    assert view["id"] == page.id
    assert view["client"]["name"] == "Test RP"
    assert next_status(ws) == "scanned"
    phone.approve(view["id"])
    assert next_status(ws) == "approved"
    close_socket(ws)
    params = redirect_params(browser.complete(page))
    assert rp.exchange(params["code"]).status_code == 200


def test_a_code_is_used_up_by_the_scan(world, tmp_path):
    live, rp, browser, phone = world
    page = browser.open(rp.authorize_url())
    code = browser.short_code(page).json()["code"]
    phone.scan_code(code)
    other = enroll_phone(live.url, tmp_path / "other-phone", approver=phone)
    refused(lambda: other.scan_code(code), 404, "unknown_code")
    # and the page cannot get another one once scanned
    again = browser.short_code(page)
    assert (again.status_code, again.json()["error"]) == (409, "already_used")


def test_a_new_code_replaces_the_old_one(world):
    _, rp, browser, phone = world
    page = browser.open(rp.authorize_url())
    first = browser.short_code(page).json()["code"]
    second = browser.short_code(page).json()["code"]
    assert first != second
    refused(lambda: phone.scan_code(first), 404, "unknown_code")
    assert phone.scan_code(second)["login_request"]["id"] == page.id


@pytest.mark.idp_config(IDP_SHORT_CODE_TTL=1)
def test_a_code_has_its_own_short_lifetime(world):
    import time

    _, rp, browser, phone = world
    page = browser.open(rp.authorize_url())
    body = browser.short_code(page).json()
    assert body["expires_in"] <= 1
    time.sleep(1.5)
    refused(lambda: phone.scan_code(body["code"]), 404, "unknown_code")
    # The QR code itself still works: only the typed code expired.
    assert phone.scan(page.qr_url)["login_request"]["status"] == "scanned"


def test_only_the_browser_that_opened_the_page_gets_its_code(world):
    live, rp, browser, _ = world
    page = browser.open(rp.authorize_url())
    stranger = Browser(live.url)
    stranger.open(rp.authorize_url())  # a binding cookie of its own
    stranger_view = stranger.short_code(page)
    assert (stranger_view.status_code, stranger_view.json()["error"]) == (403, "binding_mismatch")
    foreign = browser.short_code(page, origin="https://evil.example")
    assert (foreign.status_code, foreign.json()["error"]) == (403, "foreign_origin")


@pytest.mark.idp_config(IDP_SHORT_CODE_ATTEMPTS=3, IDP_SHORT_CODE_WINDOW=600)
def test_wrong_codes_lock_the_user_out_of_typing(world, tmp_path):
    live, rp, browser, phone = world
    page = browser.open(rp.authorize_url())
    code = browser.short_code(page).json()["code"]
    wrong = "AAAA-AAAA" if code != "AAAA-AAAA" else "CCCC-CCCC"
    for _ in range(3):
        refused(lambda: phone.scan_code(wrong), 404, "unknown_code")
    locked = refused(lambda: phone.scan_code(code), 429, "too_many_attempts")
    assert "wait" in locked.description
    # Another device of the same user is locked too (the limit is per user) ...
    second = enroll_phone(live.url, tmp_path / "second", approver=phone)
    refused(lambda: second.scan_code(code), 429, "too_many_attempts")
    # ... while scanning the QR code still works.
    assert phone.scan(page.qr_url)["login_request"]["id"] == page.id


def raw_scan(live, phone: PhoneClient, body: dict) -> requests.Response:
    """POST a scan body as it is (the phone client would check it first)."""
    profile = phone.profile
    url = f"{live.url}/api/mobile/v1/login-requests/scan"
    raw = json.dumps(body).encode()
    proof = make_proof(profile.key, "POST", url, raw, kid=profile.device_id)
    return requests.post(
        url,
        data=raw,
        headers={"Device-Proof": proof, "Content-Type": "application/json"},
        timeout=10,
    )


@pytest.mark.idp_config(IDP_SHORT_CODE_ATTEMPTS=1)
def test_the_lockout_says_when_to_retry(world):
    live, _, _, phone = world
    refused(lambda: phone.scan_code("AAAA-AAAA"), 404, "unknown_code")
    response = raw_scan(live, phone, {"code": "CCCC-CCCC"})
    assert response.status_code == 429
    assert 1 <= int(response.headers["Retry-After"]) <= 601


@pytest.mark.parametrize(
    ("body", "description"),
    [
        ({"code": "KX1T-WMPQ"}, "a sign-in code is 8 letters like KXRT-WMPQ"),
        ({"code": "KXRT-WMPQ", "qr": "x"}, "send either 'qr'"),
        ({}, "send either 'qr'"),
        ({"code": 12345678}, "'code' must be a non-empty string"),
    ],
)
def test_malformed_scans_are_refused_without_counting(world, body, description):
    live, _, _, phone = world
    for _ in range(6):  # more than the attempts allowed: malformed input does not count
        response = raw_scan(live, phone, body)
        assert response.status_code == 400
        assert response.json()["error"] == "invalid_request"
        assert response.json()["error_description"].startswith(description)


def test_the_phone_command_accepts_a_code(world):
    _, rp, browser, phone = world
    page = browser.open(rp.authorize_url())
    code = browser.short_code(page).json()["code"]
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "idp-phone"),
            "--profile",
            str(phone.profile_dir),
            "scan",
            "--code",
            code,
            "--approve",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["decision"] == "approved"
    assert out["login_request"]["id"] == page.id


def test_the_phone_command_refuses_a_malformed_code_locally(world):
    _, _, _, phone = world
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "idp-phone"),
            "--profile",
            str(phone.profile_dir),
            "scan",
            "--code",
            "0000-1111",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "8 letters like KXRT-WMPQ" in result.stderr


def test_a_typed_code_stays_private_to_its_page(world):
    """The waiting page never learns who typed (no identity beyond the status)."""
    _, rp, browser, phone = world
    page = browser.open(rp.authorize_url())
    ws = browser.socket(page)
    assert next_status(ws) == "pending"
    phone.scan_code(browser.short_code(page).json()["code"])
    raw = ws.receive(timeout=10)
    assert raw == '{"status": "scanned"}'
    close_socket(ws)
