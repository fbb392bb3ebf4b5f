"""A new phone needs an old phone (idp.mobile.enrollment_requests) against a live IdP, on
both backends: a password alone enrolls a user's first phone; a next one waits for one of
the user's phones to type its code and approve it; denial, expiry, another user, another
key, a retry, a race, and the three IDP_PASSWORD_ENROLLMENT settings."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta

import pytest
import requests
from joserfc.jwk import ECKey
from sqlalchemy import create_engine, select, text, update
from sqlalchemy.pool import NullPool

from idp import audit, db
from idp.db import utcnow
from idp.mobile.models import Device, EnrollmentRequest
from idp_phone.api import PhoneApiError
from idp_phone.proof import make_proof, public_jwk
from support import PASSWORD, add_user, enroll_by_invitation, enroll_phone, redirect_params

API = "/api/mobile/v1"


class NewPhone:
    """A phone that is not enrolled yet: its key, and what it sends (enrollment proofs)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.key = ECKey.generate_key("P-256")

    def enroll(
        self, username: str = "alice", password: str = PASSWORD, name: str = "New phone"
    ) -> requests.Response:
        body = json.dumps({"username": username, "password": password, "device_name": name})
        return self._send("POST", "/devices", body.encode())

    def status(self, enrollment_id: str) -> requests.Response:
        return self._send("GET", f"/enrollments/{enrollment_id}", b"")

    def _send(self, method: str, path: str, body: bytes) -> requests.Response:
        url = f"{self.url}{API}{path}"
        proof = make_proof(self.key, method, url, body, jwk=public_jwk(self.key))
        headers = {"Device-Proof": proof, "Content-Type": "application/json"}
        return requests.request(method, url, data=body or None, headers=headers, timeout=10)

    def signed(
        self, method: str, path: str, device_id: str, body: bytes = b""
    ) -> requests.Response:
        """A request signed as the device ``device_id`` (``kid``), with this key."""
        url = f"{self.url}{API}{path}"
        proof = make_proof(self.key, method, url, body, kid=device_id)
        headers = {"Device-Proof": proof, "Content-Type": "application/json"}
        return requests.request(method, url, data=body or None, headers=headers, timeout=10)


def error_of(response: requests.Response) -> tuple[int, str]:
    return response.status_code, response.json()["error"]


def refused(call, status: int, code: str) -> None:
    with pytest.raises(PhoneApiError) as error:
        call()
    assert (error.value.status, error.value.error) == (status, code)


def events(app, name: str) -> list[audit.Line]:
    with app.app_context():
        return [line for line in audit.query() if line.event == name]


def device_count(app) -> int:
    with app.app_context():
        return db.session.query(Device).count()


def pending_of(response: requests.Response) -> dict:
    assert response.status_code == 202, response.text
    return response.json()["pending_enrollment"]


