"""Production topology: several `idp serve` processes sharing PostgreSQL and Redis,
behind a load balancer, and the faults they must survive without losing a login.

Every process here is real: gunicorn with gevent workers, PostgreSQL, Redis
(a private redis-server where a test kills it), and a layer-4 load balancer that
decides which process gets each new connection. A waiting page is the browser's
HTTP session plus its WebSocket, reconnecting when it closes, as ``login.js`` does.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
import requests
from simple_websocket import ConnectionClosed
from sqlalchemy import create_engine, text

from cluster import IdPProcess, RedisServer, TcpProxy, wait_until
from idp.realtime.broker import RECHECK, RedisBroker
from idp_phone.api import PhoneApiError, PhoneClient
from support import (
    Browser,
    Page,
    RelyingParty,
    add_client,
    add_user,
    next_status,
    postgres_database,
    redirect_params,
    redis_url,
    running_app,
)

SECRET_KEY = "cluster-test-secret-key-shared-by-every-process"


@dataclass
class Cluster:
    tmp: Path
    database_url: str  # as the IdP processes reach it
    broker_url: str
    balancer: TcpProxy
    processes: list[IdPProcess]
    rp: RelyingParty

    @property
    def issuer(self) -> str:
        return self.balancer.url

    def add_process(self, name: str, workers: int = 1, **settings: str) -> IdPProcess:
        env = settings | {
            "IDP_ISSUER": self.issuer,
            "IDP_DATABASE_URL": self.database_url,
            "IDP_BROKER_URL": self.broker_url,
            "IDP_SECRET_KEY": SECRET_KEY,
            "IDP_WS_HEARTBEAT": "2",
            # The abuse limits' counters are in Redis too: keys of this test's own.
            "IDP_RATELIMIT_PREFIX": "test-" + self.database_url.rsplit("/", 1)[-1],
        }
        process = IdPProcess(self.tmp, name, env, workers=workers).start()
        self.processes.append(process)
        return process

    def phone(self) -> PhoneClient:
        """The enrolled phone, with fresh connections (so they go where the balancer says)."""
        return PhoneClient(self.tmp / "phone")

    def login_row(self, request_id: str) -> tuple[str, str | None]:
        engine = create_engine(self.database_url)
        with engine.connect() as connection:
            row = connection.execute(
                text("SELECT status, completed_at FROM login_requests WHERE id = :id"),
                {"id": request_id},
            ).one()
        engine.dispose()
        return row[0], row[1]

    def count(self, table: str) -> int:
        engine = create_engine(self.database_url)
        with engine.connect() as connection:
            n = connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()  # noqa: S608
        engine.dispose()
        return n


def build_cluster(tmp: Path, database_url: str, broker_url: str, reach_db: str) -> Cluster:
    """A migrated database with user alice and a client; an enrolled phone; no process yet.

    ``reach_db`` is the URL the IdP processes use (through a proxy, in the outage test).
    """
    balancer = TcpProxy(0)
    with running_app(tmp / "setup", issuer=balancer.url, IDP_DATABASE_URL=database_url) as app:
        add_user(app, "alice")
        client_id, secret = add_client(app)
    return Cluster(
        tmp=tmp,
        database_url=reach_db,
        broker_url=broker_url,
        balancer=balancer,
        processes=[],
        rp=RelyingParty(balancer.url, client_id, secret),
    )


@pytest.fixture
def database() -> Iterator[str]:
    with postgres_database() as url:
        yield url


@pytest.fixture
def cluster(tmp_path: Path, database: str) -> Iterator[Cluster]:
    """Shared PostgreSQL and the shared Redis; processes are added by each test."""
    with running(build_cluster(tmp_path, database, redis_url(), database)) as made:
        yield made


@contextlib.contextmanager
def running(made: Cluster) -> Iterator[Cluster]:
    """Stop every process and the balancer afterwards, whatever happened."""
    try:
        yield made
    finally:
        for process in made.processes:
            process.stop()
        made.balancer.close()


def enroll(cluster: Cluster, through: IdPProcess) -> None:
    cluster.balancer.route(through.port)
    PhoneClient(cluster.tmp / "phone").enroll(
        cluster.issuer, "alice", "correct horse battery staple", "Test phone"
    )


def open_page(cluster: Cluster, on: IdPProcess) -> tuple[Browser, Page, object]:
    """The browser opens the authorize page, and its socket, on process ``on``."""
    cluster.balancer.route(on.port)
    browser = Browser(cluster.issuer)
    page = browser.open(cluster.rp.authorize_url())
    ws = browser.socket(page)
    assert next_status(ws) == "pending"
    return browser, page, ws


def reconnect(browser: Browser, page: Page, ws: object, timeout: float = 30) -> object:
    """What login.js does when its socket closes: connect again until it works."""
    with pytest.raises(ConnectionClosed):
        while True:
            ws.receive(timeout=timeout)  # type: ignore[attr-defined]

    def attempt() -> object:
        return browser.socket(page)

    return wait_until(attempt, timeout, "the page reconnecting")


def scanned_on_two_processes(cluster: Cluster, **settings: str) -> tuple:
    """Processes a and b (with ``settings``); the page waiting on a; the phone, through
    b, has scanned."""
    a, b = cluster.add_process("a", **settings), cluster.add_process("b", **settings)
    enroll(cluster, b)
    browser, page, ws = open_page(cluster, a)
    cluster.balancer.route(b.port)
    phone = cluster.phone()
    phone.scan(page.qr_url)
    assert next_status(ws) == "scanned"
    return a, b, browser, page, ws, phone


def finish(cluster: Cluster, browser: Browser, page: Page, via: IdPProcess) -> dict:
    """Complete the redirect and exchange the code (both through ``via``)."""
    cluster.balancer.route(via.port)
    params = redirect_params(browser.complete(page))
    assert params["state"] == cluster.rp.state
    response = cluster.rp.exchange(params["code"])
    assert response.status_code == 200, response.text
    tokens = response.json()
    _, claims = cluster.rp.verify_id_token(tokens["id_token"])
    assert claims["nonce"] == cluster.rp.nonce
    return tokens


def test_two_processes_complete_the_flow(cluster):
    """Done-when of the issue: browser on one process, phone on the other."""
    a, b = cluster.add_process("a"), cluster.add_process("b")
    enroll(cluster, b)
    browser, page, ws = open_page(cluster, a)

    cluster.balancer.route(b.port)
    phone = cluster.phone()
    assert phone.scan(page.qr_url)["login_request"]["id"] == page.id
    assert next_status(ws) == "scanned"
    phone.approve(page.id)
    assert next_status(ws) == "approved"  # pushed across processes through Redis

    tokens = finish(cluster, browser, page, via=b)
    cluster.balancer.route(a.port)
    info = requests.get(
        f"{cluster.issuer}/userinfo",
        headers={"Authorization": f"Bearer {tokens['access_token']}"},
        timeout=10,
    )
    assert info.status_code == 200
    assert info.json()["preferred_username"] == "alice"

    # Who did what, from each process's own metrics.
    assert a.metric("idp_login_requests_total", outcome="created") == 1
    assert a.metric("idp_login_requests_total", outcome="approved") == 0
    assert b.metric("idp_login_requests_total", outcome="approved") == 1
    assert a.metric("idp_approve_to_notify_seconds_count") == 1
    assert b.metric("idp_token_requests_total", grant_type="authorization_code",
                    result="success") == 1  # fmt: skip
    assert cluster.login_row(page.id)[0] == "completed"


def test_a_killed_worker_loses_no_login(cluster):
    """SIGKILL the worker that holds the waiting page's socket: the page reconnects to
    another worker and the login completes, once."""
    a = cluster.add_process("a", workers=2)
    b = cluster.add_process("b")
    enroll(cluster, b)
    browser, page, ws = open_page(cluster, a)
    upstream = cluster.balancer.upstream_of[ws.local_port]
    victim = a.worker_holding(upstream)
    os.kill(victim, signal.SIGKILL)
    ws = reconnect(browser, page, ws)
    assert next_status(ws) == "pending"  # the current state, first thing
    # /metrics on any worker adds up every live worker's (the dead one's socket is gone
    # once gunicorn has reaped it, which a loaded machine may not have done yet).
    wait_until(lambda: victim not in a.worker_pids(), 10, "gunicorn reaping the dead worker")
    assert a.metric("idp_open_websockets") == 1
    assert a.metric("idp_login_requests_total", outcome="created") == 1

    cluster.balancer.route(b.port)
    phone = cluster.phone()
    phone.scan(page.qr_url)
    phone.approve(page.id)
    statuses = [next_status(ws), next_status(ws)]
    assert statuses == ["scanned", "approved"]
    finish(cluster, browser, page, via=a)
    assert victim not in a.worker_pids()
    assert len(a.worker_pids()) == 2  # gunicorn replaced it
    assert cluster.count("authorization_codes") == 1
    assert cluster.count("tokens") == 1


def test_a_worker_exit_leaves_the_instance_serving(cluster):
    """SIGTERM to one worker (gunicorn replaces it): the shared metrics folder is the
    master's, so the other worker and the new one go on answering everything."""
    a = cluster.add_process("a", workers=2)
    victim = a.worker_pids()[0]
    os.kill(victim, signal.SIGTERM)
    wait_until(
        lambda: victim not in a.worker_pids() and len(a.worker_pids()) == 2,
        30,
        "gunicorn replacing the worker",
    )
    paths = ["/healthz", "/readyz", "/metrics", "/.well-known/openid-configuration"]
    answers = {
        (path, requests.get(a.url + path, timeout=10).status_code) for path in paths * 10
    }  # fresh connections: both workers answer some
    assert answers == {(path, 200) for path in paths}
    assert a.metric("idp_http_requests_total", route="/healthz", status="200") >= 10


