"""The audit log: every security event, with time, user, device, client and IP, written in
the same transaction as the change; read with ``idp audit``."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import requests
from click.testing import CliRunner

from idp import audit, db
from idp.admin.services import create_client, delete_client
from idp.cli import main
from idp.db import utcnow
from idp.mobile.services import revoke_device
from idp.oauth.keys import rotate_keys
from idp_phone.api import PhoneApiError, PhoneClient
from support import PASSWORD, add_user, approve_and_exchange, enroll_phone, redirect_params

REFUSED_PASSWORD = "not-the-password"


def events(app, **filters) -> list[audit.Line]:
    with app.app_context():
        return audit.query(**filters)


def test_a_whole_sign_in_is_recorded(world):
    live, rp, browser, phone = world
    device_id = phone.profile.device_id
    tokens = approve_and_exchange(rp, browser, phone)
    refreshed = rp.token({"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 200
    revoked = requests.post(
        f"{live.url}/revoke",
        data={"token": refreshed.json()["refresh_token"]},
        auth=(rp.client_id, rp.client_secret),
        timeout=5,
    )
    assert revoked.status_code == 200

    lines = events(live.app)
    assert [line.event for line in lines] == [
        "user.created",
        "client.created",
        "device.enrolled",
        "login.scanned",
        "login.approved",
        "login.completed",
        "token.issued",
        "token.issued",
        "token.revoked",
    ]
    by_event = {line.event: line for line in lines}
    for name in ("login.scanned", "login.approved", "login.completed"):
        line = by_event[name]
        assert (line.username, line.device_id, line.client_id) == ("alice", device_id, rp.client_id)
    # The phone's requests come from the phone's address, the completion from the browser's.
    assert by_event["login.approved"].ip == "127.0.0.1"
    assert by_event["login.scanned"].detail["browser_ip"] == "127.0.0.1"
    issued = [line for line in lines if line.event == "token.issued"]
    assert [i.detail["grant_type"] for i in issued] == ["authorization_code", "refresh_token"]
    assert all(i.username == "alice" and i.client_id == rp.client_id for i in issued)
    assert by_event["token.revoked"].detail == {"kind": "refresh_token"}
    assert by_event["device.enrolled"].detail == {"name": "Test phone", "via": "password"}
    # No secret is ever written: no token, code, password or full request id.
    dump = json.dumps([line.as_json() for line in lines])
    for secret in (tokens["access_token"], tokens["refresh_token"], PASSWORD):
        assert secret not in dump


def test_denials_wrong_passwords_and_admin_changes_are_recorded(world, tmp_path):
    live, rp, browser, phone = world
    page = browser.open(rp.authorize_url())
    phone.deny(phone.scan(page.qr_url)["login_request"]["id"])
    with pytest.raises(PhoneApiError):
        PhoneClient(tmp_path / "thief").enroll(live.url, "alice", REFUSED_PASSWORD, "Thief")
    with live.app.app_context(), db.unit_of_work():
        client, _ = create_client("Another RP", ["https://rp.example.com/cb"])
        delete_client(client.client_id)
        revoke_device(phone.profile.device_id)
        rotate_keys(("ES256",))
    lines = events(live.app)
    names = [line.event for line in lines]
    assert names[-7:] == [
        "login.scanned",
        "login.denied",
        "device.enroll_refused",
        "client.created",
        "client.deleted",
        "device.revoked",
        "keys.rotated",
    ]
    refused = next(line for line in lines if line.event == "device.enroll_refused")
    assert (refused.username, refused.device_id, refused.ip) == ("alice", None, "127.0.0.1")
    admin = next(line for line in lines if line.event == "client.deleted")
    assert admin.ip is None  # done at the command line
    assert [line.ip for line in lines[-4:]] == [None] * 4  # so were the others after it
    assert next(line for line in lines if line.event == "keys.rotated").detail["alg"] == "ES256"


def test_a_refused_transition_records_nothing(world, tmp_path):
    """Only what happened is in the log: another phone's approval, refused, leaves no line."""
    live, rp, browser, phone = world
    page = browser.open(rp.authorize_url())
    request_id = phone.scan(page.qr_url)["login_request"]["id"]
    other = enroll_phone(live.url, tmp_path / "other", approver=phone)
    with pytest.raises(PhoneApiError) as refused:
        other.approve(request_id)
    assert refused.value.error == "wrong_device"
    assert [line.event for line in events(live.app)][-4:] == [
        "login.scanned",
        "device.enroll_pending",
        "device.enrolled",
        "device.enroll_approved",
    ]


def test_code_replay_records_the_family_revocation(world):
    live, rp, browser, phone = world
    page = browser.open(rp.authorize_url())
    phone.approve(phone.scan(page.qr_url)["login_request"]["id"])
    code = redirect_params(browser.complete(page))["code"]
    assert rp.exchange(code).status_code == 200
    assert rp.exchange(code).status_code == 400
    line = events(live.app)[-1]
    assert line.event == "token.family_revoked"
    assert line.client_id == rp.client_id
    assert line.detail == {"reason": "code replayed", "tokens": 1}


