"""Enrollment by invitation (idp.mobile.invitations) against a live IdP, on both
backends: one link, one phone, once; only a digest stored; every use audited; two phones
racing for one link, one wins; and ``idp users invite`` prints a link (and a QR code)
that works."""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections import Counter
from datetime import timedelta

import pytest
import requests
from click.testing import CliRunner
from joserfc.jwk import ECKey
from sqlalchemy import delete, select, text, update

from idp import audit, db
from idp.accounts.models import User
from idp.cli import main
from idp.db import utcnow
from idp.errors import InvalidRequest
from idp.mobile.invitations import create_invitation, invitation_url, open_invitation
from idp.mobile.models import Device, Invitation
from idp_phone.api import ApprovalNeeded, PhoneClient
from idp_phone.proof import make_proof, public_jwk
from support import PASSWORD, add_user, enroll_by_invitation, enroll_phone, terminal_qr_text

API = "/api/mobile/v1"
REFUSED = "this invitation link was already used, has expired or is unknown: ask for a new one"


@pytest.fixture
def live(live_server):
    add_user(live_server.app, "alice")
    return live_server


def invite(app, username: str = "alice", ttl: timedelta = timedelta(minutes=15)) -> str:
    with app.app_context(), db.unit_of_work():
        token, _ = create_invitation(username, ttl)
    return token


def is_open(app, token: str) -> bool:
    with app.app_context():
        return open_invitation(token) is not None


def error_of(response: requests.Response) -> tuple[int, str]:
    return response.status_code, response.json()["error"]


def events(app, name: str) -> list[audit.Line]:
    with app.app_context():
        return [line for line in audit.query() if line.event == name]


def signed_get(url: str, key: ECKey, device_id: str) -> requests.Response:
    proof = make_proof(key, "GET", url, b"", kid=device_id)
    return requests.get(url, headers={"Device-Proof": proof}, timeout=5)


def test_an_invitation_enrolls_one_phone_once(live):
    token = invite(live.app)
    assert is_open(live.app, token)
    assert is_open(live.app, token)  # looking is free
    # A link preview opens the link (whatever the page answers): nothing is used up.
    link = invitation_url(live.url, token)
    requests.get(link, timeout=5)
    requests.head(link, timeout=5)
    assert is_open(live.app, token)

    key = ECKey.generate_key("P-256")
    enrolled = enroll_by_invitation(live.url, token, key, device_name="Alice's phone")
    assert enrolled.status_code == 201, enrolled.text
    view = enrolled.json()
    assert view["device_name"] == "Alice's phone"
    assert view["user"] == {
        "username": "alice",
        "name": "Alice Example",
        "email": "alice@example.com",
    }
    # The phone now works by its key alone (a kid proof), like a password-enrolled one.
    me = signed_get(f"{live.url}{API}/devices/me", key, view["device_id"])
    assert me.status_code == 200 and me.json() == view

    assert not is_open(live.app, token)
    again = enroll_by_invitation(live.url, token)
    assert error_of(again) == (410, "invalid_invitation")
    assert again.json()["error_description"] == REFUSED
    with live.app.app_context():
        row = db.session.scalar(select(Invitation))
        device = db.session.scalar(select(Device).where(Device.device_id == view["device_id"]))
        assert row.used_at is not None and row.device_pk == device.id
        assert db.session.query(Device).count() == 1  # the second use enrolled nothing


def test_an_expired_invitation_is_refused(live):
    token = invite(live.app)
    with live.app.app_context():
        db.session.execute(update(Invitation).values(expires_at=utcnow() - timedelta(seconds=1)))
        db.session.commit()
    assert not is_open(live.app, token)
    assert error_of(enroll_by_invitation(live.url, token)) == (410, "invalid_invitation")


@pytest.mark.parametrize("token", ["A" * 43, "short", "x" * 200, "../../etc/passwd" + "a" * 27])
def test_an_unknown_invitation_is_refused_as_a_used_one_is(live, token):
    invite(live.app)  # another, valid, link exists
    response = enroll_by_invitation(live.url, token)
    assert error_of(response) == (410, "invalid_invitation")
    assert response.json()["error_description"] == REFUSED


