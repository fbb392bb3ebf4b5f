"""The device authorization grant (RFC 8628) end to end, through a live server: a public
command line and a confidential TV start at ``/device_authorization``, the phone approves
from the QR code's URL, from a PNG of it (``idp-phone scan``) or from the typed code, the
device polls ``/token`` and gets tokens; denial, expiry, refused clients and scopes; wrong
user codes audited and locked out; the ``/device`` page; revoking the phone."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import qrcode
import requests
from authlib.integrations.requests_client import OAuth2Session
from joserfc import jwt
from joserfc.jwk import KeySet

from idp import audit, db, web
from idp.admin.services import create_client
from idp_phone.api import PhoneApiError, PhoneClient
from idp_phone.proof import make_proof
from support import add_user, enroll_phone

pytestmark = pytest.mark.parametrize("backend", ["sqlite", "postgres+redis"], indirect=True)

DEVICE = "urn:ietf:params:oauth:grant-type:device_code"
USER_CODE = re.compile(r"^[ACDEFGHJKMNPQRTUVWXY]{4}-[ACDEFGHJKMNPQRTUVWXY]{4}$")
FAST = {"IDP_DEVICE_POLL_INTERVAL": 1}


@pytest.fixture
def world(live_server, tmp_path):
    """A live IdP, alice's phone, a public CLI and a confidential TV with the device grant,
    and a site without it."""
    app = live_server.app
    add_user(app, "alice")
    with app.app_context(), db.unit_of_work():
        cli, _ = create_client("Backup CLI", [], public=True, device_grant=True)
        tv, tv_secret = create_client("Living-room TV", [], device_grant=True)
        site, site_secret = create_client("Photo Club", ["http://localhost/cb"])
        clients = {
            "cli": (cli.client_id, None),
            "tv": (tv.client_id, tv_secret),
            "site": (site.client_id, site_secret),
        }
    phone = enroll_phone(live_server.url, tmp_path / "phone")
    return live_server, phone, clients


def authorize(live, client_id, secret=None, scope="openid profile email", **extra):
    """POST /device_authorization as a device does: a public one names itself in the
    body, a confidential one authenticates with HTTP Basic."""
    data = {"scope": scope, **extra} if scope is not None else dict(extra)
    auth = (client_id, secret) if secret else None
    if not secret:
        data["client_id"] = client_id
    return requests.post(f"{live.url}/device_authorization", data=data, auth=auth, timeout=10)


def started(live, client_id, secret=None, **kwargs):
    response = authorize(live, client_id, secret, **kwargs)
    assert response.status_code == 200, response.text
    return response.json()


def poll(live, client_id, secret, device_code):
    data = {"grant_type": DEVICE, "device_code": device_code}
    auth = (client_id, secret) if secret else None
    if not secret:
        data["client_id"] = client_id
    return requests.post(f"{live.url}/token", data=data, auth=auth, timeout=10)


def poll_until_settled(live, client_id, secret, codes):
    """Poll as RFC 8628 §3.5 says: every ``interval`` seconds, 5 more after a slow_down."""
    interval = codes["interval"]
    for _ in range(30):
        time.sleep(interval)
        answer = poll(live, client_id, secret, codes["device_code"])
        error = answer.json().get("error")
        if error == "slow_down":
            interval += 5
        elif error != "authorization_pending":
            return answer
    raise AssertionError("the device never got an answer")


def check_id_token(live, client_id, id_token):
    keys = KeySet.import_key_set(requests.get(f"{live.url}/jwks", timeout=10).json())
    token = jwt.decode(id_token, keys)  # the signature, with the published keys
    claims = token.claims
    assert token.header["kid"] in {key.kid for key in keys}
    assert claims["iss"] == live.url and claims["aud"] == client_id
    assert claims["amr"] == ["swk", "user"] and claims["acr"] == "urn:qr-idp:acr:phone-approval"
    assert isinstance(claims["auth_time"], int) and claims["auth_time"] <= claims["iat"]
    assert claims["preferred_username"] == "alice"
    jwt.JWTClaimsRegistry(iss={"essential": True, "value": live.url}).validate(claims)


def events(app, name):
    with app.app_context():
        return [line for line in audit.query() if line.event == name]


def raw_scan(live, phone: PhoneClient, body: dict) -> requests.Response:
    """POST a scan body as it is (the phone client checks and rewrites it first)."""
    profile = phone.profile
    url = f"{live.url}/api/mobile/v1/login-requests/scan"
    raw = json.dumps(body).encode()
    proof = make_proof(profile.key, "POST", url, raw, kid=profile.device_id)
    headers = {"Device-Proof": proof, "Content-Type": "application/json"}
    return requests.post(url, data=raw, headers=headers, timeout=10)


def idp_phone(phone: PhoneClient, *args: str) -> subprocess.CompletedProcess:
    command = [str(Path(sys.executable).parent / "idp-phone"), "--profile", str(phone.profile_dir)]
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, timeout=60, check=False
    )


# The whole flow -------------------------------------------------------------------------------


@pytest.mark.idp_config(**FAST)
def test_a_public_cli_signs_in_from_the_qr_url(world):
    live, phone, clients = world
    cli, _ = clients["cli"]
    response = authorize(live, cli, scope="openid profile email address")
    assert response.status_code == 200, response.text
    assert response.headers["Cache-Control"] == "no-store"
    codes = response.json()
    assert USER_CODE.match(codes["user_code"])
    assert codes["verification_uri"] == f"{live.url}/device"
    assert codes["verification_uri_complete"] == f"{live.url}/device?user_code={codes['user_code']}"
    assert codes["expires_in"] == live.app.config["IDP_DEVICE_CODE_TTL"]
    assert codes["interval"] == live.app.config["IDP_DEVICE_POLL_INTERVAL"]
    assert len(codes["device_code"]) >= 43 and codes["device_code"] != codes["user_code"]
    [started_event] = events(live.app, "device.authorization_started")
    assert started_event.client_id == cli and started_event.ip == "127.0.0.1"
    assert started_event.detail["scope"] == "openid profile email"  # "address" is not granted
    assert codes["user_code"] not in json.dumps(started_event.detail)

    assert poll(live, cli, None, codes["device_code"]).json()["error"] == "authorization_pending"
    view = phone.scan(codes["verification_uri_complete"])["login_request"]
    assert view["kind"] == "device" and view["status"] == "scanned"
    assert view["user_code"] == codes["user_code"]  # to compare with the device's screen
    assert view["client"]["name"] == "Backup CLI" and view["client"]["redirect_host"] is None
    assert [s["name"] for s in view["scopes"]] == ["openid", "profile", "email"]
    assert view["browser"]["ip"] == "127.0.0.1"  # the device's address
    assert view["browser"]["user_agent"].startswith("python-requests/")
    assert view["proximity"]["verdict"] == "same_network"
    assert view["number_matching"] is None
    phone.approve(view["id"])

    answer = poll_until_settled(live, cli, None, codes)
    assert answer.status_code == 200, answer.text
    assert answer.headers["Cache-Control"] == "no-store"
    tokens = answer.json()
    assert tokens["scope"] == "openid profile email" and tokens["refresh_token"]
    check_id_token(live, cli, tokens["id_token"])
    userinfo = requests.get(
        f"{live.url}/userinfo",
        headers={"Authorization": f"Bearer {tokens['access_token']}"},
        timeout=10,
    )
    assert userinfo.json()["preferred_username"] == "alice"


@pytest.mark.idp_config(**FAST)
def test_a_confidential_tv_signs_in_from_a_png_with_authlib(world, tmp_path):
    live, phone, clients = world
    tv, secret = clients["tv"]
    session = OAuth2Session(tv, secret, scope="openid profile")
    response = session.post(
        f"{live.url}/device_authorization",
        data={"scope": "openid profile"},
        auth=(tv, secret),
        withhold_token=True,
    )
    assert response.status_code == 200, response.text
    codes = response.json()
    png = tmp_path / "tv-screen.png"
    qrcode.make(codes["verification_uri_complete"]).save(png)

    result = idp_phone(phone, "scan", str(png), "--approve")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith("A device wants to sign in as you to Living-room TV\n")
    assert "!! Approve only if you started this sign-in yourself" in out
    assert "If someone sent you this code or link" in out
    assert f"Code:          {codes['user_code']} (the device must show this same code)" in out
    assert "IP address:    127.0.0.1" in out
    assert "same network as your phone" in out
    assert out.rstrip().endswith("Approved: the device is signing you in.")

    time.sleep(codes["interval"])
    tokens = session.fetch_token(
        f"{live.url}/token", grant_type=DEVICE, device_code=codes["device_code"]
    )
    assert tokens["token_type"].lower() == "bearer"
    check_id_token(live, tv, tokens["id_token"])


@pytest.mark.idp_config(**FAST)
def test_a_typed_code_in_lowercase_without_the_hyphen(world):
    live, phone, clients = world
    cli, _ = clients["cli"]
    codes = started(live, cli)
    typed = codes["user_code"].lower().replace("-", "")
    view = phone.scan_user_code(typed)["login_request"]
    assert view["kind"] == "device" and view["user_code"] == codes["user_code"]
    # The same phone reading the QR code after typing sees the same request.
    again = raw_scan(live, phone, {"qr": codes["verification_uri_complete"]})
    assert again.status_code == 200, again.text
    assert again.json()["login_request"]["id"] == view["id"]
    phone.approve(view["id"])
    assert poll_until_settled(live, cli, None, codes).status_code == 200


@pytest.mark.idp_config(**FAST)
def test_the_phone_command_takes_a_user_code_and_denies(world):
    live, phone, clients = world
    cli, _ = clients["cli"]
    codes = started(live, cli)
    result = idp_phone(phone, "scan", "--user-code", codes["user_code"], "--deny")
    assert result.returncode == 0, result.stderr
    assert "A device wants to sign in as you to Backup CLI" in result.stdout
    assert result.stdout.rstrip().endswith("Denied: the device will not be signed in.")
    answer = poll_until_settled(live, cli, None, codes)
    assert answer.status_code == 400
    assert answer.json()["error"] == "access_denied"


def test_a_scanned_code_is_no_one_elses(world, tmp_path):
    """The user code stays live after the scan (the device still shows it), but another
    phone typing it cannot take the request over or see it."""
    live, phone, clients = world
    cli, _ = clients["cli"]
    codes = started(live, cli)
    phone.scan_user_code(codes["user_code"])
    add_user(live.app, "bob")
    bob = enroll_phone(live.url, tmp_path / "bob", "bob")
    with pytest.raises(PhoneApiError) as refused:
        bob.scan_user_code(codes["user_code"])
    assert (refused.value.status, refused.value.error) == (409, "already_used")
    assert "Backup CLI" not in refused.value.description


@pytest.mark.idp_config(IDP_DEVICE_CODE_TTL=1, **FAST)
def test_an_unused_code_expires(world):
    live, phone, clients = world
    cli, _ = clients["cli"]
    codes = started(live, cli)
    time.sleep(1.5)
    answer = poll(live, cli, None, codes["device_code"])
    assert (answer.status_code, answer.json()["error"]) == (400, "expired_token")
    # Its user code went with it: the phone is told no sign-in waits for it.
    with pytest.raises(PhoneApiError) as refused:
        phone.scan_user_code(codes["user_code"])
    assert (refused.value.status, refused.value.error) == (404, "unknown_code")


@pytest.mark.idp_config(**FAST)
def test_revoking_the_approving_phone_revokes_the_devices_tokens(world):
    live, phone, clients = world
    cli, _ = clients["cli"]
    codes = started(live, cli)
    phone.approve(phone.scan_user_code(codes["user_code"])["login_request"]["id"])
    tokens = poll_until_settled(live, cli, None, codes).json()
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert requests.get(f"{live.url}/userinfo", headers=bearer, timeout=10).status_code == 200
    phone.revoke(phone.profile.device_id)
    assert requests.get(f"{live.url}/userinfo", headers=bearer, timeout=10).status_code == 401
    refreshed = requests.post(
        f"{live.url}/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "client_id": cli,
        },
        timeout=10,
    )
    assert (refreshed.status_code, refreshed.json()["error"]) == (400, "invalid_grant")


# Refusals at /device_authorization -----------------------------------------------------------


def test_a_client_without_the_grant_is_unauthorized(world):
    live, _, clients = world
    site, secret = clients["site"]
    response = authorize(live, site, secret)
    assert (response.status_code, response.json()["error"]) == (400, "unauthorized_client")
    assert "device authorization grant" in response.json()["error_description"]
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize(
    "credentials",
    [
        ("nobody", None),  # an unknown client, by its client_id
        ("nobody", "x"),  # an unknown client, with HTTP Basic
        ("tv", "wrong-secret"),
        ("tv", None),  # a confidential client without its secret
    ],
)
def test_a_client_that_does_not_authenticate_is_refused(world, credentials):
    live, _, clients = world
    name, secret = credentials
    client_id = clients[name][0] if name in clients else name
    response = authorize(live, client_id, secret)
    assert (response.status_code, response.json()["error"]) == (401, "invalid_client")
    assert response.headers["WWW-Authenticate"].startswith("Basic ")
    assert "device_code" not in response.json()
    assert events(live.app, "device.authorization_started") == []


@pytest.mark.parametrize("scope", ["address phone", "", None])
def test_a_scope_with_nothing_allowed_is_invalid(world, scope):
    live, _, clients = world
    cli, _ = clients["cli"]
    response = authorize(live, cli, scope=scope)
    assert (response.status_code, response.json()["error"]) == (400, "invalid_scope")
    assert response.json()["error_description"]


def test_only_post_is_allowed(world):
    live, _, _ = world
    response = requests.get(f"{live.url}/device_authorization", timeout=10)
    assert response.status_code == 405


@pytest.mark.idp_config(IDP_LIMIT_DEVICE_AUTHORIZATION="2/minute")
def test_device_authorization_is_limited_per_ip(world):
    live, _, clients = world
    cli, _ = clients["cli"]
    statuses = [authorize(live, cli).status_code for _ in range(2)]
    assert statuses == [200, 200]
    limited = authorize(live, cli)
    assert (limited.status_code, limited.json()["error"]) == (429, "too_many_requests")
    assert int(limited.headers["Retry-After"]) >= 1


def test_discovery_names_the_endpoint_and_the_grant(world):
    live, _, _ = world
    metadata = requests.get(f"{live.url}/.well-known/openid-configuration", timeout=10).json()
    assert metadata["device_authorization_endpoint"] == f"{live.url}/device_authorization"
    assert DEVICE in metadata["grant_types_supported"]


# Wrong user codes ---------------------------------------------------------------------------


def test_wrong_user_codes_are_audited_and_lock_the_user_out(world):
    live, phone, clients = world
    cli, _ = clients["cli"]
    codes = started(live, cli)
    wrong = "AAAA-AAAA" if codes["user_code"] != "AAAA-AAAA" else "CCCC-CCCC"
    attempts = live.app.config["IDP_SHORT_CODE_ATTEMPTS"]
    for n in range(attempts):
        # Typed, or read from a device URL: the same lookup, the same count.
        body = {"code": wrong} if n % 2 else {"qr": f"{live.url}/device?user_code={wrong}"}
        refused = raw_scan(live, phone, body)
        assert (refused.status_code, refused.json()["error"]) == (404, "unknown_code"), body
    lines = events(live.app, "login.code_refused")
    assert len(lines) == attempts
    for line in lines:
        assert (line.username, line.device_id, line.ip) == (
            "alice",
            phone.profile.device_id,
            "127.0.0.1",
        )
        assert wrong not in json.dumps(line.detail) and codes["user_code"] not in json.dumps(
            line.detail
        )
    locked = raw_scan(live, phone, {"code": codes["user_code"]})  # even the right one
    assert (locked.status_code, locked.json()["error"]) == (429, "too_many_attempts")
    assert int(locked.headers["Retry-After"]) >= 1
    assert len(events(live.app, "login.code_refused")) == attempts  # a lock-out is no guess


@pytest.mark.parametrize(
    "query",
    ["user_code=KX1T-WMPQ", "user_code=", "user_code=KXRTWMPQX"],
)
def test_a_device_url_with_a_malformed_code_is_refused_without_counting(world, query):
    live, phone, _ = world
    for _ in range(6):  # more than the attempts allowed: malformed input does not count
        response = raw_scan(live, phone, {"qr": f"{live.url}/device?{query}"})
        assert (response.status_code, response.json()["error"]) == (400, "invalid_request")
        assert "8 letters like KXRT-WMPQ" in response.json()["error_description"]
    assert events(live.app, "login.code_refused") == []


@pytest.mark.parametrize(
    "url",
    [
        "{url}/device/?user_code=KXRT-WMPQ",  # another path
        "{url}/devices?user_code=KXRT-WMPQ",
        "https://evil.example/device?user_code=KXRT-WMPQ",  # another origin
        "{url}/device?user_code=KXRT-WMPQ&client_id=x",  # more than the code
        "{url}/device?user_code=KXRT-WMPQ&user_code=CCCC-CCCC",
        "{url}/device?user_code=KXRT-WMPQ#x",
    ],
)
def test_only_the_issuers_own_device_url_is_a_device_code(world, url):
    live, phone, _ = world
    response = raw_scan(live, phone, {"qr": url.format(url=live.url)})
    assert (response.status_code, response.json()["error"]) == (400, "not_a_login_code")
    assert events(live.app, "login.code_refused") == []


@pytest.mark.idp_config(IDP_LIMIT_PHONE_IP="3/minute")
def test_scans_are_limited_per_ip(world):
    live, phone, _ = world
    statuses = [raw_scan(live, phone, {"code": "AAAA-AAAA"}).status_code for _ in range(3)]
    assert statuses == [404, 404, 404]
    limited = raw_scan(live, phone, {"code": "AAAA-AAAA"})
    assert (limited.status_code, limited.json()["error"]) == (429, "too_many_requests")
    assert int(limited.headers["Retry-After"]) >= 1


# The /device page -----------------------------------------------------------------------------


def test_the_device_page_says_to_use_the_phone_app(world):
    live, _, clients = world
    cli, _ = clients["cli"]
    codes = started(live, cli)
    response = requests.get(codes["verification_uri_complete"], timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    with live.app.app_context():
        assert response.headers["Content-Security-Policy"] == web.content_security_policy()
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    page = response.text
    assert "Open the QR-IdP app on your phone" in page
    assert f'<strong class="user-code" id="user-code">{codes["user_code"]}</strong>' in page
    assert f'href="/app/#device={codes["user_code"]}"' in page
    assert "Never enter a code someone sent you." in page

    # Never looked up: a code nobody has gets the same page, but for the code itself.
    other = "AAAA-AAAA" if codes["user_code"] != "AAAA-AAAA" else "CCCC-CCCC"
    unknown = requests.get(f"{live.url}/device?user_code={other.lower()}", timeout=10)
    assert unknown.status_code == 200
    assert unknown.text.replace(other, codes["user_code"]) == page

    bare = requests.get(f"{live.url}/device", timeout=10)
    assert bare.status_code == 200 and 'id="user-code"' not in bare.text
    assert "Open the QR-IdP app on your phone" in bare.text


@pytest.mark.parametrize("given", ["KX1T-WMPQ", "", "<script>", "KXRT-WMPQ-KXRT"])
def test_the_device_page_refuses_what_cannot_be_a_code(world, given):
    live, _, _ = world
    response = requests.get(f"{live.url}/device", params={"user_code": given}, timeout=10)
    assert response.status_code == 400
    assert response.headers["Content-Type"].startswith("text/html")
    assert "a code has 8 letters, like KXRT-WMPQ" in response.text
    assert "<script>" not in response.text and 'id="user-code"' not in response.text


def test_the_device_page_speaks_chinese(world):
    live, _, _ = world
    response = requests.get(
        f"{live.url}/device?user_code=kxrt-wmpq", headers={"Accept-Language": "zh-CN"}, timeout=10
    )
    assert response.status_code == 200
    assert '<html lang="zh-CN">' in response.text
    assert "KXRT-WMPQ" in response.text
    assert "手机" in response.text and "不要输入别人发给你的代码" in response.text


# CORS, as at /token ----------------------------------------------------------------------------


def test_a_browser_app_of_the_clients_origin_may_start(world):
    live, _, _ = world
    origin = "https://tv-app.example"
    with live.app.app_context(), db.unit_of_work():
        client, _ = create_client(
            "Web TV", [], public=True, device_grant=True, web_origins=[origin]
        )
        client_id = client.client_id
    preflight = requests.options(
        f"{live.url}/device_authorization",
        headers={"Origin": origin, "Access-Control-Request-Method": "POST"},
        timeout=10,
    )
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == origin
    assert preflight.headers["Access-Control-Allow-Methods"] == "POST"
    answer = requests.post(
        f"{live.url}/device_authorization",
        data={"client_id": client_id, "scope": "openid"},
        headers={"Origin": origin},
        timeout=10,
    )
    assert answer.status_code == 200
    assert answer.headers["Access-Control-Allow-Origin"] == origin
    assert "Origin" in answer.headers["Vary"]
    stranger = requests.post(
        f"{live.url}/device_authorization",
        data={"client_id": client_id, "scope": "openid"},
        headers={"Origin": "https://evil.example"},
        timeout=10,
    )
    assert "Access-Control-Allow-Origin" not in stranger.headers


@pytest.mark.idp_config(**FAST)
def test_the_demo_device_signs_in_against_this_endpoint(world):
    """clients/demo_device, as a person runs it: it prints the code; the phone types it
    and approves while the device waits; the device ends with the ID token's claims."""
    import io

    from demo_device import DeviceSignIn

    live, phone, clients = world
    cli, _ = clients["cli"]
    out = io.StringIO()
    approved = []

    def sleep(seconds: float) -> None:
        if not approved:  # the person reads the screen and answers on the phone
            code = re.search(r"[ACDEFGHJKMNPQRTUVWXY]{4}-[ACDEFGHJKMNPQRTUVWXY]{4}", out.getvalue())
            assert code, out.getvalue()
            view = phone.scan_user_code(code.group(0))["login_request"]
            approved.append(phone.approve(view["id"]))
        time.sleep(seconds)

    claims = DeviceSignIn(live.url, cli, out=out, sleep=sleep).run()
    assert claims["preferred_username"] == "alice" and claims["aud"] == cli
    assert f"{live.url}/device" in out.getvalue()
