"""Abuse limits: per IP on authorize and enrollment, per device on scan/approve/deny,
and a lockout after wrong passwords; each answers 429 with Retry-After."""

from __future__ import annotations

import json
import secrets

import pytest
import requests

from idp import limits
from idp_phone.api import PhoneApiError, PhoneClient
from support import PASSWORD, RelyingParty, add_client, add_user, make_app, redis_url, running_app

API = "/api/mobile/v1"


def assert_limited(response: requests.Response) -> int:
    assert response.status_code == 429
    retry_after = int(response.headers["Retry-After"])
    assert 1 <= retry_after <= 61
    return retry_after


def enroll(live, tmp_path, name: str, username: str = "alice", password: str = PASSWORD):
    phone = PhoneClient(tmp_path / name)
    phone.enroll(live.url, username, password, name)
    return phone


@pytest.mark.idp_config(IDP_LIMIT_BROWSER="3/minute", IDP_TRUSTED_PROXIES=1)
def test_authorize_is_limited_per_ip(world):
    _, rp, browser, _ = world
    page = browser.open(rp.authorize_url())  # 1
    assert browser.short_code(page).status_code == 200  # 2: the page's calls share it
    browser.open(rp.authorize_url())  # 3
    refused = requests.get(rp.authorize_url(), timeout=5)
    assert_limited(refused)
    assert "text/html" in refused.headers["Content-Type"]
    assert "Too many requests" in refused.text
    renew = browser.renew(page)
    assert_limited(renew)
    assert renew.json()["error"] == "too_many_requests"
    # Another address (through the one trusted proxy) has its own budget.
    other = requests.get(rp.authorize_url(), headers={"X-Forwarded-For": "203.0.113.9"}, timeout=5)
    assert other.status_code == 200


# IDP_PASSWORD_ENROLLMENT=always: these enroll several phones of one user by password
# alone (the approval of next phones: tests/integration/test_enrollment_approval.py).
@pytest.mark.idp_config(
    IDP_LIMIT_ENROLL="2/minute", IDP_TRUSTED_PROXIES=1, IDP_PASSWORD_ENROLLMENT="always"
)
def test_enrollment_is_limited_per_ip(live_server, tmp_path):
    add_user(live_server.app, "alice")
    enroll(live_server, tmp_path, "one")
    enroll(live_server, tmp_path, "two")
    with pytest.raises(PhoneApiError) as refused:
        enroll(live_server, tmp_path, "three")
    assert (refused.value.status, refused.value.error) == (429, "too_many_requests")
    assert refused.value.retry_after and refused.value.retry_after > 0


@pytest.mark.idp_config(IDP_LIMIT_PASSWORD="3/minute", IDP_PASSWORD_ENROLLMENT="always")
def test_wrong_passwords_lock_enrollment_for_that_user(live_server, tmp_path):
    add_user(live_server.app, "alice")
    add_user(live_server.app, "bob")
    for i in range(3):
        with pytest.raises(PhoneApiError) as wrong:
            enroll(live_server, tmp_path, f"guess{i}", password="not-the-password")
        assert wrong.value.error == "invalid_credentials"
    # Locked: even the right password is refused now, and says when to come back.
    with pytest.raises(PhoneApiError) as locked:
        enroll(live_server, tmp_path, "owner")
    assert (locked.value.status, locked.value.error) == (429, "too_many_requests")
    assert "wrong passwords" in locked.value.description
    assert locked.value.retry_after and 1 <= locked.value.retry_after <= 61
    # Another user is not locked, and right passwords never count.
    for i in range(4):
        enroll(live_server, tmp_path, f"bob{i}", username="bob")


@pytest.mark.idp_config(IDP_LIMIT_DEVICE="2/minute", IDP_PASSWORD_ENROLLMENT="always")
def test_scan_and_approve_are_limited_per_device(world, tmp_path):
    live, rp, browser, phone = world
    first = browser.open(rp.authorize_url())
    phone.scan(first.qr_url)  # 1
    phone.approve(first.id)  # 2
    second = browser.open(rp.authorize_url())
    with pytest.raises(PhoneApiError) as refused:
        phone.scan(second.qr_url)
    assert (refused.value.status, refused.value.error) == (429, "too_many_requests")
    assert refused.value.retry_after
    # The budget is the device's: another phone of the same user scans the page.
    other = enroll(live, tmp_path, "other")
    assert other.scan(second.qr_url)["login_request"]["status"] == "scanned"


@pytest.mark.idp_config(IDP_LIMIT_DEVICE="2/minute")
def test_requests_with_a_bad_proof_do_not_use_up_a_devices_budget(world):
    live, rp, browser, phone = world
    url = f"{live.url}{API}/login-requests/scan"
    for _ in range(5):  # someone else names alice's device, without its key
        forged = requests.post(
            url,
            data=json.dumps({"qr": "x"}),
            headers={"Device-Proof": "e30.e30.x", "Content-Type": "application/json"},
            timeout=5,
        )
        assert forged.status_code == 401
    page = browser.open(rp.authorize_url())
    assert phone.scan(page.qr_url)["login_request"]["status"] == "scanned"


@pytest.mark.idp_config(IDP_LIMIT_PHONE_IP="3/minute")
def test_the_phone_api_is_limited_per_ip_before_the_proof_is_checked(world):
    live, _, _, phone = world
    for _ in range(3):
        phone.me()
    with pytest.raises(PhoneApiError):
        phone.me()
    unsigned = requests.get(f"{live.url}{API}/devices/me", timeout=5)
    assert_limited(unsigned)
    assert unsigned.json()["error"] == "too_many_requests"


