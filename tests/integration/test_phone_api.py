"""The phone API against a live server: proofs, devices, scanning, clear errors."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import datetime, timedelta

import pytest
import qrcode
import requests
from joserfc import jwt
from joserfc.jwk import ECKey
from sqlalchemy import update

from idp import db
from idp.db import utcnow
from idp.mobile.models import Device
from idp.qrlogin.models import LoginRequest
from idp_phone.api import PhoneApiError, PhoneClient
from idp_phone.proof import body_hash, make_proof, public_jwk
from support import PASSWORD, add_user, enroll_phone, next_status

API = "/api/mobile/v1"


def signed_post(phone: PhoneClient, url: str, body: bytes, **proof_kw):
    profile = phone.profile
    proof = make_proof(profile.key, "POST", url, body, kid=profile.device_id, **proof_kw)
    headers = {"Device-Proof": proof, "Content-Type": "application/json"}
    return requests.post(url, data=body, headers=headers, timeout=5), headers


def error_of(response: requests.Response) -> tuple[int, str]:
    return response.status_code, response.json()["error"]


def test_whoami(world):
    _, _, _, phone = world
    me = phone.me()
    assert me["user"]["username"] == "alice" and me["device_id"].startswith("dev_")


def test_a_replayed_request_is_refused(world):
    live, rp, browser, phone = world
    page = browser.open(rp.authorize_url())
    url = f"{live.url}{API}/login-requests/scan"
    body = json.dumps({"qr": page.qr_url}).encode()
    first, headers = signed_post(phone, url, body)
    assert first.status_code == 200
    replay = requests.post(url, data=body, headers=headers, timeout=5)
    assert error_of(replay) == (401, "invalid_proof")
    assert "already used" in replay.json()["error_description"]


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        ("body", "another request body"),
        ("url", "another URL"),
        ("method", "another HTTP method"),
        ("old", "too old"),
    ],
)
def test_a_proof_cannot_be_moved_or_kept(world, tamper, message):
    live, rp, browser, phone = world
    page = browser.open(rp.authorize_url())
    url = f"{live.url}{API}/login-requests/scan"
    body = json.dumps({"qr": page.qr_url}).encode()
    profile = phone.profile
    sign_url, sign_body, method = url, body, "POST"
    if tamper == "body":
        sign_body = b'{"qr":"something else"}'
    elif tamper == "url":
        sign_url = f"{live.url}{API}/devices/me"
    elif tamper == "method":
        method = "PUT"
    proof = make_proof(profile.key, method, sign_url, sign_body, kid=profile.device_id)
    if tamper == "old":
        claims = {"htm": "POST", "htu": url, "iat": int(time.time()) - 600, "jti": "x" * 20}
        claims["bh"] = body_hash(body)
        header = {"typ": "device-proof+jwt", "alg": "ES256", "kid": profile.device_id}
        proof = jwt.encode(header, claims, profile.key)
    response = requests.post(url, data=body, headers={"Device-Proof": proof}, timeout=5)
    assert error_of(response) == (401, "invalid_proof")
    assert message in response.json()["error_description"]


def test_a_proof_signed_by_another_key_is_refused(world):
    live, _, _, phone = world
    url = f"{live.url}{API}/devices/me"
    stranger = ECKey.generate_key("P-256", private=True)
    proof = make_proof(stranger, "GET", url, b"", kid=phone.profile.device_id)
    response = requests.get(url, headers={"Device-Proof": proof}, timeout=5)
    assert error_of(response) == (401, "invalid_proof")


@pytest.mark.parametrize("header", [None, "", "not.a.jws", "a.b"])
def test_a_missing_or_malformed_proof_is_refused(world, header):
    live, _, _, _ = world
    headers = {"Device-Proof": header} if header is not None else {}
    response = requests.get(f"{live.url}{API}/devices/me", headers=headers, timeout=5)
    assert error_of(response) == (401, "invalid_proof")


def test_an_unknown_device_is_told_to_enroll(world):
    live, _, _, _ = world
    url = f"{live.url}{API}/devices/me"
    key = ECKey.generate_key("P-256", private=True)
    proof = make_proof(key, "GET", url, b"", kid="dev_unknown")
    response = requests.get(url, headers={"Device-Proof": proof}, timeout=5)
    assert error_of(response) == (401, "unknown_device")


def test_a_revoked_device_fails_at_once(world):
    live, rp, browser, phone = world
    with live.app.app_context():
        device = db.session.query(Device).one()
        device.revoked_at = datetime(2026, 1, 1)
        db.session.commit()
    page = browser.open(rp.authorize_url())
    with pytest.raises(PhoneApiError) as revoked:
        phone.scan(page.qr_url)
    assert (revoked.value.status, revoked.value.error) == (401, "device_revoked")


def test_enrollment_with_a_wrong_password_is_refused(world, tmp_path):
    live, _, _, _ = world
    with pytest.raises(PhoneApiError) as wrong:
        PhoneClient(tmp_path / "other").enroll(live.url, "alice", "wrong password!", "Phone")
    assert (wrong.value.status, wrong.value.error) == (401, "invalid_credentials")
    with pytest.raises(PhoneApiError) as nobody:
        PhoneClient(tmp_path / "other").enroll(live.url, "nobody", PASSWORD, "Phone")
    assert (nobody.value.status, nobody.value.error) == (401, "invalid_credentials")


def test_the_same_key_enrolls_once(world):
    live, _, _, phone = world
    url = f"{live.url}{API}/devices"
    key = phone.profile.key
    body = json.dumps({"username": "alice", "password": PASSWORD, "device_name": "x"}).encode()
    proof = make_proof(key, "POST", url, body, jwk=public_jwk(key))
    response = requests.post(url, data=body, headers={"Device-Proof": proof}, timeout=5)
    assert error_of(response) == (409, "device_exists")


def test_enrollment_refuses_a_private_key_in_the_proof(world):
    live, _, _, _ = world
    url = f"{live.url}{API}/devices"
    key = ECKey.generate_key("P-256", private=True)
    body = json.dumps({"username": "alice", "password": PASSWORD, "device_name": "x"}).encode()
    claims = {"htm": "POST", "htu": url, "iat": int(time.time()), "jti": "j" * 20}
    claims["bh"] = body_hash(body)
    header = {"typ": "device-proof+jwt", "alg": "ES256", "jwk": key.as_dict(private=True)}
    proof = jwt.encode(header, claims, key)
    response = requests.post(url, data=body, headers={"Device-Proof": proof}, timeout=5)
    assert error_of(response) == (401, "invalid_proof")


@pytest.mark.parametrize("body", [b"[]", b"not json", b'{"qr": 5}', b"{}", b'{"qr": ""}'])
def test_bad_scan_bodies_get_invalid_request(world, body):
    live, _, _, phone = world
    response, _ = signed_post(phone, f"{live.url}{API}/login-requests/scan", body)
    assert error_of(response) == (400, "invalid_request")


@pytest.mark.parametrize(
    "qr",
    ["https://example.com/q/abc", "WIFI:S:home;T:WPA;P:secret;;", "http://127.0.0.1:1/q/x"],
)
def test_a_qr_that_is_not_ours_is_named_so(world, qr):
    live, _, _, phone = world
    body = json.dumps({"qr": qr}).encode()
    response, _ = signed_post(phone, f"{live.url}{API}/login-requests/scan", body)
    assert error_of(response) == (400, "not_a_login_code")


@pytest.mark.parametrize("suffix", ["A" * 43, "short", "../../etc", "%00"])
def test_an_unknown_request_id_is_answered_as_an_expired_one(world, suffix):
    """A guesser cannot tell an id that never existed from one that expired."""
    live, rp, browser, phone = world
    body = json.dumps({"qr": f"{live.url}/q/{suffix}"}).encode()
    unknown, _ = signed_post(phone, f"{live.url}{API}/login-requests/scan", body)
    page = browser.open(rp.authorize_url())
    with live.app.app_context():
        db.session.execute(
            update(LoginRequest)
            .where(LoginRequest.id == page.id)
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
        db.session.commit()
    body = json.dumps({"qr": page.qr_url}).encode()
    expired, _ = signed_post(phone, f"{live.url}{API}/login-requests/scan", body)
    assert error_of(unknown) == error_of(expired) == (410, "expired")
    assert unknown.json() == expired.json()
    if "/" not in suffix and "%" not in suffix:
        for decision in ("approve", "deny"):
            url = f"{live.url}{API}/login-requests/{suffix}/{decision}"
            assert signed_post(phone, url, b"{}")[0].json() == expired.json()


def test_a_request_scanned_by_one_device_cannot_be_taken_by_another(world, tmp_path):
    live, rp, browser, phone = world
    add_user(live.app, "mallory")
    other = enroll_phone(live.url, tmp_path / "mallory-phone", username="mallory")
    page = browser.open(rp.authorize_url())
    view = phone.scan(page.qr_url)["login_request"]
    with pytest.raises(PhoneApiError) as second_scan:
        other.scan(page.qr_url)
    assert (second_scan.value.status, second_scan.value.error) == (409, "already_used")
    with pytest.raises(PhoneApiError) as foreign_approval:
        other.approve(view["id"])
    assert (foreign_approval.value.status, foreign_approval.value.error) == (403, "wrong_device")
    # Scanning again from the rightful phone is a harmless retry.
    assert phone.scan(page.qr_url)["login_request"]["id"] == view["id"]


def test_approving_before_scanning_is_refused(world):
    _, rp, browser, phone = world
    page = browser.open(rp.authorize_url())
    with pytest.raises(PhoneApiError) as early:
        phone.approve(page.id)
    assert (early.value.status, early.value.error) == (400, "invalid_request")


def test_a_refused_request_cannot_be_replayed_once_the_state_allows_it(world):
    """The proof's jti is committed even when the transition is refused."""
    live, rp, browser, phone = world
    page = browser.open(rp.authorize_url())
    url = f"{live.url}{API}/login-requests/{page.id}/approve"
    early, headers = signed_post(phone, url, b"{}")
    assert error_of(early) == (400, "invalid_request")
    phone.scan(page.qr_url)
    replay = requests.post(url, data=b"{}", headers=headers, timeout=5)
    assert error_of(replay) == (401, "invalid_proof")
    assert "already used" in replay.json()["error_description"]
    assert phone.approve(page.id)["login_request"]["status"] == "approved"


