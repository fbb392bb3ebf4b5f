"""A waiting or silent PostgreSQL never freezes a worker: real `idp serve` (gunicorn with
one gevent worker) on PostgreSQL and Redis.

In a gevent worker a database wait must yield to the worker's other requests: with
psycopg's blocking C wait, one request waiting for a row lock froze the whole worker,
the request holding the lock included, until gunicorn killed it. Every test here
checks that the worker answers meanwhile and is still the same process afterwards.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection, Engine, make_url

from cluster import IdPProcess, TcpProxy, wait_until
from idp_phone.api import API_PREFIX, PhoneClient
from idp_phone.proof import make_proof
from support import (
    Browser,
    RelyingParty,
    add_client,
    add_user,
    enroll_phone,
    postgres_database,
    redis_url,
    running_app,
)

# PostgreSQL only (`make test-fast`, SQLite only, leaves these out).
pytestmark = pytest.mark.postgres


@dataclass
class Server:
    idp: IdPProcess
    engine: Engine  # the test's own connections to the IdP's database
    rp: RelyingParty
    phone: PhoneClient  # alice's phone
    other_phone: PhoneClient  # bob's phone
    tmp: Path

    @property
    def url(self) -> str:
        return self.idp.url

    def worker_pid(self) -> int:
        pids = self.idp.worker_pids()
        assert len(pids) == 1, pids
        return pids[0]

    def qr_url(self) -> str:
        return Browser(self.url).open(self.rp.authorize_url()).qr_url

    def make_idle(self, phone: PhoneClient) -> None:
        """As if the phone had not been used for a while: its next request writes
        ``devices.last_used_at`` (and so takes the device row's lock)."""
        with self.engine.begin() as connection:
            connection.execute(
                text(
                    "UPDATE devices SET last_used_at = now() - interval '10 minutes' "
                    "WHERE device_id = :id"
                ),
                {"id": phone.profile.device_id},
            )

    def lock_waiters(self) -> int:
        """Backends of the IdP's database waiting for a lock right now."""
        with self.engine.connect() as connection:
            return connection.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            ).scalar_one()


def start_server(tmp: Path, database_url: str, reach_db: str | None = None, **env: str) -> Server:
    """User alice with a phone, user bob with another; a client; one `idp serve` worker
    that reaches the database at ``reach_db`` (default: directly)."""
    idp = IdPProcess(
        tmp,
        "idp",
        {
            "IDP_DATABASE_URL": reach_db or database_url,
            "IDP_BROKER_URL": redis_url(),
            "IDP_SECRET_KEY": "database-waits-test-secret-key",
            "IDP_RATELIMIT_PREFIX": "test-" + database_url.rsplit("/", 1)[-1],
            **env,
        },
    )
    idp.env["IDP_ISSUER"] = idp.url
    with running_app(tmp / "setup", issuer=idp.url, IDP_DATABASE_URL=database_url) as app:
        add_user(app, "alice")
        add_user(app, "bob")
        client_id, secret = add_client(app)
    idp.start()
    return Server(
        idp=idp,
        engine=create_engine(database_url),
        rp=RelyingParty(idp.url, client_id, secret),
        phone=enroll_phone(idp.url, tmp / "alice-phone", "alice"),
        other_phone=enroll_phone(idp.url, tmp / "bob-phone", "bob"),
        tmp=tmp,
    )


@pytest.fixture
def database() -> Iterator[str]:
    with postgres_database() as url:
        yield url


@pytest.fixture
def serve(tmp_path: Path, database: str) -> Iterator[Callable[..., Server]]:
    """``serve(**env)`` starts the server with these extra settings; stopped afterwards."""
    started: list[Server] = []

    def start(**env: str) -> Server:
        server = start_server(tmp_path, database, **env)
        started.append(server)
        return server

    yield start
    for server in started:
        server.idp.stop()
        server.engine.dispose()


@pytest.fixture
def server(serve: Callable[..., Server]) -> Server:
    # These tests send many scans at once from one phone: more than a person would.
    return serve(IDP_LIMIT_DEVICE="1000/minute")


def healthz(server: Server) -> int:
    return requests.get(f"{server.url}/healthz", timeout=5).status_code


def in_thread(call: Callable[[], Any]) -> Callable[[], Any]:
    """Start ``call`` in a thread; the returned function waits for its result."""
    pool = ThreadPoolExecutor(max_workers=1)
    future = pool.submit(call)
    pool.shutdown(wait=False)
    return lambda: future.result(timeout=60)


def signed(server: Server, phone: PhoneClient, path: str, payload: dict[str, Any]) -> dict:
    """The exact request the phone would send (to send it more than once)."""
    url = f"{server.url}{API_PREFIX}{path}"
    body = json.dumps(payload, separators=(",", ":")).encode()
    proof = make_proof(phone.profile.key, "POST", url, body, kid=phone.profile.device_id)
    headers = {"Device-Proof": proof, "Content-Type": "application/json"}
    return {"url": url, "data": body, "headers": headers, "timeout": 20}


@contextlib.contextmanager
def device_row_locked(server: Server, phone: PhoneClient) -> Iterator[Connection]:
    """Another session holds ``SELECT ... FOR UPDATE`` on the phone's device row."""
    with server.engine.connect() as connection:
        connection.execute(
            text("SELECT id FROM devices WHERE device_id = :id FOR UPDATE"),
            {"id": phone.profile.device_id},
        )
        try:
            yield connection
        finally:
            connection.rollback()


