"""The embedded mode (SQLite) under the production server (`idp serve`, gevent): many
phones signing in at once must not lock the worker up.

SQLite makes a writer wait for the database lock inside the C library, which blocks the
whole gevent worker; a write transaction left open across a greenlet switch (the abuse
limiter's lock, say) then stalls every request until the worker is killed. A load
benchmark found exactly that; this test keeps it found.
"""

from __future__ import annotations

import threading

from cluster import IdPProcess
from idp_phone.api import PhoneClient
from support import (
    PASSWORD,
    Browser,
    RelyingParty,
    add_client,
    add_user,
    free_port,
    redirect_params,
    running_app,
)

PHONES = 8
SIGN_INS_EACH = 4


def test_many_phones_at_once_on_sqlite(tmp_path):
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    database = f"sqlite:///{tmp_path / 'idp.sqlite3'}"
    with running_app(tmp_path / "setup", issuer=issuer, IDP_DATABASE_URL=database) as setup:
        add_user(setup, "alice")
        client_id, secret = add_client(setup)
    idp = IdPProcess(
        tmp_path,
        "idp",
        {
            "IDP_ISSUER": issuer,
            "IDP_DATABASE_URL": database,
            "IDP_SECRET_KEY": "embedded",
            # alice's eight phones, each by password alone (not a next phone's approval).
            "IDP_PASSWORD_ENROLLMENT": "always",
        },
    )
    idp.port = port
    idp.start()
    try:
        phones = []
        for i in range(PHONES):
            phone = PhoneClient(tmp_path / f"phone{i}")
            phone.enroll(issuer, "alice", PASSWORD, f"phone {i}")
            phones.append(phone)
        done: list[int] = []
        errors: list[BaseException] = []

        def sign_ins(phone: PhoneClient) -> None:
            try:
                for _ in range(SIGN_INS_EACH):
                    rp = RelyingParty(issuer, client_id, secret)
                    browser = Browser(issuer)
                    page = browser.open(rp.authorize_url())
                    phone.approve(phone.scan(page.qr_url)["login_request"]["id"])
                    response = rp.exchange(redirect_params(browser.complete(page))["code"])
                    assert response.status_code == 200, response.text
                    done.append(1)
            except BaseException as error:  # reported below, with the server's log
                errors.append(error)

        threads = [threading.Thread(target=sign_ins, args=(p,)) for p in phones]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=90)
        log = idp.log_text()
        assert not errors, f"{errors[0]!r}\n{log[-3000:]}"
        assert len(done) == PHONES * SIGN_INS_EACH
        assert "WORKER TIMEOUT" not in log and "database is locked" not in log
    finally:
        idp.stop()
