"""A waiting new phone withdraws its request (POST /enrollments/<id>/withdraw, signed by
its own key) against a live IdP, on both backends: no phone can approve it afterwards,
another key cannot withdraw it, and a decided one stays decided."""

from __future__ import annotations

from datetime import timedelta

import requests
from sqlalchemy import select, update
from test_enrollment_approval import (
    NewPhone,
    device_count,
    error_of,
    events,
    pending_of,
    refused,
)

from idp import db
from idp.db import utcnow
from idp.mobile.models import EnrollmentRequest


def withdraw(phone: NewPhone, enrollment_id: str, body: bytes = b"{}") -> requests.Response:
    return phone._send("POST", f"/enrollments/{enrollment_id}/withdraw", body)


def test_a_withdrawn_request_cannot_be_approved(world):
    live, _, _, phone = world
    new = NewPhone(live.url)
    pending = pending_of(new.enroll(name="Lost phone"))
    withdrawn = withdraw(new, pending["id"])
    assert withdrawn.status_code == 200, withdrawn.text
    assert withdrawn.json() == {"pending_enrollment": {"id": pending["id"], "status": "withdrawn"}}
    polled = new.status(pending["id"]).json()
    assert polled["pending_enrollment"]["status"] == "withdrawn" and polled["device"] is None
    # The old phone: the code is spent, and no decision is taken.
    refused(lambda: phone.lookup_enrollment(pending["code"]), 410, "invalid_enrollment_code")
    refused(lambda: phone.approve_enrollment(pending["id"]), 409, "already_used")
    refused(lambda: phone.deny_enrollment(pending["id"]), 409, "already_used")
    assert device_count(live.app) == 1  # nothing enrolled
    with live.app.app_context():
        row = db.session.scalar(select(EnrollmentRequest))
        assert (row.status, row.decided_by, row.device_pk) == ("withdrawn", None, None)
        assert row.decided_at is not None
    [line] = events(live.app, "device.enroll_withdrawn")
    assert (line.username, line.ip, line.device_id) == ("alice", "127.0.0.1", None)
    assert line.detail["name"] == "Lost phone" and line.detail["request"] == pending["id"]
    assert events(live.app, "device.enroll_approved") == []
    # Withdrawn twice: already.
    assert error_of(withdraw(new, pending["id"])) == (409, "already_used")
    # The same key may ask again: a new request, with a new code.
    again = pending_of(new.enroll())
    assert again["id"] != pending["id"] and again["code"] != pending["code"]


def test_only_the_requests_own_key_may_withdraw_it(world):
    live, _, _, phone = world
    new = NewPhone(live.url)
    pending = pending_of(new.enroll())
    other = NewPhone(live.url)
    assert error_of(withdraw(other, pending["id"])) == (404, "unknown_enrollment")
    assert error_of(withdraw(new, "no-such-request")) == (404, "unknown_enrollment")
    assert error_of(withdraw(new, "x" * 100)) == (404, "unknown_enrollment")
    assert error_of(withdraw(new, pending["id"], b"[]")) == (400, "invalid_request")
    # A device's own proof (kid) is not the waiting key's: refused as a proof.
    path = f"/enrollments/{pending['id']}/withdraw"
    signed = new.signed("POST", path, phone.profile.device_id, b"{}")
    assert signed.status_code == 401
    assert events(live.app, "device.enroll_withdrawn") == []
    # Still pending: the old phone can still approve it.
    found = phone.lookup_enrollment(pending["code"])["pending_enrollment"]
    assert found["status"] == "pending"
    assert phone.approve_enrollment(pending["id"])["pending_enrollment"]["status"] == "approved"


def test_a_decided_request_cannot_be_withdrawn(world):
    live, _, _, phone = world
    new = NewPhone(live.url)
    pending = pending_of(new.enroll())
    device_id = phone.approve_enrollment(pending["id"])["device"]["device_id"]
    assert error_of(withdraw(new, pending["id"])) == (409, "already_used")
    polled = new.status(pending["id"]).json()
    assert polled["pending_enrollment"]["status"] == "approved"
    assert polled["device"]["device_id"] == device_id
    assert device_count(live.app) == 2
    denied = NewPhone(live.url)
    pending = pending_of(denied.enroll())
    phone.deny_enrollment(pending["id"])
    assert error_of(withdraw(denied, pending["id"])) == (409, "already_used")
    assert events(live.app, "device.enroll_withdrawn") == []


def test_an_expired_request_cannot_be_withdrawn(world):
    live, _, _, _ = world
    new = NewPhone(live.url)
    pending = pending_of(new.enroll())
    with live.app.app_context():
        past = utcnow() - timedelta(seconds=1)
        db.session.execute(update(EnrollmentRequest).values(expires_at=past))
        db.session.commit()
    assert error_of(withdraw(new, pending["id"])) == (409, "already_used")
    assert new.status(pending["id"]).json()["pending_enrollment"]["status"] == "expired"
    assert events(live.app, "device.enroll_withdrawn") == []