def test_a_next_phone_waits_for_an_old_phones_approval(world):
    live, rp, browser, phone = world
    new = NewPhone(live.url)
    pending = pending_of(new.enroll(name="Pixel 9"))
    assert pending["status"] == "pending" and pending["expires_at"].endswith("Z")
    assert set(pending) == {"id", "code", "status", "expires_at"}
    assert device_count(live.app) == 1  # nothing enrolled yet
    # Its key signs nothing but its status poll: as a device it is unknown.
    scan = new.signed("POST", "/login-requests/scan", "dev_whatever", b'{"qr": "x"}')
    assert error_of(scan) == (401, "unknown_device")
    assert error_of(new._send("GET", "/devices/me", b"")) == (401, "invalid_proof")  # no kid
    polled = new.status(pending["id"])
    assert polled.status_code == 200
    assert polled.json() == {
        "pending_enrollment": {
            "id": pending["id"],
            "status": "pending",
            "expires_at": pending["expires_at"],
        },
        "device": None,
    }
    [line] = events(live.app, "device.enroll_pending")
    assert (line.username, line.ip, line.detail["name"]) == ("alice", "127.0.0.1", "Pixel 9")

    # The old phone types the code (case, spaces and the dash do not matter).
    typed = pending["code"].lower().replace("-", " ")
    found = phone.lookup_enrollment(typed)["pending_enrollment"]
    assert found["id"] == pending["id"] and found["device_name"] == "Pixel 9"
    assert found["status"] == "pending"
    assert found["from"] == {"ip": "127.0.0.1", "location": None, "summary": "Unknown browser"}
    assert found["proximity"]["verdict"] == "same_network"
    assert found["proximity"]["message"]

    decided = phone.approve_enrollment(pending["id"])
    device_id = decided["device"]["device_id"]
    assert decided == {
        "pending_enrollment": {"id": pending["id"], "status": "approved"},
        "device": {"device_id": device_id, "device_name": "Pixel 9"},
    }
    polled = new.status(pending["id"]).json()
    assert polled["pending_enrollment"]["status"] == "approved"
    assert polled["device"]["device_id"] == device_id
    assert polled["device"]["enrolled_via"] == f"device:{phone.profile.device_id}"
    # The new key is a device now: it signs a sign-in in.
    page = browser.open(rp.authorize_url())
    scanned = new.signed(
        "POST", "/login-requests/scan", device_id, json.dumps({"qr": page.qr_url}).encode()
    )
    assert scanned.status_code == 200, scanned.text
    approved = new.signed("POST", f"/login-requests/{page.id}/approve", device_id, b"{}")
    assert approved.json()["login_request"]["status"] == "approved"
    assert "code" in redirect_params(browser.complete(page))

    listed = {d["device_id"]: d["enrolled_via"] for d in phone.devices()}
    assert listed == {
        phone.profile.device_id: "password",
        device_id: f"device:{phone.profile.device_id}",
    }
    [line] = events(live.app, "device.enroll_approved")
    assert (line.username, line.device_id, line.ip) == (
        "alice",
        phone.profile.device_id,
        "127.0.0.1",
    )
    assert line.detail["new_device"] == device_id
    enrolled = events(live.app, "device.enrolled")
    assert [e.detail["via"] for e in enrolled] == ["password", f"device:{phone.profile.device_id}"]
    # Decided: the code is spent, and a second decision is refused.
    refused(lambda: phone.lookup_enrollment(pending["code"]), 410, "invalid_enrollment_code")
    refused(lambda: phone.approve_enrollment(pending["id"]), 409, "already_used")
    refused(lambda: phone.deny_enrollment(pending["id"]), 409, "already_used")


def test_a_denied_phone_is_not_enrolled(world):
    live, _, _, phone = world
    new = NewPhone(live.url)
    pending = pending_of(new.enroll())
    decided = phone.deny_enrollment(
        phone.lookup_enrollment(pending["code"])["pending_enrollment"]["id"]
    )
    assert decided == {
        "pending_enrollment": {"id": pending["id"], "status": "denied"},
        "device": None,
    }
    polled = new.status(pending["id"]).json()
    assert polled == {
        "pending_enrollment": {
            "id": pending["id"],
            "status": "denied",
            "expires_at": pending["expires_at"],
        },
        "device": None,
    }
    assert device_count(live.app) == 1
    refused(lambda: phone.approve_enrollment(pending["id"]), 409, "already_used")
    [line] = events(live.app, "device.enroll_denied")
    assert (line.username, line.device_id, line.ip) == (
        "alice",
        phone.profile.device_id,
        "127.0.0.1",
    )
    assert line.detail["new_ip"] == "127.0.0.1"
    # Asking again makes a new request (the denied one stays denied).
    again = pending_of(new.enroll())
    assert again["id"] != pending["id"]