def test_idp_audit_filters_by_user_and_time(world, tmp_path, monkeypatch):
    live, rp, browser, _ = world
    add_user(live.app, "bob")
    bob = enroll_phone(live.url, tmp_path / "bob", username="bob")
    page = browser.open(rp.authorize_url())
    bob.approve(bob.scan(page.qr_url)["login_request"]["id"])
    with live.app.app_context():  # an old event, outside --since
        audit.record("login.scanned", username="bob")
        db.session.flush()
        db.session.query(audit.AuditEvent).filter_by(device_id=None, event="login.scanned").update(
            {"at": utcnow() - timedelta(days=2)}
        )
        db.session.commit()
    for key in ("IDP_DATABASE_URL", "IDP_BROKER_URL", "IDP_SECRET_KEY", "IDP_ISSUER"):
        monkeypatch.setenv(key, str(live.app.config[key]))
    monkeypatch.setenv("IDP_INSTANCE_PATH", live.app.instance_path)
    runner = CliRunner()

    result = runner.invoke(main, ["audit", "--user", "bob", "--since", "1d"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert [line.split()[1] for line in lines] == [
        "user.created",
        "device.enrolled",
        "login.scanned",
        "login.approved",
    ]
    assert all("user=bob" in line for line in lines)
    assert f"client={rp.client_id}" in lines[-1] and "ip=127.0.0.1" in lines[-1]

    everything = runner.invoke(main, ["audit", "--user", "bob", "--json"])
    rows = [json.loads(line) for line in everything.output.splitlines()]
    assert len(rows) == 5 and rows[0]["event"] == "login.scanned"  # the old one comes first
    assert set(rows[-1]) == {"at", "event", "user", "device", "client", "ip", "detail"}

    today = utcnow().date().isoformat()
    assert runner.invoke(main, ["audit", "--since", today]).exit_code == 0
    bad = runner.invoke(main, ["audit", "--since", "last tuesday"])
    assert bad.exit_code == 1 and "--since takes a date" in bad.output
    nobody = runner.invoke(main, ["audit", "--user", "nobody"])
    assert nobody.exit_code == 0 and "no events" in nobody.output


def test_each_event_records_the_address_of_the_request_that_made_it(world):
    """The view hands its services the sender (``idp.web.Caller``): the phone's scans,
    approvals and revocation, the browser's completion and single sign-on, the relying
    party's token requests, replays and revocations carry its IP; what a command made
    (here the fixture's user and client) carries none."""
    live, rp, browser, phone = world
    tokens = approve_and_exchange(rp, browser, phone)
    rp.state, rp.nonce = "second-state", "second-nonce"
    from_session = browser.session.get(rp.authorize_url(), allow_redirects=False, timeout=10)
    code = redirect_params(from_session)["code"]
    assert rp.exchange(code).status_code == 200
    assert rp.exchange(code).status_code == 400  # a replay: its family is revoked
    revoked = requests.post(
        f"{live.url}/revoke",
        data={"token": tokens["refresh_token"]},
        auth=(rp.client_id, rp.client_secret),
        timeout=5,
    )
    assert revoked.status_code == 200
    rp.state, rp.nonce = "third-state", "third-nonce"
    page = browser.open(rp.authorize_url(prompt="login"))
    phone.scan(page.qr_url)
    phone.revoke(phone.profile.device_id)  # denies the scanned sign-in

    lines = events(live.app)
    # Every event but a refused enrollment (its IP is checked above), those only a
    # command makes, and the invitations' (tests/integration/test_invitations.py).
    not_here = {"device.enroll_refused", "client.deleted", "keys.rotated"}
    not_here |= {"invitation.created", "invitation.used", "invitation.refused"}
    # And a next phone's approval (tests/integration/test_enrollment_approval.py).
    not_here |= {"device.enroll_pending", "device.enroll_approved", "device.enroll_denied"}
    not_here |= {"device.enroll_withdrawn"}
    # And the passer-by's (their IPs: tests/integration/test_passer_by.py).
    not_here |= {"login.scan_refused", "login.released", "login.restarted"}
    # And the device grant's, and wrong codes (tests/integration/test_device_grant.py).
    not_here |= {"device.authorization_started", "login.code_refused"}
    # And CIBA's (their IPs: tests/integration/test_ciba.py).
    not_here |= {"ciba.requested", "ciba.muted"}
    assert {line.event for line in lines} == set(audit.EVENTS) - not_here
    for line in lines:
        made_by_a_command = line.event in ("user.created", "client.created")
        assert line.ip == (None if made_by_a_command else "127.0.0.1"), line