def test_the_invitation_of_a_deleted_user_is_gone(live):
    token = invite(live.app)
    with live.app.app_context():
        db.session.execute(delete(User).where(User.username == "alice"))
        db.session.commit()
        assert db.session.query(Invitation).count() == 0  # deleted with its user
    assert error_of(enroll_by_invitation(live.url, token)) == (410, "invalid_invitation")


@pytest.mark.parametrize(
    "fields",
    [
        {"invitation": "T", "username": "alice", "password": PASSWORD},
        {"invitation": "T", "username": "alice"},
        {"invitation": "T", "password": PASSWORD},
        {},
        {"invitation": 42},
        {"invitation": ""},
        {"invitation": "T", "device_name": ""},
        {"invitation": "T", "device_name": "two\nlines"},
    ],
)
def test_a_malformed_enrollment_is_refused_and_uses_nothing(live, fields):
    token = invite(live.app)
    body = {"device_name": "Phone"} | {k: token if v == "T" else v for k, v in fields.items()}
    key = ECKey.generate_key("P-256")
    url = f"{live.url}{API}/devices"
    data = json.dumps(body).encode()
    proof = make_proof(key, "POST", url, data, jwk=public_jwk(key))
    response = requests.post(url, data=data, headers={"Device-Proof": proof}, timeout=5)
    assert error_of(response) == (400, "invalid_request")
    assert is_open(live.app, token)
    assert events(live.app, "invitation.refused") == []


def test_an_enrolled_key_cannot_take_an_invitation(live, tmp_path):
    phone = enroll_phone(live.url, tmp_path / "phone")
    token = invite(live.app)
    response = enroll_by_invitation(live.url, token, phone.profile.key)
    assert error_of(response) == (409, "device_exists")
    assert is_open(live.app, token)  # rolled back with the enrollment


def test_only_the_digest_is_stored(live):
    token = invite(live.app)
    assert enroll_by_invitation(live.url, token).status_code == 201
    with live.app.app_context():
        rows = db.session.execute(text("SELECT * FROM invitations")).all()
        assert len(rows) == 1
        stored = " ".join(str(value) for value in rows[0])
        assert token not in stored
        assert (
            db.session.scalar(select(Invitation.digest))
            == hashlib.sha256(token.encode()).hexdigest()
        )
        details = " ".join(json.dumps(line.detail) for line in audit.query())
        assert token not in details and hashlib.sha256(token.encode()).hexdigest() not in details


def test_each_step_is_audited(live):
    token = invite(live.app)
    [created] = events(live.app, "invitation.created")
    assert (created.username, created.ip, created.detail["by"]) == ("alice", None, "cli")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", created.detail["expires"])

    device_id = enroll_by_invitation(live.url, token).json()["device_id"]
    [used] = events(live.app, "invitation.used")
    assert (used.username, used.device_id, used.ip) == ("alice", device_id, "127.0.0.1")
    [enrolled] = events(live.app, "device.enrolled")
    assert (enrolled.username, enrolled.device_id, enrolled.ip) == ("alice", device_id, "127.0.0.1")

    enroll_by_invitation(live.url, token)  # used: the refusal names whose link it was
    enroll_by_invitation(live.url, "B" * 43)  # unknown: nobody's
    refused = events(live.app, "invitation.refused")
    assert [(line.username, line.ip) for line in refused] == [
        ("alice", "127.0.0.1"),
        (None, "127.0.0.1"),
    ]
    assert len(events(live.app, "device.enrolled")) == 1