def test_a_held_device_row_lock_freezes_nothing_else(serve: Callable[..., Server]) -> None:
    """While the device row is locked, /healthz and another phone answer at once; the
    phone whose row it is waits, and gets its answer when the lock goes."""
    server = serve(IDP_DATABASE_LOCK_TIMEOUT="60")
    pid = server.worker_pid()
    server.make_idle(server.phone)
    with device_row_locked(server, server.phone):
        waiting = in_thread(server.phone.me)
        wait_until(server.lock_waiters, 20, "the phone's request waiting for the row lock")
        assert healthz(server) == 200
        assert server.other_phone.me()["user"]["username"] == "bob"
        assert server.lock_waiters() == 1  # still waiting, and only it
    assert waiting()["user"]["username"] == "alice"
    assert server.worker_pid() == pid


def test_a_lock_held_too_long_is_a_503(serve: Callable[..., Server]) -> None:
    """IDP_DATABASE_LOCK_TIMEOUT: a request that would wait longer fails with a 503
    (temporarily_unavailable, Retry-After), and the worker serves on."""
    server = serve(IDP_DATABASE_LOCK_TIMEOUT="1")
    pid = server.worker_pid()
    server.make_idle(server.phone)
    url = f"{server.url}{API_PREFIX}/devices/me"
    proof = make_proof(
        server.phone.profile.key, "GET", url, b"", kid=server.phone.profile.device_id
    )
    with device_row_locked(server, server.phone):
        response = requests.get(url, headers={"Device-Proof": proof}, timeout=30)
        assert healthz(server) == 200
    assert response.status_code == 503, response.text
    assert response.json()["error"] == "temporarily_unavailable"
    assert response.headers["Retry-After"] == "2"
    assert server.phone.me()["user"]["username"] == "alice"
    assert server.worker_pid() == pid


def send_at_once(requests_: list[dict]) -> list[requests.Response]:
    """POST each request from a thread of its own, all released together."""
    barrier = threading.Barrier(len(requests_))

    def send(request: dict) -> requests.Response:
        barrier.wait()
        return requests.post(**request)

    with ThreadPoolExecutor(max_workers=len(requests_)) as pool:
        return list(pool.map(send, requests_))


def test_the_same_proof_twice_at_once(server: Server) -> None:
    """Of two copies of one proof sent at once exactly one is accepted; the other is a
    replay (invalid_proof). Before, the second waited for the first's rows inside the
    blocking wait while the first waited for Redis: the worker froze until gunicorn
    killed it. (A race: five proofs, each sent twice, all at once, three times over.)"""
    pid = server.worker_pid()
    qr_url = server.qr_url()
    for _ in range(3):
        server.make_idle(server.phone)
        proofs = [
            signed(server, server.phone, "/login-requests/scan", {"qr": qr_url}) for _ in range(5)
        ]
        responses = send_at_once([proof for proof in proofs for _copy in range(2)])
        for first, second in zip(responses[::2], responses[1::2], strict=True):
            pair = sorted((first, second), key=lambda r: r.status_code)
            assert [r.status_code for r in pair] == [200, 401], [r.text for r in pair]
            assert pair[1].json()["error"] == "invalid_proof"
    assert server.worker_pid() == pid
    assert healthz(server) == 200


def test_ten_scans_at_once_from_an_idle_phone(server: Server) -> None:
    """A phone idle for a while (each request then writes last_used_at) scanning ten
    times at once: every scan gets the same request, and the worker lives on. (A race:
    tried five times.)"""
    pid = server.worker_pid()
    qr_url = server.qr_url()
    for _ in range(5):
        server.make_idle(server.phone)
        scans = [
            signed(server, server.phone, "/login-requests/scan", {"qr": qr_url}) for _ in range(10)
        ]
        responses = send_at_once(scans)
        assert [r.status_code for r in responses] == [200] * 10, [r.text for r in responses]
        assert {r.json()["login_request"]["status"] for r in responses} == {"scanned"}
    assert server.worker_pid() == pid
    assert healthz(server) == 200


def test_a_database_that_stops_answering(tmp_path: Path, database: str) -> None:
    """PostgreSQL hangs (the network carries nothing, nothing is refused): /healthz and
    discovery answer at once, and a request that needs the database gets a 503 within
    IDP_DATABASE_STATEMENT_TIMEOUT + a few seconds, not never."""
    backend = make_url(database)
    network = TcpProxy(backend.port or 5432)
    reach_db = backend.set(port=network.port).render_as_string(hide_password=False)
    server = start_server(tmp_path, database, reach_db, IDP_DATABASE_STATEMENT_TIMEOUT="1")
    try:
        pid = server.worker_pid()
        assert server.phone.me()["user"]["username"] == "alice"  # a pooled connection
        network.freeze()
        url = f"{server.url}{API_PREFIX}/devices/me"
        proof = make_proof(
            server.phone.profile.key, "GET", url, b"", kid=server.phone.profile.device_id
        )
        answer = in_thread(lambda: requests.get(url, headers={"Device-Proof": proof}, timeout=30))
        assert healthz(server) == 200
        discovery = requests.get(f"{server.url}/.well-known/openid-configuration", timeout=5)
        assert discovery.status_code == 200
        response = answer()
        assert response.status_code == 503, response.text
        assert response.json()["error"] == "temporarily_unavailable"
        ready = requests.get(f"{server.url}/readyz", timeout=30)
        assert (ready.status_code, ready.json()["checks"]["database"]) == (503, "unreachable")
        assert healthz(server) == 200
        network.thaw()
        wait_until(lambda: server.phone.me(), 30, "the phone served again")
        assert server.worker_pid() == pid
    finally:
        server.idp.stop()
        server.engine.dispose()
        network.close()