def test_an_expired_request_cannot_be_approved(world):
    live, _, _, phone = world
    new = NewPhone(live.url)
    pending = pending_of(new.enroll())
    with live.app.app_context():
        db.session.execute(
            update(EnrollmentRequest).values(expires_at=utcnow() - timedelta(seconds=1))
        )
        db.session.commit()
    assert new.status(pending["id"]).json()["pending_enrollment"]["status"] == "expired"
    refused(lambda: phone.lookup_enrollment(pending["code"]), 410, "invalid_enrollment_code")
    refused(lambda: phone.approve_enrollment(pending["id"]), 410, "invalid_enrollment_code")
    refused(lambda: phone.deny_enrollment(pending["id"]), 410, "invalid_enrollment_code")
    assert device_count(live.app) == 1
    # The same key may ask again: a new request, with a new code.
    again = pending_of(new.enroll())
    assert again["id"] != pending["id"] and again["code"] != pending["code"]
    with live.app.app_context():
        rows = db.session.execute(select(EnrollmentRequest.id, EnrollmentRequest.status))
        statuses = {row.id: row.status for row in rows}
    assert statuses == {pending["id"]: "expired", again["id"]: "pending"}


def test_another_users_phone_can_neither_see_nor_decide(world, tmp_path):
    live, _, _, _ = world
    add_user(live.app, "bob")
    bob = enroll_phone(live.url, tmp_path / "bob", username="bob")
    pending = pending_of(NewPhone(live.url).enroll())
    refused(lambda: bob.lookup_enrollment(pending["code"]), 410, "invalid_enrollment_code")
    refused(lambda: bob.approve_enrollment(pending["id"]), 410, "invalid_enrollment_code")
    refused(lambda: bob.deny_enrollment(pending["id"]), 410, "invalid_enrollment_code")
    refused(lambda: bob.approve_enrollment("no-such-request"), 410, "invalid_enrollment_code")
    refused(lambda: bob.lookup_enrollment("ACDE-FGHJ"), 410, "invalid_enrollment_code")
    assert device_count(live.app) == 2
    with live.app.app_context():
        assert db.session.scalar(select(EnrollmentRequest.status)) == "pending"


def test_only_the_requests_own_key_may_poll_it(world):
    live, _, _, _ = world
    new = NewPhone(live.url)
    pending = pending_of(new.enroll())
    other = NewPhone(live.url)
    assert error_of(other.status(pending["id"])) == (404, "unknown_enrollment")
    assert error_of(new.status("no-such-request")) == (404, "unknown_enrollment")
    assert error_of(new.status("x" * 100)) == (404, "unknown_enrollment")


def test_the_same_key_asking_again_gets_the_same_request(world):
    live, _, _, _ = world
    new = NewPhone(live.url)
    first = pending_of(new.enroll())
    second = pending_of(new.enroll(name="Another name"))
    assert (second["id"], second["code"]) == (first["id"], first["code"])
    with live.app.app_context():
        assert db.session.query(EnrollmentRequest).count() == 1
    assert len(events(live.app, "device.enroll_pending")) == 1
    # A wrong password is still a wrong password.
    assert error_of(new.enroll(password="not the password")) == (401, "invalid_credentials")


def test_only_the_codes_digest_is_stored(world):
    live, _, _, _ = world
    pending = pending_of(NewPhone(live.url).enroll())
    with live.app.app_context():
        row = db.session.execute(text("SELECT * FROM enrollment_requests")).one()
        stored = " ".join(str(value) for value in row)
        details = " ".join(json.dumps(line.detail) for line in audit.query())
    for form in (pending["code"], pending["code"].replace("-", "")):
        assert form not in stored and form not in details


def decide(how, request_id: str, start: threading.Barrier, answers: list[str]) -> None:
    """One racer: approve or deny at the barrier; note the status or the error code."""
    start.wait()
    try:
        answers.append(how(request_id)["pending_enrollment"]["status"])
    except PhoneApiError as error:
        answers.append(error.error)