@pytest.mark.idp_config(IDP_LIMIT_ENROLL="100/minute")
def test_of_phones_racing_for_one_link_exactly_one_wins(live):
    token = invite(live.app)
    racers = 6
    start = threading.Barrier(racers)
    answers: list[tuple[int, str]] = []

    def race(i: int) -> None:
        start.wait()
        response = enroll_by_invitation(live.url, token, device_name=f"racer {i}")
        answers.append((response.status_code, response.json().get("error", "enrolled")))

    threads = [threading.Thread(target=race, args=(i,)) for i in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert Counter(answers) == {(201, "enrolled"): 1, (410, "invalid_invitation"): racers - 1}
    with live.app.app_context():
        assert db.session.query(Device).count() == 1
        winner = db.session.scalar(select(Device))
        assert db.session.scalar(select(Invitation.device_pk)) == winner.id
    assert len(events(live.app, "invitation.used")) == 1
    assert len(events(live.app, "invitation.refused")) == racers - 1


@pytest.mark.idp_config(IDP_LIMIT_PASSWORD="2 per 15 minutes")
def test_invitations_do_not_spend_the_password_budget(live, tmp_path):
    for _ in range(3):
        assert enroll_by_invitation(live.url, invite(live.app)).status_code == 201
    # The password budget is whole: the password is checked, and right (the invited
    # phones must approve this one).
    with pytest.raises(ApprovalNeeded):
        PhoneClient(tmp_path / "phone").enroll(live.url, "alice", PASSWORD, "Phone")


@pytest.mark.parametrize(
    ("ttl", "message"),
    [
        (timedelta(seconds=59), "an invitation lasts from 1 minute to 24 hours"),
        (timedelta(hours=24, seconds=1), "an invitation lasts from 1 minute to 24 hours"),
    ],
)
def test_an_invitation_lasts_a_minute_to_a_day(live, ttl, message):
    with live.app.app_context(), pytest.raises(InvalidRequest) as refused:
        create_invitation("alice", ttl)
    assert refused.value.description == message
    for ok in (timedelta(minutes=1), timedelta(hours=24)):
        assert is_open(live.app, invite(live.app, ttl=ok))


def test_an_unknown_user_cannot_be_invited(live):
    with live.app.app_context():
        with pytest.raises(InvalidRequest) as nobody:
            create_invitation("nobody", timedelta(minutes=5))
        assert nobody.value.description == "no user 'nobody'"
        with pytest.raises(InvalidRequest):
            create_invitation("bad name", timedelta(minutes=5))


@pytest.fixture
def cli(live, monkeypatch):
    """``idp`` against the live server's database."""
    for key in ("IDP_DATABASE_URL", "IDP_BROKER_URL", "IDP_SECRET_KEY", "IDP_ISSUER"):
        monkeypatch.setenv(key, str(live.app.config[key]))
    monkeypatch.setenv("IDP_INSTANCE_PATH", live.app.instance_path)
    return lambda *args: CliRunner().invoke(main, ["users", "invite", *args])


def test_the_command_prints_a_link_and_its_qr_code_that_enroll(live, cli):
    result = cli("alice", "--ttl", "2h")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    link = lines[0]
    assert re.fullmatch(re.escape(f"{live.url}/app/invite/") + r"[A-Za-z0-9_-]{43}", link)
    assert terminal_qr_text(result.output) == link  # what a phone's camera reads
    assert re.fullmatch(
        r"expires \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \(in 2 hours\); "
        r"it enrolls one phone for alice, once",
        lines[-1],
    )
    with live.app.app_context():
        expires = db.session.scalar(select(Invitation.expires_at))
        assert timedelta(minutes=119) < expires - utcnow() <= timedelta(hours=2)
    token = link.rsplit("/", 1)[1]
    assert enroll_by_invitation(live.url, token).status_code == 201
    assert error_of(enroll_by_invitation(live.url, token)) == (410, "invalid_invitation")


@pytest.mark.parametrize(("ttl", "spoken"), [(None, "15 minutes"), ("90s", "90 seconds")])
def test_the_command_without_the_qr_code(live, cli, ttl, spoken):
    result = cli("alice", "--no-qr", *(["--ttl", ttl] if ttl else []))
    assert result.exit_code == 0, result.output
    link, expiry = result.output.splitlines()
    assert link.startswith(f"{live.url}/app/invite/") and f"(in {spoken})" in expiry
    assert is_open(live.app, link.rsplit("/", 1)[1])


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["nobody"], 1, "error: no user 'nobody'"),
        (["alice", "--ttl", "30s"], 1, "error: an invitation lasts from 1 minute to 24 hours"),
        (["alice", "--ttl", "25h"], 1, "error: an invitation lasts from 1 minute to 24 hours"),
        (["alice", "--ttl", "15"], 2, "is not a duration such as 90s, 15m or 2h"),
        (["alice", "--ttl", "1d"], 2, "is not a duration such as 90s, 15m or 2h"),
    ],
)
def test_the_command_refuses_clearly(live, cli, args, code, message):
    result = cli(*args)
    assert result.exit_code == code and message in result.output, result.output
    with live.app.app_context():
        assert db.session.query(Invitation).count() == 0