def test_a_stopping_process_sends_its_pages_to_another(cluster):
    """SIGTERM (a deploy): open sockets close with 1012 at once; the page reconnects
    through the balancer to the process that stays and the login completes there."""
    a, b = cluster.add_process("a"), cluster.add_process("b")
    enroll(cluster, b)
    browser, page, ws = open_page(cluster, a)
    cluster.balancer.route(b.port)  # the balancer takes a out of rotation
    assert a.terminate() == 0
    assert ws.close_reason == 1012  # service restart: reconnect
    ws = reconnect(browser, page, ws)
    assert next_status(ws) == "pending"
    phone = cluster.phone()
    phone.scan(page.qr_url)
    phone.approve(page.id)
    assert [next_status(ws), next_status(ws)] == ["scanned", "approved"]
    finish(cluster, browser, page, via=b)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.kill()


def test_a_redis_restart_loses_no_login(tmp_path, database, private_redis):
    """Redis dies while a page waits and the phone approves meanwhile: once Redis is
    back the processes resubscribe, the page gets the approval and the login completes."""
    made = build_cluster(tmp_path, database, private_redis.url, database)
    with running(made) as cluster:
        a, b, browser, page, ws, phone = scanned_on_two_processes(cluster)

        private_redis.kill()
        degraded = requests.get(f"{a.url}/readyz", timeout=5)
        assert degraded.status_code == 200  # sign-ins still work here: stay in rotation
        assert degraded.json() == {
            "status": "degraded",
            "checks": {"database": "ok", "broker": "unreachable"},
        }
        phone.approve(page.id)  # committed; its message cannot be sent now
        assert cluster.login_row(page.id)[0] == "approved"

        private_redis.start()
        assert next_status(ws, timeout=30) == "approved"
        finish(cluster, browser, page, via=a)
        wait_until(lambda: requests.get(f"{a.url}/readyz", timeout=5).status_code == 200)
        wait_until(lambda: requests.get(f"{b.url}/readyz", timeout=5).status_code == 200)