@pytest.mark.idp_config(IDP_LIMIT_DEVICE="100/minute")
def test_of_an_approval_and_a_denial_at_once_one_wins(world):
    live, _, _, phone = world
    for _ in range(3):
        pending = pending_of(NewPhone(live.url).enroll())
        start = threading.Barrier(2)
        answers: list[str] = []
        threads = [
            threading.Thread(target=decide, args=(how, pending["id"], start, answers))
            for how in (phone.approve_enrollment, phone.deny_enrollment)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert len(answers) == 2 and answers.count("already_used") == 1, answers
        [winner] = [a for a in answers if a != "already_used"]
        with live.app.app_context():
            row = db.session.get(EnrollmentRequest, pending["id"])
            assert row.status == winner
            assert (row.device_pk is not None) == (winner == "approved")


@pytest.mark.idp_config(IDP_PASSWORD_ENROLLMENT="always")
def test_always_enrolls_every_phone_by_password(world):
    live, _, _, _ = world
    response = NewPhone(live.url).enroll()
    assert response.status_code == 201, response.text
    assert response.json()["enrolled_via"] == "password"
    assert device_count(live.app) == 2
    assert events(live.app, "device.enroll_pending") == []


@pytest.mark.idp_config(IDP_PASSWORD_ENROLLMENT="never")
def test_never_needs_an_invitation_or_an_approval(live_server):
    live = live_server
    add_user(live.app, "alice")
    first = NewPhone(live.url).enroll()
    assert error_of(first) == (403, "password_enrollment_disabled")
    assert first.json()["error_description"] == (
        "Setting up a phone with a password is switched off here: ask your administrator for an"
        " invitation."
    )
    assert device_count(live.app) == 0
    [line] = events(live.app, "device.enroll_refused")
    assert (line.username, line.detail) == ("alice", {"reason": "password_enrollment_disabled"})
    # An invitation enrolls the first phone; then a password leads to an approval.
    with live.app.app_context(), db.unit_of_work():
        from idp.mobile.invitations import create_invitation

        token, _ = create_invitation("alice", timedelta(minutes=5))
    invited = enroll_by_invitation(live.url, token)
    assert invited.status_code == 201 and invited.json()["enrolled_via"] == "invitation"
    assert pending_of(NewPhone(live.url).enroll())["status"] == "pending"
    # A wrong password is still counted and refused as such.
    assert error_of(NewPhone(live.url).enroll(password="wrong password!")) == (
        401,
        "invalid_credentials",
    )


def test_once_the_only_phone_is_revoked_the_next_is_a_first_phone(world):
    live, _, _, phone = world
    phone.revoke(phone.profile.device_id)
    response = NewPhone(live.url).enroll()
    assert response.status_code == 201, response.text
    assert response.json()["enrolled_via"] == "password"


def test_an_invitation_still_enrolls_at_once(world):
    live, _, _, _ = world
    with live.app.app_context(), db.unit_of_work():
        from idp.mobile.invitations import create_invitation

        token, _ = create_invitation("alice", timedelta(minutes=5))
    response = enroll_by_invitation(live.url, token)
    assert response.status_code == 201 and response.json()["enrolled_via"] == "invitation"
    assert events(live.app, "device.enroll_pending") == []


@pytest.mark.idp_config(IDP_LIMIT_PASSWORD="2 per 15 minutes")
def test_a_right_password_that_waits_is_forgiven(world):
    live, _, _, _ = world
    for _ in range(4):  # past the budget: right passwords do not count
        assert pending_of(NewPhone(live.url).enroll())["status"] == "pending"
    for _ in range(2):
        wrong = NewPhone(live.url).enroll(password="wrong password!")
        assert error_of(wrong) == (401, "invalid_credentials")
    assert error_of(NewPhone(live.url).enroll()) == (429, "too_many_requests")


def test_a_malformed_lookup_is_refused(world):
    live, _, _, phone = world
    pending = pending_of(NewPhone(live.url).enroll())
    url = f"{live.url}{API}/enrollments/lookup"

    def lookup(body: bytes) -> requests.Response:
        proof = make_proof(phone.profile.key, "POST", url, body, kid=phone.profile.device_id)
        return requests.post(url, data=body, headers={"Device-Proof": proof}, timeout=5)

    for body in (b"[]", b'{"code": 42}', b'{"code": ""}', b"{}"):
        assert error_of(lookup(body)) == (400, "invalid_request"), body
    # Not a code at all is answered as a wrong one.
    for typed in ("ACDE-FGH", "ACDE-FGHJK", "BBBB-BBBB", "x" * 4000):
        assert error_of(lookup(json.dumps({"code": typed}).encode())) == (
            410,
            "invalid_enrollment_code",
        )
    with live.app.app_context():
        assert db.session.get(EnrollmentRequest, pending["id"]).status == "pending"


def test_a_key_already_enrolled_is_refused_as_before(world):
    live, _, _, phone = world
    body = json.dumps({"username": "alice", "password": PASSWORD, "device_name": "x"}).encode()
    url = f"{live.url}{API}/devices"
    proof = make_proof(phone.profile.key, "POST", url, body, jwk=public_jwk(phone.profile.key))
    response = requests.post(url, data=body, headers={"Device-Proof": proof}, timeout=5)
    assert error_of(response) == (409, "device_exists")
    with live.app.app_context():
        assert db.session.query(EnrollmentRequest).count() == 0


@pytest.mark.idp_config(IDP_LIMIT_DEVICE="2/minute")
def test_lookups_and_decisions_count_against_the_devices_budget(world):
    live, _, _, phone = world
    pending = pending_of(NewPhone(live.url).enroll())
    phone.lookup_enrollment(pending["code"])  # 1
    refused(lambda: phone.lookup_enrollment("ACDE-FGHJ"), 410, "invalid_enrollment_code")  # 2
    refused(lambda: phone.approve_enrollment(pending["id"]), 429, "too_many_requests")
    with live.app.app_context():
        assert db.session.get(EnrollmentRequest, pending["id"]).status == "pending"


@pytest.mark.parametrize("backend", ["postgres+redis"], indirect=True)
def test_an_approval_racing_the_approvers_revocation_enrolls_nothing(world):
    """The approving phone is being revoked (from another phone, or by an admin) while it
    approves: its proof was checked before the revocation committed, but its approval waits
    for the revocation and is then refused, so a revoked phone never adds one. (A sign-in's
    approval is safe the same way: the revocation denies the request's row.)"""
    live, _, _, phone = world
    pending = pending_of(NewPhone(live.url).enroll())
    phone.lookup_enrollment(pending["code"])  # the phone was used just now: no last_used write
    with live.app.app_context():
        engine = db.session.get_bind()
    answers: list[object] = []
    with engine.connect() as revocation:  # the revocation, not committed yet
        revocation.execute(
            text("UPDATE devices SET revoked_at = now() AT TIME ZONE 'UTC' WHERE device_id = :d"),
            {"d": phone.profile.device_id},
        )

        def approve() -> None:
            try:
                answers.append(phone.approve_enrollment(pending["id"]))
            except PhoneApiError as error:
                answers.append((error.status, error.error))

        thread = threading.Thread(target=approve)
        thread.start()
        watcher = create_engine(engine.url, poolclass=NullPool)  # not the server's pool
        with watcher.connect() as watch:  # until it waits on the revocation (or is done)
            deadline = time.monotonic() + 10
            while thread.is_alive() and time.monotonic() < deadline:
                waiting = watch.execute(
                    text(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname ="
                        " current_database() AND wait_event_type = 'Lock'"
                    )
                ).scalar_one()
                # pg_stat_activity is read once per transaction (a cached snapshot): end
                # it, or every later read repeats the first one's answer.
                watch.rollback()
                if waiting:
                    break
                time.sleep(0.05)
        watcher.dispose()
        revocation.commit()
    thread.join(timeout=30)
    assert answers == [(401, "device_revoked")]
    with live.app.app_context():
        row = db.session.get(EnrollmentRequest, pending["id"])
        assert (row.status, row.device_pk, row.decided_by) == ("pending", None, None)
    assert device_count(live.app) == 1
