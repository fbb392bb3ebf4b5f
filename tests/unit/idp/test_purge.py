"""``idp purge``: exactly the rows no request can use any more go, on both backends."""

import json
import threading
import time
from datetime import timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from idp import db
from idp.accounts.services import create_user
from idp.admin.services import create_client
from idp.audit import AuditEvent
from idp.cli import main
from idp.db import utcnow
from idp.housekeeping import purge
from idp.mobile.models import Device, EnrollmentRequest, Invitation, UsedProof
from idp.oauth.models import AuthorizationCode, Token, digest
from idp.qrlogin.models import LoginRequest, ShortCodeFailure, Status
from support import PASSWORD, REDIRECT_URI

pytestmark = pytest.mark.parametrize("backend", ["sqlite", "postgres+redis"], indirect=True)

HOUR = 3600


@pytest.fixture
def rows(app):
    """One row of each kind on each side of the line; returns the names expected to stay."""
    with app.app_context():
        with db.unit_of_work():
            user = create_user("alice", PASSWORD, email="alice@example.com", name="Alice")
            client, _ = create_client("Test RP", [REDIRECT_URI])
        now, epoch = utcnow(), int(time.time())

        def login(name: str, expired_ago: float, status: Status = Status.EXPIRED) -> None:
            db.session.add(
                LoginRequest(
                    id=name,
                    binding_hash=digest(name),
                    client_id=client.client_id,
                    params={},
                    status=status,
                    created_at=now - timedelta(seconds=expired_ago + 120),
                    expires_at=now - timedelta(seconds=expired_ago),
                )
            )

        login("login-old", 2 * HOUR)
        login("login-recent", 60)
        login("login-pending", -60, Status.PENDING)
        # Approved just before its end: completable for IDP_CODE_TTL more seconds.
        login("login-approved", 10, Status.APPROVED)

        def code(name: str, expired_ago: float) -> None:
            db.session.add(
                AuthorizationCode(
                    code_hash=digest(name),
                    client_id=client.client_id,
                    user_id=user.id,
                    login_request_id="x",
                    scope="openid",
                    auth_time=epoch,
                    expires_at=now - timedelta(seconds=expired_ago),
                )
            )

        code("code-old", 2 * HOUR)
        code("code-fresh", -30)

        def token(name: str, age: float, *, refresh: str | None = None, **kw: object) -> None:
            db.session.add(
                Token(
                    access_token_hash=digest(name),
                    refresh_token_hash=digest(refresh) if refresh else None,
                    client_id=client.client_id,
                    user_id=user.id,
                    scope="openid",
                    issued_at=int(epoch - age),
                    expires_in=HOUR,
                    **kw,
                )
            )

        token("token-old", 3 * HOUR)
        token("token-live", 10)
        token("token-old-refreshable", 3 * HOUR, refresh="r1", refresh_expires_at=epoch + HOUR)
        token("token-old-refresh-forever", 3 * HOUR, refresh="r2", refresh_expires_at=None)
        token("token-old-refresh-revoked", 3 * HOUR, refresh="r3", refresh_revoked=True)
        token(
            "token-old-refresh-expired", 5 * HOUR, refresh="r4", refresh_expires_at=epoch - HOUR * 2
        )

        phone = Device(
            device_id="dev_1", user_id=user.id, name="Phone", public_jwk="{}", key_thumbprint="t"
        )
        db.session.add(phone)
        db.session.flush()
        db.session.add_all(
            [
                ShortCodeFailure(user_id=user.id, device_pk=phone.id, at=now - timedelta(hours=1)),
                ShortCodeFailure(
                    user_id=user.id, device_pk=phone.id, at=now - timedelta(minutes=1)
                ),
            ]
        )
        db.session.add_all(
            [
                UsedProof(
                    key_thumbprint="k", jti="proof-old", expires_at=now - timedelta(seconds=1)
                ),
                UsedProof(
                    key_thumbprint="k", jti="proof-live", expires_at=now + timedelta(seconds=60)
                ),
            ]
        )

        def invitation(name: str, expires_in: float, used_ago: float | None = None) -> None:
            used_at = None if used_ago is None else now - timedelta(seconds=used_ago)
            db.session.add(
                Invitation(
                    user_id=user.id,
                    digest=digest(name),
                    expires_at=now + timedelta(seconds=expires_in),
                    used_at=used_at,
                )
            )

        invitation("invite-expired-long-ago", -2 * HOUR)
        invitation("invite-used-long-ago", 20 * HOUR, used_ago=2 * HOUR)
        invitation("invite-expired-recently", -60)
        invitation("invite-used-recently", 20 * HOUR, used_ago=60)
        invitation("invite-open", 10 * 60)

        def enrollment(name: str, expires_in: float, status: str = "pending") -> None:
            db.session.add(
                EnrollmentRequest(
                    id=name,
                    user_id=user.id,
                    code_digest=digest(name),
                    public_jwk="{}",
                    key_thumbprint=name,
                    device_name="New phone",
                    status=status,
                    expires_at=now + timedelta(seconds=expires_in),
                )
            )

        enrollment("enroll-expired-long-ago", -2 * HOUR)
        enrollment("enroll-approved-long-ago", -2 * HOUR, "approved")
        enrollment("enroll-expired-recently", -60)
        enrollment("enroll-pending", 5 * 60)
        # The audit log is kept IDP_AUDIT_RETENTION_DAYS (365) days.
        db.session.add_all(
            [
                AuditEvent(event="login.scanned", at=now - timedelta(days=366), detail={}),
                AuditEvent(event="login.approved", at=now - timedelta(days=364), detail={}),
            ]
        )
        db.session.commit()
    return {
        "logins": {"login-recent", "login-pending", "login-approved"},
        "codes": {digest("code-fresh")},
        "tokens": {
            digest(t) for t in ["token-live", "token-old-refreshable", "token-old-refresh-forever"]
        },
        "proofs": {"proof-live"},
        "invitations": {
            digest(i) for i in ["invite-expired-recently", "invite-used-recently", "invite-open"]
        },
        "enrollments": {"enroll-expired-recently", "enroll-pending"},
        "failures": 1,
        "audit": {"user.created", "client.created", "login.approved"},
    }


