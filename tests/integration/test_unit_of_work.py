"""One owner for the unit of work (idp/db.py): a service writes into its request's
transaction and the view commits it once the answer is built. So a service's write
followed by an error in the same request leaves nothing behind, and nothing of it is
published; a command's work commits only when the whole command succeeds (both backends).
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from idp import db
from idp.accounts.models import User
from idp.accounts.services import create_user
from idp.admin.services import create_client
from idp.audit import AuditEvent
from idp.mobile import views as mobile_views
from idp.mobile.models import Device
from idp.mobile.services import revoke_device
from idp.oauth.models import Client
from idp.qrlogin.models import LoginRequest, Status
from idp.qrlogin.services import channel
from idp_phone.api import PhoneApiError, PhoneClient
from support import PASSWORD, record_publishes


class Boom(RuntimeError):
    """Fails a request after its service has written."""


def boom(*_args: Any, **_kwargs: Any) -> Any:
    raise Boom("the answer could not be built")


@pytest.fixture
def published(live_server, monkeypatch) -> list[tuple[str, dict[str, Any]]]:
    """Every message the live server publishes, as (channel, message)."""
    return record_publishes(live_server.app, monkeypatch)


def statuses(published: list, request_id: str) -> list[str]:
    return [m["status"] for name, m in published if name == channel(request_id)]


def stored(app, request_id: str) -> LoginRequest:
    with app.app_context():
        login = db.session.get(LoginRequest, request_id)
        assert login is not None
        db.session.expunge(login)
        return login


def events(app, name: str) -> list[AuditEvent]:
    with app.app_context():
        return list(db.session.scalars(select(AuditEvent).where(AuditEvent.event == name)))


def failed_with_500(call) -> None:
    with pytest.raises(PhoneApiError) as failed:
        call()
    assert failed.value.status == 500, failed.value


def test_a_scan_that_fails_after_its_transition_leaves_the_request_pending(
    world, published, monkeypatch
):
    live, rp, browser, phone = world
    page = browser.open(rp.authorize_url())
    with monkeypatch.context() as patched:
        patched.setattr(mobile_views, "login_request_view", boom)
        failed_with_500(lambda: phone.scan(page.qr_url))
    login = stored(live.app, page.id)
    assert (login.status, login.device_pk, login.scanned_at) == (Status.PENDING, None, None)
    assert statuses(published, page.id) == []  # the page never heard "scanned"
    assert events(live.app, "login.scanned") == []
    assert phone.scan(page.qr_url)["login_request"]["status"] == "scanned"  # as if new


def test_an_approval_that_fails_after_its_transition_leaves_the_request_scanned(
    world, published, monkeypatch
):
    live, rp, browser, phone = world
    page = browser.open(rp.authorize_url())
    request_id = phone.scan(page.qr_url)["login_request"]["id"]
    with monkeypatch.context() as patched:
        patched.setattr(mobile_views, "jsonify", boom)
        failed_with_500(lambda: phone.approve(request_id))
    login = stored(live.app, request_id)
    assert (login.status, login.user_id, login.decided_at) == (Status.SCANNED, None, None)
    assert statuses(published, request_id) == ["scanned"]
    assert events(live.app, "login.approved") == []
    assert phone.approve(request_id)["login_request"]["status"] == "approved"
    assert statuses(published, request_id) == ["scanned", "approved"]


@pytest.mark.idp_config(IDP_PASSWORD_ENROLLMENT="always")  # the second phone enrolls at once
def test_an_enrollment_that_fails_after_the_service_leaves_no_phone(world, tmp_path, monkeypatch):
    live, _, _, _ = world
    monkeypatch.setattr(mobile_views, "_device_view", boom)
    second = PhoneClient(tmp_path / "second")
    failed_with_500(lambda: second.enroll(live.url, "alice", PASSWORD, "Second phone"))
    with live.app.app_context():
        assert list(db.session.scalars(select(Device.name))) == ["Test phone"]
    assert [e.detail["name"] for e in events(live.app, "device.enrolled")] == ["Test phone"]


def test_a_revocation_rolled_back_changes_and_publishes_nothing(world, published):
    """revoke_device only writes into its caller's transaction; the sign-ins it denies
    are published by the commit, and a rollback publishes nothing."""
    live, rp, browser, phone = world
    page = browser.open(rp.authorize_url())
    request_id = phone.scan(page.qr_url)["login_request"]["id"]
    with live.app.app_context():
        with pytest.raises(Boom), db.unit_of_work():
            assert revoke_device(phone.profile.device_id).refused_logins == [request_id]
            boom()
        assert db.session.scalar(select(Device.revoked_at)) is None
    assert stored(live.app, request_id).status == Status.SCANNED
    assert statuses(published, request_id) == ["scanned"]
    assert phone.me()["device_id"] == phone.profile.device_id  # still enrolled
    with live.app.app_context(), db.unit_of_work():
        revoke_device(phone.profile.device_id)
    assert stored(live.app, request_id).status == Status.DENIED
    assert statuses(published, request_id) == ["scanned", "denied"]


def test_a_command_that_fails_leaves_no_user_and_no_client(app):
    with app.app_context():
        with pytest.raises(Boom), db.unit_of_work():
            create_user("carol", PASSWORD, email=None, name=None)
            create_client("Half-made RP", ["https://rp.example/cb"])
            boom()
        assert db.session.scalars(select(User.username)).all() == []
        assert db.session.scalars(select(Client.name)).all() == []
        assert db.session.scalars(select(AuditEvent.event)).all() == []