#: Short Redis bounds, so that a freeze of a few seconds is noticed within the test.
FAST_REDIS = {"IDP_REDIS_TIMEOUT": "1", "IDP_REDIS_PING_INTERVAL": "1"}


def server_errors(process: IdPProcess) -> list[str]:
    """The process's request log lines that answered 5xx, and any traceback."""
    bad = []
    for line in process.log_text().splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict) and int(record.get("status", 0)) >= 500:
                bad.append(line)
        if "Traceback" in line:
            bad.append(line)
    return bad


def test_a_frozen_redis_loses_no_login(tmp_path, database, private_redis):
    """Redis stops answering but keeps every connection (SIGSTOP) while pages wait: the
    approval reaches the page at its next heartbeat (from the database), new sign-ins
    go through with per-process abuse counters, /readyz stays 200 ("degraded"), nothing
    answers 500; once Redis answers again the processes resubscribe."""
    made = build_cluster(tmp_path, database, private_redis.url, database)
    with running(made) as cluster:
        a, b, browser, page, ws, phone = scanned_on_two_processes(cluster, **FAST_REDIS)

        private_redis.freeze()
        try:
            phone.approve(page.id)  # committed; its message cannot cross now
            assert next_status(ws, timeout=15) == "approved"
            finish(cluster, browser, page, via=a)

            for process in (a, b):
                ready = wait_until(
                    lambda p=process: (
                        requests.get(f"{p.url}/readyz", timeout=5).json()["status"] == "degraded"
                    ),
                    15,
                    f"{process.name} reporting the broker down",
                )
                assert ready
                degraded = requests.get(f"{process.url}/readyz", timeout=5)
                assert degraded.status_code == 200
                assert degraded.json()["checks"] == {"database": "ok", "broker": "unreachable"}

            # A new sign-in from start to end, both ways round, while Redis is frozen.
            for page_on, phone_on in ((a, b), (b, a)):
                rp = cluster.rp
                cluster.rp = RelyingParty(rp.idp_url, rp.client_id, rp.client_secret)  # new nonce
                browser, page, ws = open_page(cluster, page_on)
                cluster.balancer.route(phone_on.port)
                phone = cluster.phone()
                phone.scan(page.qr_url)
                phone.approve(page.id)
                statuses = [next_status(ws, timeout=15)]
                if statuses[0] != "approved":
                    statuses.append(next_status(ws, timeout=15))
                assert statuses[-1] == "approved"
                finish(cluster, browser, page, via=page_on)
        finally:
            private_redis.thaw()

        for process in (a, b):
            wait_until(
                lambda p=process: (
                    requests.get(f"{p.url}/readyz", timeout=5).json()["status"] == "ready"
                ),
                30,
                f"{process.name} resubscribed",
            )
        assert cluster.count("tokens") == 3
        for process in (a, b):
            assert server_errors(process) == []