@pytest.mark.parametrize(("enabled", "last"), [(True, 429), (False, 200)], ids=["on", "off"])
def test_limits_can_be_switched_off(tmp_path, enabled, last):
    """Past the browser budget (2) the third sign-in page is refused, unless limits are off."""
    with running_app(tmp_path, IDP_RATELIMIT_ENABLED=enabled, IDP_LIMIT_BROWSER="2/minute") as app:
        client_id, secret = add_client(app)
        url = RelyingParty("http://127.0.0.1:8000", client_id, secret).authorize_url()
        http = app.test_client()
        statuses = [
            http.get(url.removeprefix("http://127.0.0.1:8000")).status_code for _ in range(3)
        ]
    assert statuses == [200, 200, last]


#: Every view with a per-IP limit: endpoint -> (setting, scope). Views of one scope share
#: one budget.
PER_IP_LIMITS = {
    "qrlogin.authorize": ("IDP_LIMIT_BROWSER", "browser"),
    "qrlogin.renew": ("IDP_LIMIT_BROWSER", "browser"),
    "qrlogin.short_code": ("IDP_LIMIT_BROWSER", "browser"),
    "qrlogin.restart": ("IDP_LIMIT_BROWSER", "browser"),
    "mobile.enroll": ("IDP_LIMIT_ENROLL", "enroll"),
    "mobile.whoami": ("IDP_LIMIT_PHONE_IP", "phone"),
    "mobile.my_devices": ("IDP_LIMIT_PHONE_IP", "phone"),
    "mobile.revoke_my_device": ("IDP_LIMIT_PHONE_IP", "phone"),
    "mobile.scan": ("IDP_LIMIT_PHONE_IP", "phone"),
    "mobile.approve": ("IDP_LIMIT_PHONE_IP", "phone"),
    "mobile.deny": ("IDP_LIMIT_PHONE_IP", "phone"),
    "mobile.enrollment_status": ("IDP_LIMIT_PHONE_IP", "phone"),
    "mobile.lookup_enrollment": ("IDP_LIMIT_PHONE_IP", "phone"),
    "mobile.approve_enrollment": ("IDP_LIMIT_PHONE_IP", "phone"),
    "mobile.deny_enrollment": ("IDP_LIMIT_PHONE_IP", "phone"),
    "mobile.withdraw_enrollment": ("IDP_LIMIT_PHONE_IP", "phone"),
    "mobile.release": ("IDP_LIMIT_PHONE_IP", "phone"),
    "oauth.device_authorization": ("IDP_LIMIT_DEVICE_AUTHORIZATION", "device_authorization"),
    "ciba.bc_authorize": ("IDP_LIMIT_BACKCHANNEL", "backchannel"),
    "mobile.inbox": ("IDP_LIMIT_PHONE_IP", "phone"),
    "mobile.open_item": ("IDP_LIMIT_PHONE_IP", "phone"),
}


def test_the_per_ip_limits_are_on_exactly_these_views(tmp_path):
    """``limits.per_ip`` marks views one by one: a view that loses (or gains) its mark
    shows here, not in production."""
    with running_app(tmp_path) as app:
        marked = {
            endpoint: mark
            for endpoint, view in app.view_functions.items()
            if (mark := getattr(view, limits.PER_IP_MARK, None))
        }
    assert marked == PER_IP_LIMITS


def test_workers_share_their_counters_through_redis(tmp_path):
    """Two workers (two apps) on one Redis: one budget, not one each."""
    settings = {
        "IDP_RATELIMIT_STORAGE_URL": redis_url(),
        "IDP_RATELIMIT_PREFIX": f"test-{secrets.token_hex(8)}",
        "IDP_LIMIT_BROWSER": "3/minute",
    }
    with running_app(tmp_path / "a", **settings) as a, running_app(tmp_path / "b", **settings) as b:
        first, second = a.test_client(), b.test_client()
        statuses = [c.get("/authorize").status_code for c in (first, second, first, second)]
    assert statuses == [400, 400, 400, 429]


def test_two_apps_in_one_process_never_share_counters(tmp_path):
    """Each app wraps the views marked with ``limits.per_ip`` in its own limiter: the
    view functions are the same objects, the budgets are not."""
    settings = {"IDP_RATELIMIT_STORAGE_URL": "memory://", "IDP_LIMIT_BROWSER": "2/minute"}
    with running_app(tmp_path / "a", **settings) as a, running_app(tmp_path / "b", **settings) as b:
        first, second = a.test_client(), b.test_client()
        statuses = [c.get("/authorize").status_code for c in (first, first, first, second)]
    assert statuses == [400, 400, 429, 400]


def test_limits_stay_on_when_redis_is_unreachable(tmp_path):
    """Counters fall back to the process's memory: still limited, still answering."""
    with running_app(
        tmp_path, IDP_RATELIMIT_STORAGE_URL="redis://127.0.0.1:9/0", IDP_LIMIT_BROWSER="2/minute"
    ) as app:
        client = app.test_client()
        statuses = [client.get("/authorize").status_code for _ in range(3)]
    assert statuses == [400, 400, 429]


def test_a_malformed_limit_is_refused_at_start(tmp_path):
    from idp.config import ConfigError

    with pytest.raises(ConfigError, match="IDP_LIMIT_DEVICE"):
        make_app(tmp_path, IDP_LIMIT_DEVICE="lots")