def test_a_request_that_writes_nothing_still_uses_its_proof(world):
    """A repeated scan (a retry) changes nothing, and its proof is used all the same."""
    live, rp, browser, phone = world
    page = browser.open(rp.authorize_url())
    phone.scan(page.qr_url)
    url = f"{live.url}{API}/login-requests/scan"
    body = json.dumps({"qr": page.qr_url}).encode()
    again, headers = signed_post(phone, url, body)
    assert again.status_code == 200
    replay = requests.post(url, data=body, headers=headers, timeout=5)
    assert error_of(replay) == (401, "invalid_proof")


def test_idp_phone_cli_scans_a_png_and_approves(world, tmp_path):
    _, rp, browser, phone = world
    page = browser.open(rp.authorize_url())
    ws = browser.socket(page)
    assert next_status(ws) == "pending"
    image = tmp_path / "screenshot.png"
    qrcode.make(page.qr_url).save(image)
    cli = [sys.executable, "-m", "idp_phone.cli", "--profile", str(phone.profile_dir)]
    result = subprocess.run(
        [*cli, "scan", str(image), "--approve", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    output = json.loads(result.stdout)
    assert output["decision"] == "approved"
    assert output["login_request"]["client"]["name"] == "Test RP"
    assert next_status(ws) == "scanned"
    assert next_status(ws) == "approved"


def test_a_revoked_device_is_refused_at_once(world):
    """`idp devices revoke`: the phone's very next request fails."""
    live, rp, browser, phone = world
    page = browser.open(rp.authorize_url())
    view = phone.scan(page.qr_url)["login_request"]
    with live.app.app_context():
        from idp import db
        from idp.mobile.services import revoke_device

        revoke_device(phone.profile.device_id)
        db.session.commit()
    with pytest.raises(PhoneApiError) as refused:
        phone.approve(view["id"])
    assert (refused.value.status, refused.value.error) == (401, "device_revoked")