def test_a_postgresql_outage_fails_clearly_and_heals(tmp_path, database):
    """The database is unreachable for a while: requests get a clear 503, nothing is
    half-written, and once it is back the same login completes without a restart."""
    from sqlalchemy.engine import make_url

    url = make_url(database)
    network = TcpProxy(url.port or 5432)
    through_proxy = url.set(host="127.0.0.1", port=network.port).render_as_string(
        hide_password=False
    )
    made = build_cluster(tmp_path, database, redis_url(), through_proxy)
    try:
        with running(made) as cluster:
            a, b, browser, page, ws, phone = scanned_on_two_processes(cluster)

            network.cut()
            with pytest.raises(PhoneApiError) as refused:
                phone.approve(page.id)
            assert refused.value.status == 503
            assert refused.value.error == "temporarily_unavailable"
            cluster.balancer.route(a.port)
            page_again = requests.get(cluster.rp.authorize_url(), timeout=15)
            assert page_again.status_code == 503
            assert page_again.headers["Retry-After"] == "2"
            assert "briefly unavailable" in page_again.text
            token = cluster.rp.exchange("no-such-code")
            assert (token.status_code, token.json()["error"]) == (503, "temporarily_unavailable")
            ready = requests.get(f"{a.url}/readyz", timeout=15)
            assert ready.status_code == 503
            assert ready.json()["checks"] == {"database": "unreachable", "broker": "ok"}
            assert requests.get(f"{a.url}/healthz", timeout=5).status_code == 200

            network.restore()
            assert cluster.login_row(page.id)[0] == "scanned"  # the refused approval left no trace
            cluster.balancer.route(b.port)
            phone = cluster.phone()
            wait_until(lambda: phone.approve(page.id), 30, "the approval to go through")
            assert next_status(ws) == "approved"
            finish(cluster, browser, page, via=a)
    finally:
        network.close()


def test_a_frozen_postgresql_loses_no_login(tmp_path, database):
    """PostgreSQL stops answering but keeps every connection (the network carries nothing)
    while a page waits on one process and the phone is on the other: /healthz and
    discovery answer at once, a request that needs the database is a 503 within a bounded
    time (never a frozen worker, never a 500), the page's socket stays open, and once the
    database answers again the same login completes."""
    from sqlalchemy.engine import make_url

    url = make_url(database)
    network = TcpProxy(url.port or 5432)
    through_proxy = url.set(host="127.0.0.1", port=network.port).render_as_string(
        hide_password=False
    )
    made = build_cluster(tmp_path, database, redis_url(), through_proxy)
    bounded = {"IDP_DATABASE_STATEMENT_TIMEOUT": "1", "IDP_DATABASE_LOCK_TIMEOUT": "1"}
    try:
        with running(made) as cluster:
            a, b, browser, page, ws, phone = scanned_on_two_processes(cluster, **bounded)

            network.freeze()
            try:
                with pytest.raises(PhoneApiError) as refused:
                    phone.approve(page.id)
                assert (refused.value.status, refused.value.error) == (
                    503,
                    "temporarily_unavailable",
                )
                for process in (a, b):
                    assert requests.get(f"{process.url}/healthz", timeout=5).status_code == 200
                    discovery = f"{process.url}/.well-known/openid-configuration"
                    assert requests.get(discovery, timeout=5).status_code == 200
            finally:
                network.thaw()

            assert cluster.login_row(page.id)[0] == "scanned"  # the refused approval left no trace
            phone = cluster.phone()
            wait_until(lambda: phone.approve(page.id), 30, "the approval to go through")
            assert next_status(ws, timeout=15) == "approved"  # the same socket, still open
            finish(cluster, browser, page, via=a)
            for process in (a, b):
                assert [
                    line for line in server_errors(process) if '"status": 503' not in line
                ] == []
    finally:
        network.close()


