"""Hostile or unusual input gets a clear answer, never a 500 or a wrong result."""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from datetime import timedelta

import pytest
import requests
from simple_websocket import ConnectionClosed

from idp import db
from idp.db import utcnow
from idp.oauth.keys import key_store
from idp.qrlogin.models import LoginRequest
from idp.realtime.broker import RECHECK, announce_shutdown
from idp_phone.proof import make_proof
from support import (
    next_status,
    redirect_params,
    running_app,
)


def approve(browser, phone, url):
    page = browser.open(url)
    view = phone.scan(page.qr_url)["login_request"]
    phone.approve(view["id"])
    return page


@pytest.mark.idp_config(IDP_WS_HEARTBEAT=1)
def test_a_page_socket_that_sends_data_is_closed(world):
    _, rp, browser, _ = world
    page = browser.open(rp.authorize_url())
    ws = browser.socket(page)
    assert next_status(ws) == "pending"
    ws.send("x" * 1000)  # the first inbound frame closes the socket at once
    with pytest.raises(ConnectionClosed):
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            ws.receive(timeout=0.2)
    assert ws.close_reason == 1008


@pytest.mark.idp_config(IDP_WS_HEARTBEAT=1)
def test_an_idle_page_gets_heartbeats(world):
    _live, rp, browser, _phone = world
    page = browser.open(rp.authorize_url())
    ws = browser.socket(page)
    assert next_status(ws) == "pending"
    assert json.loads(ws.receive(timeout=3)) == {"heartbeat": True}
    assert json.loads(ws.receive(timeout=3)) == {"heartbeat": True}


def test_a_recheck_rereads_the_state(world):
    """When the broker may have lost a message (it reconnected), pages read the database."""
    live, rp, browser, _phone = world
    page = browser.open(rp.authorize_url())
    ws = browser.socket(page)
    assert next_status(ws) == "pending"
    with live.app.app_context():  # change the row without publishing anything
        login = db.session.get(LoginRequest, page.id)
        login.status = "denied"
        db.session.commit()
    live.app.extensions["idp.broker"].broadcast(RECHECK)
    assert next_status(ws, timeout=5) == "denied"


def test_a_stopping_worker_sends_its_pages_elsewhere(world):
    """On SIGTERM each socket closes with 1012 (service restart), so the page reconnects."""
    _live, rp, browser, _phone = world
    page = browser.open(rp.authorize_url())
    ws = browser.socket(page)
    assert next_status(ws) == "pending"
    announce_shutdown()
    with pytest.raises(ConnectionClosed):
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            ws.receive(timeout=0.2)
    assert ws.close_reason == 1012
    again = browser.socket(page)  # the page reconnects and still gets the state
    assert next_status(again) == "pending"


def test_auth_time_is_utc_whatever_the_server_timezone(world, monkeypatch):
    _, rp, browser, phone = world
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        page = approve(browser, phone, rp.authorize_url())
        tokens = rp.exchange(redirect_params(browser.complete(page))["code"]).json()
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    _, claims = rp.verify_id_token(tokens["id_token"])
    assert abs(claims["auth_time"] - time.time()) < 60


def test_an_overlong_nonce_goes_back_as_invalid_request(world):
    _, rp, browser, _ = world
    response = browser.session.get(rp.authorize_url(nonce="n" * 300), allow_redirects=False)
    params = redirect_params(response)
    assert params["error"] == "invalid_request" and "nonce" in params["error_description"]


@pytest.mark.parametrize("field", ["client_id", "nonce", "state"])
def test_nul_characters_are_refused(world, field):
    _, rp, browser, _ = world
    url = rp.authorize_url(**{field: "abc\x00def"})
    response = browser.session.get(url, allow_redirects=False)
    assert response.status_code == 400 and "Location" not in response.headers


def test_token_request_with_nul_and_bad_basic_credentials(world):
    live, _, _, _ = world
    nul = requests.post(f"{live.url}/token", data={"grant_type": "x\x00"}, timeout=5)
    assert nul.status_code == 400 and nul.json()["error"] == "invalid_request"
    not_utf8 = base64.b64encode(b"\xff\xfe:\xff").decode()
    response = requests.post(
        f"{live.url}/token",
        data={"grant_type": "authorization_code", "code": "x"},
        headers={"Authorization": f"Basic {not_utf8}"},
        timeout=5,
    )
    assert response.status_code == 401 and response.json()["error"] == "invalid_client"