def remaining(app) -> dict[str, set[str]]:
    with app.app_context():
        return {
            "logins": set(db.session.scalars(select(LoginRequest.id))),
            "codes": set(db.session.scalars(select(AuthorizationCode.code_hash))),
            "tokens": set(db.session.scalars(select(Token.access_token_hash))),
            "proofs": set(db.session.scalars(select(UsedProof.jti))),
            "invitations": set(db.session.scalars(select(Invitation.digest))),
            "enrollments": set(db.session.scalars(select(EnrollmentRequest.id))),
            "failures": len(db.session.scalars(select(ShortCodeFailure.id)).all()),
            "audit": set(db.session.scalars(select(AuditEvent.event))),
        }


def test_purge_deletes_exactly_what_expired(app, rows):
    with app.app_context():
        report = purge(timedelta(hours=1))
    assert report.deleted == {
        "login_requests": 1,
        "authorization_codes": 1,
        "tokens": 3,
        "invitations": 2,
        "enrollment_requests": 2,
        "used_proofs": 1,
        "short_code_failures": 1,
        "audit_events": 1,
    }
    assert remaining(app) == rows


def test_purge_twice_deletes_nothing_more(app, rows):
    with app.app_context():
        purge()
        assert purge().total == 0
    assert remaining(app) == rows


def test_keep_zero_still_spares_what_can_be_used(app, rows):
    with app.app_context():
        login = db.session.get(LoginRequest, "login-recent")
        login.expires_at = utcnow() - timedelta(seconds=200)  # past the completion grace
        db.session.commit()
        purge(timedelta(0))
    left = remaining(app)
    # "login-approved" expired 10 s ago but may still be completed: it stays.
    assert left["logins"] == {"login-pending", "login-approved"}
    assert left["tokens"] == rows["tokens"]
    assert left["codes"] == rows["codes"]


def test_small_batches_delete_everything(app, rows):
    with app.app_context():
        report = purge(timedelta(hours=1), batch=1)
    assert report.total == 12
    assert remaining(app) == rows


def test_two_purges_at_once_agree(app, rows):
    """Run from two hosts' cron at the same minute: no error, nothing deleted twice."""
    reports, errors = [], []

    def run() -> None:
        with app.app_context():
            try:
                reports.append(purge(timedelta(hours=1), batch=1))
            except Exception as error:
                errors.append(error)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert sum(r.total for r in reports) == 12
    assert remaining(app) == rows


def test_the_command(app, rows, monkeypatch):
    for key in ("IDP_DATABASE_URL", "IDP_BROKER_URL", "IDP_SECRET_KEY"):
        if key in app.config:
            monkeypatch.setenv(key, str(app.config[key]))
    monkeypatch.setenv("IDP_INSTANCE_PATH", app.instance_path)
    result = CliRunner().invoke(main, ["purge", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {
        "login_requests": 1,
        "authorization_codes": 1,
        "tokens": 3,
        "invitations": 2,
        "enrollment_requests": 2,
        "used_proofs": 1,
        "short_code_failures": 1,
        "audit_events": 1,
    }
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Token)) == 3


def test_the_command_refuses_a_negative_keep(app):
    result = CliRunner().invoke(main, ["purge", "--keep", "-5"])
    assert result.exit_code == 2
    assert "-5" in result.output