def test_the_redis_broker_rechecks_after_losing_its_connection(private_redis):
    """Redis drops the subscriber connection (a restart, a failover): the broker
    reconnects by itself and tells every local page to re-read the database. (A private
    Redis: on the shared one this would drop every other test's subscribers too.)"""
    broker = RedisBroker(private_redis.url)
    try:
        assert broker.wait_ready(10)
        subscription = broker.subscribe("login:x")
        redis.Redis.from_url(private_redis.url).client_kill_filter(_type="pubsub")
        assert subscription.get(timeout=10) == RECHECK
        broker.publish("login:x", {"status": "scanned"})
        assert subscription.get(timeout=10) == {"status": "scanned"}
        assert broker.ping()
    finally:
        broker.close()


def test_the_redis_broker_notices_a_frozen_redis(private_redis):
    """Redis stops answering but keeps the connection (SIGSTOP): a publish gives up after
    the timeout, the silent pub/sub link is noticed by its ping, and once Redis answers
    again the broker resubscribes, says "recheck" and sends what it kept."""
    broker = RedisBroker(private_redis.url, timeout=1, ping_interval=1)
    try:
        assert broker.wait_ready(10)
        subscription = broker.subscribe("login:x")
        private_redis.freeze()
        try:
            publishing = threading.Thread(
                target=broker.publish, args=("login:x", {"status": "scanned"})
            )
            publishing.start()
            publishing.join(timeout=10)
            assert not publishing.is_alive()  # it gave up on the frozen server, and kept it
            wait_until(lambda: not broker.ping(), 10, "the broker noticing the freeze")
            broker.publish("login:x", {"status": "approved"})  # kept at once
            assert subscription.get(timeout=0.5) is None
        finally:
            private_redis.thaw()
        assert subscription.get(timeout=15) == RECHECK
        assert subscription.get(timeout=10) == {"status": "scanned"}
        assert subscription.get(timeout=10) == {"status": "approved"}
        assert broker.ping()
    finally:
        broker.close()


@pytest.mark.parametrize("at_once", [1, 6], ids=["one-by-one", "concurrent"])
def test_the_abuse_limits_fall_back_when_redis_freezes(tmp_path, private_redis, at_once):
    """The limits' counters are in a Redis that stops answering: requests give up on it
    after IDP_REDIS_TIMEOUT and count in this process's memory, so the limits hold and
    nothing answers 500, also for the requests that were waiting when it froze."""
    budget = 8
    with running_app(
        tmp_path,
        IDP_RATELIMIT_STORAGE_URL=private_redis.url,
        IDP_REDIS_TIMEOUT=1,
        IDP_LIMIT_BROWSER=f"{budget}/minute",
    ) as app:
        client_id, secret = add_client(app)
        path = RelyingParty("http://127.0.0.1:8000", client_id, secret).authorize_url()
        path = path.removeprefix("http://127.0.0.1:8000")

        def ask_together(n: int) -> list[int]:
            statuses: list[int] = []
            askers = [
                threading.Thread(
                    target=lambda: statuses.append(app.test_client().get(path).status_code)
                )
                for _ in range(n)
            ]
            for asker in askers:
                asker.start()
            for asker in askers:
                asker.join(timeout=20)
                assert not asker.is_alive(), "a request waited on the frozen Redis"
            return statuses

        private_redis.freeze()
        try:
            # These find Redis frozen and switch to memory (any 500 would be missing here:
            # the test client raises it in its thread).
            assert ask_together(at_once) == [200] * at_once
            # Counted in memory now, one by one: the budget holds.
            after = [status for _ in range(budget + 1) for status in ask_together(1)]
        finally:
            private_redis.thaw()
        assert after[-1] == 429
        assert after == sorted(after)  # some 200s, then only 429s
        assert set(after) == {200, 429}