def test_omitted_redirect_uri_need_not_be_repeated(world):
    """RFC 6749 §4.1.3: redirect_uri is repeated at the token endpoint only if it was sent."""
    _, rp, browser, phone = world
    page = approve(browser, phone, rp.authorize_url(redirect_uri=None))
    code = redirect_params(browser.complete(page))["code"]
    response = rp.token(
        {"grant_type": "authorization_code", "code": code, "code_verifier": rp.verifier}
    )
    assert response.status_code == 200, response.text


def test_an_approval_is_redeemed_in_time_or_not_at_all(world):
    live, rp, browser, phone = world
    page = approve(browser, phone, rp.authorize_url())
    with live.app.app_context():  # long after both the code and the approval should have been used
        login = db.session.get(LoginRequest, page.id)
        login.expires_at = utcnow() - timedelta(minutes=5)
        login.decided_at = utcnow() - timedelta(minutes=5)
        db.session.commit()
    late = browser.complete(page)
    assert late.status_code == 410 and "Location" not in late.headers


@pytest.mark.idp_config(IDP_LOGIN_REQUEST_TTL=1)
def test_an_expired_code_is_renewed_once(world):
    _, rp, browser, _ = world
    page = browser.open(rp.authorize_url())
    time.sleep(1.1)
    assert browser.renew(page).status_code == 200
    again = browser.renew(page)
    assert again.status_code == 409 and again.json()["error"] == "already_used"


def test_the_phone_api_refuses_nul_in_json(world):
    live, _, _, phone = world
    url = f"{live.url}/api/mobile/v1/login-requests/scan"
    body = json.dumps({"qr": f"{live.url}/q/abc\x00"}).encode()
    profile = phone.profile
    proof = make_proof(profile.key, "POST", url, body, kid=profile.device_id)
    response = requests.post(url, data=body, headers={"Device-Proof": proof}, timeout=5)
    assert response.status_code == 400 and response.json()["error"] == "invalid_request"


