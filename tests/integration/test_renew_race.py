"""Renewing an expired QR code writes a request's status only by compare-and-set
(``idp.qrlogin.lifecycle``): a phone's approval that committed while the renewal waited
for the row stands, and the renewal is refused.

Only PostgreSQL lets the two interleave (SQLite's one writer serializes them); the test
holds the approving transaction open on a connection of its own, so the renewal waits
for its row lock, then commits it.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import text

from idp import db
from idp.db import utcnow
from idp.errors import AlreadyUsed
from idp.qrlogin import services as logins
from idp.web import Caller
from tests.support import add_client

pytestmark = pytest.mark.parametrize("backend", ["postgres+redis"], indirect=True)


def test_an_approval_committed_during_a_renewal_stands(app):
    client_id, _ = add_client(app)
    with app.app_context(), db.unit_of_work():
        login = logins.create_login_request(
            client_id=client_id,
            params={"client_id": client_id, "scope": "openid"},
            binding_secret="page-secret",
            browser=Caller("127.0.0.1"),
        )
        request_id = login.id
    engine = app.extensions["idp.db"].engine
    with engine.begin() as setup:  # scanned, and just past its lifetime
        setup.execute(
            text("UPDATE login_requests SET status = 'scanned', expires_at = :at WHERE id = :id"),
            {"at": utcnow() - timedelta(seconds=1), "id": request_id},
        )
    approving = engine.connect()
    approver = approving.begin()
    # Another worker's approval, whose compare-and-set ran just before the lifetime ended:
    # written, not yet committed (it holds the row).
    approving.execute(
        text(
            "UPDATE login_requests SET status = 'approved', decided_at = :at"
            " WHERE id = :id AND status = 'scanned'"
        ),
        {"at": utcnow(), "id": request_id},
    )
    outcome: list[object] = []

    def renew() -> None:
        with app.app_context():
            try:
                logins.renew_login_request(request_id, "page-secret", browser=Caller("127.0.0.1"))
                db.session.commit()
                outcome.append("renewed")
            except AlreadyUsed as error:
                db.session.rollback()
                outcome.append(error)
            finally:
                db.session.remove()

    thread = threading.Thread(target=renew)
    thread.start()
    thread.join(timeout=1)  # it waits for the approval's row lock
    approver.commit()
    approving.close()
    thread.join(timeout=30)
    assert not thread.is_alive()
    with engine.connect() as check:
        status = check.execute(
            text("SELECT status FROM login_requests WHERE id = :id"), {"id": request_id}
        ).scalar_one()
    assert status == "approved"  # not overwritten by the renewal
    assert len(outcome) == 1 and isinstance(outcome[0], AlreadyUsed)
