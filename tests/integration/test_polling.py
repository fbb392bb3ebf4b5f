"""The token endpoint's answers to a polling device or site (idp.oauth.polling), through a
live server: pending, slow_down and its growing interval, the phone's approval and
denial, expiry, single use, revocation with the phone. The requests are made here in
the server's app, as /device_authorization and /bc-authorize make them."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
import requests
from joserfc import jwt
from joserfc.jwk import KeySet
from sqlalchemy import select, update

from idp import db
from idp.accounts.models import User
from idp.admin.services import create_client
from idp.db import utcnow
from idp.mobile.models import Device
from idp.oauth import polling
from idp.oauth.models import Client, Token, digest
from idp.qrlogin import services
from idp.qrlogin.lifecycle import Kind
from idp.qrlogin.models import LoginRequest
from idp.web import Caller
from support import add_user, enroll_phone

pytestmark = pytest.mark.parametrize("backend", ["sqlite", "postgres+redis"], indirect=True)

DEVICE = polling.DEVICE_CODE_GRANT_TYPE
CIBA = polling.CIBA_GRANT_TYPE
CODE = "KXRT-WMPQ"


@pytest.fixture
def setup(live_server, tmp_path):
    app = live_server.app
    add_user(app, "alice")
    with app.app_context(), db.unit_of_work():
        client, _ = create_client("Living-room TV", ["http://localhost/cb"], public=True)
        client.grant_types = [DEVICE, "refresh_token"]
        site, secret = create_client("Call centre", ["http://localhost/cb"])
        site.grant_types = [CIBA]
        ids = client.client_id, site.client_id, secret
    phone = enroll_phone(live_server.url, tmp_path / "phone")
    return live_server, phone, ids


def start(app, client_id: str, kind: Kind, *, interval: int = 1, ttl: int = 600, **columns):
    with app.app_context(), db.unit_of_work():
        client = db.session.scalar(select(Client).where(Client.client_id == client_id))
        if kind == Kind.DEVICE:
            columns |= dict(
                short_code_hash=digest(CODE), short_code_expires_at=utcnow() + timedelta(hours=1)
            )
        login, secret = polling.new_request(
            kind=kind,
            client=client,
            scope="openid profile",
            caller=Caller("127.0.0.1", "tv/1.0"),
            ttl=ttl,
            interval=interval,
            **columns,
        )
        return login.id, secret


def poll(live, data, auth=None):
    return requests.post(f"{live.url}/token", data=data, auth=auth, timeout=10)


def device_poll(live, client_id, secret):
    return poll(live, {"grant_type": DEVICE, "device_code": secret, "client_id": client_id})


def error_of(response):
    assert response.status_code == 400, response.text
    return response.json()["error"]


def test_a_device_polls_until_the_phone_approves(setup):
    live, phone, (tv, _, _) = setup
    request_id, secret = start(live.app, tv, Kind.DEVICE)
    assert error_of(device_poll(live, tv, secret)) == "authorization_pending"
    time.sleep(1.05)
    view = phone.scan_code(CODE.lower().replace("-", ""))["login_request"]
    assert view["id"] == request_id and view["kind"] == "device"
    assert view["number_matching"] is None
    assert error_of(device_poll(live, tv, secret)) == "authorization_pending"
    phone.approve(request_id)
    time.sleep(1.05)
    answer = device_poll(live, tv, secret)
    assert answer.status_code == 200, answer.text
    tokens = answer.json()
    assert answer.headers["Cache-Control"] == "no-store"
    assert tokens["token_type"].lower() == "bearer" and tokens["refresh_token"]
    keys = KeySet.import_key_set(requests.get(f"{live.url}/jwks", timeout=10).json())
    claims = jwt.decode(tokens["id_token"], keys).claims
    assert claims["iss"] == live.url and claims["aud"] == tv
    assert claims["amr"] == ["swk", "user"] and claims["acr"] == "urn:qr-idp:acr:phone-approval"
    assert claims["preferred_username"] == "alice"
    assert abs(claims["auth_time"] - time.time()) < 60
    userinfo = requests.get(
        f"{live.url}/userinfo",
        headers={"Authorization": f"Bearer {tokens['access_token']}"},
        timeout=10,
    )
    assert userinfo.json()["preferred_username"] == "alice"

    # Single use: redeemed once; presented again, it revokes what it gave.
    time.sleep(1.05)
    again = device_poll(live, tv, secret)
    assert error_of(again) == "invalid_grant"
    refresh = poll(
        live,
        {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"], "client_id": tv},
    )
    assert error_of(refresh) == "invalid_grant"
    with live.app.app_context():
        revoked = db.session.scalars(select(Token.access_revoked)).all()
        assert revoked == [True]


def test_polling_too_fast_slows_the_client_down_every_time(setup):
    live, _phone, (tv, _, _) = setup
    request_id, secret = start(live.app, tv, Kind.DEVICE, interval=2)
    assert error_of(device_poll(live, tv, secret)) == "authorization_pending"
    assert error_of(device_poll(live, tv, secret)) == "slow_down"

    def interval():
        with live.app.app_context():
            return db.session.get(LoginRequest, request_id).poll_interval

    assert interval() == 7
    assert error_of(device_poll(live, tv, secret)) == "slow_down"
    assert interval() == 12
    # Waiting the interval is enough again: move the next allowed poll into the past.
    with live.app.app_context(), db.unit_of_work():
        db.session.execute(
            update(LoginRequest)
            .where(LoginRequest.id == request_id)
            .values(next_poll_at=utcnow() - timedelta(seconds=1))
        )
    assert error_of(device_poll(live, tv, secret)) == "authorization_pending"
    assert interval() == 12


def test_a_denial_an_expiry_and_a_stranger(setup):
    live, phone, (tv, site, site_secret) = setup
    request_id, secret = start(live.app, tv, Kind.DEVICE)
    phone.scan_code(CODE)
    phone.deny(request_id)
    denied = device_poll(live, tv, secret)
    assert error_of(denied) == "access_denied"
    assert "denied" in denied.json()["error_description"]

    _, expiring = start(live.app, tv, Kind.DEVICE, ttl=1)
    time.sleep(1.1)
    assert error_of(device_poll(live, tv, expiring)) == "expired_token"
    with live.app.app_context():
        status = db.session.scalar(
            select(LoginRequest.status).where(LoginRequest.secret_hash == digest(expiring))
        )
        assert status == "expired"

    assert error_of(device_poll(live, tv, "not-a-device-code")) == "invalid_grant"
    # Another client's secret is no secret for this one; a client without the grant is refused.
    _, ciba_secret = start(live.app, site, Kind.BACKCHANNEL)
    assert error_of(device_poll(live, tv, ciba_secret)) == "invalid_grant"
    refused = poll(live, {"grant_type": DEVICE, "device_code": secret}, auth=(site, site_secret))
    assert error_of(refused) == "unauthorized_client"
    missing = poll(live, {"grant_type": DEVICE, "client_id": tv})
    assert error_of(missing) == "invalid_request"


def test_a_backchannel_request_is_polled_by_its_confidential_client(setup):
    live, phone, (tv, site, site_secret) = setup
    with live.app.app_context():
        user_id = db.session.scalar(select(User.id).where(User.username == "alice"))
    request_id, secret = start(
        live.app, site, Kind.BACKCHANNEL, user_id=user_id, binding_message="Call 4711"
    )
    data = {"grant_type": CIBA, "auth_req_id": secret}
    assert error_of(poll(live, data, auth=(site, site_secret))) == "authorization_pending"
    # A public client, or no authentication, is not a CIBA client.
    assert poll(live, data | {"client_id": tv}).status_code in (400, 401)
    with live.app.app_context(), db.unit_of_work():  # as the phone's inbox opens it
        device = db.session.scalar(select(Device))
        assert services.scan_login(request_id, device).kind == "backchannel"
    phone.approve(request_id)
    time.sleep(1.05)
    answer = poll(live, data, auth=(site, site_secret))
    assert answer.status_code == 200, answer.text
    assert "refresh_token" not in answer.json()  # the site has no refresh_token grant


def test_revoking_the_phone_revokes_what_it_approved(setup):
    live, phone, (tv, _, _) = setup
    first, first_secret = start(live.app, tv, Kind.DEVICE)
    phone.scan_code(CODE)
    phone.approve(first)
    tokens = device_poll(live, tv, first_secret).json()
    with live.app.app_context(), db.unit_of_work():
        db.session.execute(
            update(LoginRequest)
            .where(LoginRequest.id == first)
            .values(short_code_hash=None)  # (the next request uses the same code)
        )
    second, second_secret = start(live.app, tv, Kind.DEVICE)
    phone.scan_code(CODE)
    phone.approve(second)  # approved, not yet redeemed
    phone.revoke(phone.me()["device_id"])
    time.sleep(1.05)
    assert error_of(device_poll(live, tv, second_secret)) == "access_denied"
    introspected = requests.get(
        f"{live.url}/userinfo",
        headers={"Authorization": f"Bearer {tokens['access_token']}"},
        timeout=10,
    )
    assert introspected.status_code == 401