@pytest.mark.parametrize("backend", ["sqlite", "postgres+redis"], indirect=True)
def test_processes_starting_together_agree_on_signing_keys(tmp_path, backend):
    with running_app(tmp_path, **backend) as one, running_app(tmp_path, **backend) as two:
        apps = [one, two]
        barrier = threading.Barrier(2)
        results = {}

        def load(index):
            with apps[index].app_context():
                barrier.wait()
                results[index] = (key_store().signing_key("RS256").kid, key_store().jwks())

        threads = [threading.Thread(target=load, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
    assert results[0] == results[1]
    assert json.dumps(results[0][1], sort_keys=True) == json.dumps(results[1][1], sort_keys=True)


def test_serve_refuses_several_workers_without_a_shared_broker(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    env = os.environ | {"IDP_INSTANCE_PATH": str(tmp_path), "IDP_BROKER_URL": "memory://"}
    result = subprocess.run(
        [str(Path(sys.executable).parent / "idp"), "serve", "--workers", "2", "--port", "1"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 1 and "IDP_BROKER_URL=redis://" in result.stderr


ANY = {"Accept": "*/*"}
#: One request per API family that fails, and the status it fails with.
API_ERRORS = [
    ("GET", "/api/mobile/v1/devices/me", 401),
    ("GET", "/api/mobile/v1/no-such-call", 404),
    ("GET", "/api/mobile/v1/devices", 401),
    ("PUT", "/api/mobile/v1/devices", 405),
    ("POST", "/token", 400),
    ("GET", "/token", 405),
    ("POST", "/revoke", 401),
    ("POST", "/introspect", 401),
    ("GET", "/userinfo", 401),
    ("POST", "/.well-known/openid-configuration", 405),
    ("POST", "/jwks", 405),
    ("POST", "/healthz", 405),
    ("POST", "/readyz", 405),
    ("POST", "/authorize/renew/x", 403),
    ("POST", "/authorize/short-code/x", 403),
    ("POST", "/authorize/restart/x", 403),
    ("GET", "/authorize/renew/x", 405),
]


@pytest.mark.parametrize(("method", "path", "status"), API_ERRORS)
def test_api_errors_are_json_for_any_accept(client, method, path, status):
    """``Accept: */*`` (what curl, requests and most HTTP libraries send) is not a browser
    asking for a page: an API endpoint answers with its JSON error."""
    for headers in (ANY, {}, {"Accept": "text/html,*/*;q=0.8"}):
        response = client.open(path, method=method, headers=headers)
        assert response.status_code == status, (headers, response.status_code)
        assert response.mimetype == "application/json", (headers, response.mimetype)
        body = response.get_json()
        if path == "/userinfo":  # no token at all: a bare challenge, no error code (RFC 6750 §3.1)
            assert body == {}
            assert response.headers["WWW-Authenticate"].startswith("Bearer realm=")
        else:
            assert isinstance(body["error"], str)


#: Every route of the app, by kind: the APIs answer errors in JSON whatever ``Accept``
#: says; pages people open (and the page socket and static files) keep HTML for browsers.
API_ROUTES = {
    "/token", "/device_authorization", "/revoke", "/introspect", "/userinfo",
    "/.well-known/openid-configuration", "/jwks", "/authorize/renew/<request_id>",
    "/authorize/short-code/<request_id>", "/authorize/restart/<request_id>",
    "/api/mobile/v1/devices", "/api/mobile/v1/devices/me",
    "/api/mobile/v1/devices/<device_id>/revoke", "/api/mobile/v1/login-requests/scan",
    "/api/mobile/v1/login-requests/<request_id>/approve",
    "/api/mobile/v1/login-requests/<request_id>/deny",
    "/api/mobile/v1/login-requests/<request_id>/release",
    "/api/mobile/v1/enrollments/<enrollment_id>", "/api/mobile/v1/enrollments/lookup",
    "/api/mobile/v1/enrollments/<enrollment_id>/approve",
    "/api/mobile/v1/enrollments/<enrollment_id>/deny",
    "/api/mobile/v1/enrollments/<enrollment_id>/withdraw", "/healthz", "/readyz", "/metrics",
    "/bc-authorize", "/api/mobile/v1/inbox", "/api/mobile/v1/inbox/<request_id>/open",
}  # fmt: skip
PAGE_ROUTES = {
    "/", "/authorize", "/authorize/complete/<request_id>", "/q/<request_id>", "/logout", "/device",
    "/ws/login/<request_id>", "/static/<path:filename>",
    "/api/mobile/v1/inbox/ws",  # a WebSocket: only a handshake matches it (else 400)
    "/app", "/app/", "/app/invite/<token>", "/app/manifest.webmanifest", "/app/sw.js",
    "/app/q/<request_id>",
}  # fmt: skip


def test_every_api_route_answers_json_for_any_accept(app, client):
    """Each API route, asked with a method none of them takes (405), and a path under the
    phone API's prefix that is no route (404), answer JSON to ``Accept: */*``."""
    routes = {rule.rule for rule in app.url_map.iter_rules()}
    assert routes == API_ROUTES | PAGE_ROUTES, "a new route: classify it here"
    for route in sorted(API_ROUTES):
        path = route.replace("<request_id>", "x").replace("<device_id>", "x")
        response = client.open(path, method="PATCH", headers=ANY)
        assert (response.status_code, response.mimetype) == (405, "application/json"), path
        assert response.get_json()["error"] == "method_not_allowed", path
    for path in ("/api/mobile/v1/", "/api/mobile/v1/devices/x/y/z", "/api/mobile/v1/x/approve"):
        response = client.open(path, method="POST", headers=ANY)
        assert (response.status_code, response.mimetype) == (404, "application/json"), path
        assert response.get_json()["error"] == "not_found", path


@pytest.mark.idp_config(IDP_METRICS_TOKEN="s3cret-metrics-token")
def test_the_metrics_refusal_is_json_for_any_accept(live_server):
    response = requests.get(f"{live_server.url}/metrics", headers=ANY, timeout=5)
    assert response.status_code == 401
    assert response.headers["Content-Type"] == "application/json"
    assert response.json()["error"] == "unauthorized"


BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/authorize?response_type=code&client_id=nobody", 400),
        ("POST", "/logout", 400),
        ("GET", "/authorize/complete/x", 403),
        ("GET", "/no-such-page", 404),
        ("POST", "/q/x", 405),
    ],
)
def test_pages_people_open_keep_html_errors(client, method, path, status):
    for headers in (BROWSER, ANY):
        response = client.open(path, method=method, headers=headers)
        assert (response.status_code, response.mimetype) == (status, "text/html"), headers
    asked = client.open(path, method=method, headers={"Accept": "application/json"})
    assert (asked.status_code, asked.mimetype) == (status, "application/json")
