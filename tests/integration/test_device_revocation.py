"""Revoking a phone revokes what it produced: its tokens (refresh, UserInfo and
introspection refuse them), its unredeemed codes, the IdP sessions it made (and the
tokens those sessions gave), and the sign-ins it approved that no browser completed;
the audit log says so. Through the live server, with real phones, on both backends."""

from __future__ import annotations

from typing import Any

import pytest
import requests
from click.testing import CliRunner
from sqlalchemy import select, update

from idp import audit, db
from idp.admin.services import create_client
from idp.cli import main
from idp.mobile.models import Device
from idp.sso.models import BrowserSession
from support import (
    REDIRECT_URI,
    Browser,
    RelyingParty,
    approve_and_exchange,
    close_socket,
    enroll_phone,
    next_status,
    redirect_params,
)


def userinfo(rp: RelyingParty, access_token: str) -> requests.Response:
    return requests.get(
        f"{rp.idp_url}/userinfo", headers={"Authorization": f"Bearer {access_token}"}, timeout=10
    )


def introspect(rp: RelyingParty, token: str) -> dict[str, Any]:
    response = requests.post(
        f"{rp.idp_url}/introspect",
        data={"token": token},
        auth=(rp.client_id, rp.client_secret),
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return response.json()


def refresh(rp: RelyingParty, refresh_token: str) -> requests.Response:
    return rp.token({"grant_type": "refresh_token", "refresh_token": refresh_token})


def assert_dead(rp: RelyingParty, tokens: dict[str, str]) -> None:
    """Every way of using the pair refuses it, with the exact error."""
    info = userinfo(rp, tokens["access_token"])
    assert (info.status_code, info.json()["error"]) == (401, "invalid_token")
    assert 'error="invalid_token"' in info.headers["WWW-Authenticate"]
    refreshed = refresh(rp, tokens["refresh_token"])
    assert (refreshed.status_code, refreshed.json()["error"]) == (400, "invalid_grant")
    assert introspect(rp, tokens["access_token"]) == {"active": False}
    assert introspect(rp, tokens["refresh_token"]) == {"active": False}


def assert_alive(rp: RelyingParty, tokens: dict[str, str]) -> None:
    assert userinfo(rp, tokens["access_token"]).status_code == 200
    assert introspect(rp, tokens["access_token"])["active"] is True
    assert introspect(rp, tokens["refresh_token"])["active"] is True


def revoke_from_another_phone(live, phone, tmp_path) -> None:
    """The user, on their other phone, revokes the lost one."""
    other = enroll_phone(live.url, tmp_path / "other-phone", approver=phone)
    other.revoke(phone.profile.device_id)


def revoke_as_admin(live, phone, tmp_path, monkeypatch) -> None:
    """``idp devices revoke DEVICE_ID`` against the live server's database."""
    for key in ("IDP_DATABASE_URL", "IDP_BROKER_URL", "IDP_SECRET_KEY", "IDP_ISSUER"):
        monkeypatch.setenv(key, str(live.app.config[key]))
    monkeypatch.setenv("IDP_INSTANCE_PATH", live.app.instance_path)
    result = CliRunner().invoke(main, ["devices", "revoke", phone.profile.device_id])
    assert result.exit_code == 0, result.output
    assert result.output == f"revoked {phone.profile.device_id} (Test phone)\n"


def events(app, name: str) -> list[audit.Line]:
    with app.app_context():
        return [line for line in audit.query() if line.event == name]


@pytest.mark.parametrize("how", ["phone", "admin"])
def test_revoking_a_phone_revokes_its_tokens(world, tmp_path, monkeypatch, how):
    live, rp, browser, phone = world
    tokens = approve_and_exchange(rp, browser, phone)
    # A refreshed pair descends from the phone's approval as much as the first one.
    rotated = refresh(rp, tokens["refresh_token"])
    assert rotated.status_code == 200, rotated.text
    tokens = rotated.json()
    assert_alive(rp, tokens)
    if how == "phone":
        revoke_from_another_phone(live, phone, tmp_path)
    else:
        revoke_as_admin(live, phone, tmp_path, monkeypatch)
    assert_dead(rp, tokens)
    family = events(live.app, "token.family_revoked")
    assert len(family) == 1  # no "refresh token reused" alarm from the refused refresh
    assert (family[0].username, family[0].device_id, family[0].client_id) == (
        "alice",
        phone.profile.device_id,
        rp.client_id,
    )
    assert family[0].detail == {"reason": "device_revoked", "tokens": 1}
    revoked = events(live.app, "device.revoked")[-1]
    assert revoked.device_id == phone.profile.device_id
    assert {k: v for k, v in revoked.detail.items() if k != "by"} == {
        "tokens": 1,
        "codes": 0,
        "sessions": 1,
        "logins": 0,
    }


def test_a_phone_revoking_itself_revokes_its_tokens(world):
    _, rp, browser, phone = world
    tokens = approve_and_exchange(rp, browser, phone)
    phone.revoke(phone.profile.device_id)
    assert_dead(rp, tokens)


def test_a_code_the_revoked_phone_approved_is_refused(world, tmp_path):
    live, rp, browser, phone = world
    page = browser.open(rp.authorize_url())
    phone.approve(phone.scan(page.qr_url)["login_request"]["id"])
    code = redirect_params(browser.complete(page))["code"]
    revoke_from_another_phone(live, phone, tmp_path)
    response = rp.exchange(code)
    assert (response.status_code, response.json()["error"]) == (400, "invalid_grant")
    assert events(live.app, "device.revoked")[-1].detail["codes"] == 1
    assert events(live.app, "token.issued") == []
    assert events(live.app, "token.family_revoked") == []  # refused, not taken for a replay


def test_an_approval_the_browser_has_not_completed_is_refused(world, tmp_path):
    live, rp, browser, phone = world
    page = browser.open(rp.authorize_url())
    request_id = phone.scan(page.qr_url)["login_request"]["id"]
    phone.approve(request_id)
    revoke_from_another_phone(live, phone, tmp_path)  # before the page came back for it
    response = browser.complete(page)
    params = redirect_params(response)
    assert params["error"] == "access_denied"
    assert params["state"] == rp.state
    assert "code" not in params
    assert "idp_sso=" not in response.headers.get("Set-Cookie", "")
    denied = events(live.app, "login.denied")
    assert [(d.device_id, d.client_id) for d in denied] == [(phone.profile.device_id, rp.client_id)]
    assert denied[0].detail["reason"] == "device_revoked"
    assert denied[0].detail["request"] == request_id[:8]
    assert events(live.app, "device.revoked")[-1].detail["logins"] == 1


def test_a_sign_in_the_phone_scanned_is_refused_too(world, tmp_path):
    live, rp, browser, phone = world
    page = browser.open(rp.authorize_url())
    phone.scan(page.qr_url)
    ws = browser.socket(page)
    try:
        assert next_status(ws) == "scanned"  # the state as the page connects
        revoke_from_another_phone(live, phone, tmp_path)
        assert next_status(ws) == "denied"  # the page is told at once, and moves on
    finally:
        close_socket(ws)
    params = redirect_params(browser.complete(page))
    assert params["error"] == "access_denied"
    assert events(live.app, "login.denied")[-1].detail["reason"] == "device_revoked"


@pytest.mark.idp_config(IDP_SSO_SCOPE="all")  # a session answering another site
def test_the_sessions_it_made_end_with_the_tokens_they_gave(world, tmp_path):
    """A session made by the phone's approval signs the browser in elsewhere without a
    scan: those tokens descend from the phone too, and die with it."""
    live, rp, browser, phone = world
    approve_and_exchange(rp, browser, phone)
    with live.app.app_context(), db.unit_of_work():
        client, secret = create_client("Second RP", [REDIRECT_URI])
    second = RelyingParty(live.url, client.client_id, secret)
    silent = browser.session.get(
        second.authorize_url(prompt="none"), allow_redirects=False, timeout=10
    )
    response = second.exchange(redirect_params(silent)["code"])
    assert response.status_code == 200, response.text
    from_session = response.json()
    revoke_from_another_phone(live, phone, tmp_path)
    assert_dead(second, from_session)
    second.state, second.nonce = "after-revocation", "after-revocation"
    again = browser.session.get(
        second.authorize_url(prompt="none"), allow_redirects=False, timeout=10
    )
    assert redirect_params(again)["error"] == "login_required"
    with live.app.app_context():
        sessions = db.session.scalars(select(BrowserSession)).all()
    assert len(sessions) == 1
    assert sessions[0].ended_at is not None


def test_another_phone_of_the_same_user_keeps_working(world, tmp_path):
    live, rp, browser, phone = world
    lost_tokens = approve_and_exchange(rp, browser, phone)
    kept = enroll_phone(live.url, tmp_path / "kept", approver=phone)
    kept_browser = Browser(live.url)
    kept_tokens = approve_and_exchange(
        RelyingParty(live.url, rp.client_id, rp.client_secret), kept_browser, kept
    )
    kept.revoke(phone.profile.device_id)
    assert_dead(rp, lost_tokens)
    assert_alive(rp, kept_tokens)
    refreshed = refresh(rp, kept_tokens["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text
    assert userinfo(rp, refreshed.json()["access_token"]).status_code == 200
    assert kept.me()["device_id"] == kept.profile.device_id
    # Its browser session still gives single sign-on.
    silent = kept_browser.session.get(
        rp.authorize_url(prompt="none", state="kept", nonce="kept"),
        allow_redirects=False,
        timeout=10,
    )
    assert "code" in redirect_params(silent)


def test_what_a_racing_request_wrote_is_refused_too(world):
    """Tokens and a code written by a request that raced the revocation (so not flagged
    by it) are still refused: every use checks the phone itself."""
    live, rp, browser, phone = world
    tokens = approve_and_exchange(rp, browser, phone)
    other_browser = Browser(live.url)  # a scan, not single sign-on
    page = other_browser.open(rp.authorize_url(state="second", nonce="second"))
    phone.approve(phone.scan(page.qr_url)["login_request"]["id"])
    code = redirect_params(other_browser.complete(page))["code"]
    with live.app.app_context():  # revoked without withdrawing anything, as a race leaves it
        db.session.execute(
            update(Device)
            .where(Device.device_id == phone.profile.device_id)
            .values(revoked_at=db.utcnow())
        )
        db.session.commit()
    assert_dead(rp, tokens)
    response = rp.exchange(code)
    assert (response.status_code, response.json()["error"]) == (400, "invalid_grant")
    assert events(live.app, "token.family_revoked") == []  # refusals, not replay alarms
