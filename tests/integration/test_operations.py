"""Operations: health, readiness, Prometheus metrics and structured logs with a request
id, on the embedded default and on PostgreSQL + Redis."""

from __future__ import annotations

import json
import logging

import pytest
from prometheus_client.parser import text_string_to_metric_families

from idp.ops.logs import JsonFormatter
from support import RelyingParty, add_client, running_app

pytestmark = pytest.mark.parametrize("backend", ["sqlite", "postgres+redis"], indirect=True)


def sample(client, name: str, **labels: str) -> float:
    text = client.get("/metrics").get_data(as_text=True)
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return 0.0


def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json == {"status": "ok"}
    assert response.headers["Cache-Control"] == "no-store"


def test_readyz_checks_the_database_and_the_broker(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json == {"status": "ready", "checks": {"database": "ok", "broker": "ok"}}


def test_readyz_without_the_broker_is_degraded_but_ready(app, client, monkeypatch):
    """Sign-ins still work without the broker (pages learn at their next heartbeat): a
    Redis outage must not take every node out of the load balancer."""
    monkeypatch.setattr(app.extensions["idp.broker"], "ping", lambda: False)
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json == {
        "status": "degraded",
        "checks": {"database": "ok", "broker": "unreachable"},
    }


def test_readyz_without_the_database_is_unavailable(app, client, monkeypatch):
    from sqlalchemy.exc import OperationalError

    def unreachable(*_args, **_kwargs):
        raise OperationalError("SELECT 1", {}, Exception("connection refused"))

    monkeypatch.setattr(app.extensions["idp.db"].session, "execute", unreachable)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json == {
        "status": "unavailable",
        "checks": {"database": "unreachable", "broker": "ok"},
    }


def test_metrics_count_login_requests_and_token_requests(app, client):
    client_id, secret = add_client(app)
    rp = RelyingParty("http://127.0.0.1:8000", client_id, secret)
    created = sample(client, "idp_login_requests_total", outcome="created")
    failed = sample(
        client, "idp_token_requests_total", grant_type="authorization_code", result="invalid_grant"
    )
    assert client.get(rp.authorize_url().removeprefix(rp.idp_url)).status_code == 200
    token = client.post(
        "/token",
        data={
            "grant_type": "authorization_code",
            "code": "nope",
            "redirect_uri": rp.redirect_uri,
            "code_verifier": rp.verifier,
        },
        auth=(client_id, secret),
    )
    assert token.status_code == 400
    assert sample(client, "idp_login_requests_total", outcome="created") == created + 1
    after = sample(
        client, "idp_token_requests_total", grant_type="authorization_code", result="invalid_grant"
    )
    assert after == failed + 1
    metrics = client.get("/metrics")
    assert metrics.content_type.startswith("text/plain")
    text = metrics.get_data(as_text=True)
    for name in (
        "idp_open_websockets",
        "idp_approve_to_notify_seconds_bucket",
        "idp_http_requests_total",
        "idp_http_request_duration_seconds_bucket",
    ):
        assert name in text


def test_an_unknown_grant_type_is_counted_as_other(client):
    labels = {"grant_type": "other", "result": "unsupported_grant_type"}
    before = sample(client, "idp_token_requests_total", **labels)
    assert client.post("/token", data={"grant_type": "x" * 500}).status_code == 400
    after = sample(client, "idp_token_requests_total", **labels)
    assert after == before + 1


@pytest.mark.idp_config(IDP_METRICS_TOKEN="s3cret-metrics-token")
def test_metrics_token(live_server):
    import requests

    url = f"{live_server.url}/metrics"
    refused = requests.get(url, timeout=5)
    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"] == 'Bearer realm="metrics"'
    wrong = requests.get(url, headers={"Authorization": "Bearer nope"}, timeout=5)
    assert wrong.status_code == 401
    ok = requests.get(url, headers={"Authorization": "Bearer s3cret-metrics-token"}, timeout=5)
    assert ok.status_code == 200
    assert "idp_login_requests_total" in ok.text


@pytest.mark.parametrize("remote", ["127.0.0.1", "::1"])
def test_metrics_answer_loopback_clients_by_default(client, remote):
    response = client.get("/metrics", environ_base={"REMOTE_ADDR": remote})
    assert response.status_code == 200
    assert "idp_login_requests_total" in response.get_data(as_text=True)


@pytest.mark.parametrize("remote", ["10.0.0.7", "192.0.2.1", "2001:db8::1"])
def test_metrics_refuse_other_clients_by_default(client, remote):
    response = client.get("/metrics", environ_base={"REMOTE_ADDR": remote})
    assert (response.status_code, response.mimetype) == (403, "application/json")
    assert response.get_json()["error"] == "forbidden"
    assert "WWW-Authenticate" not in response.headers
    assert "idp_" not in response.get_data(as_text=True)


def test_metrics_judge_the_client_behind_a_trusted_proxy(tmp_path, backend):
    """Behind a proxy the loopback peer is the proxy: the forwarded client is judged."""
    with running_app(tmp_path, IDP_TRUSTED_PROXIES=1, **backend) as app:
        http = app.test_client()
        local = {"REMOTE_ADDR": "127.0.0.1"}
        outside = http.get("/metrics", environ_base=local, headers={"X-Forwarded-For": "192.0.2.9"})
        assert (outside.status_code, outside.get_json()["error"]) == (403, "forbidden")
        inside = http.get("/metrics", environ_base=local, headers={"X-Forwarded-For": "127.0.0.1"})
        assert inside.status_code == 200


@pytest.mark.idp_config(IDP_METRICS_TOKEN="s3cret-metrics-token")
def test_a_metrics_token_is_needed_even_on_loopback(live_server):
    import requests

    refused = requests.get(f"{live_server.url}/metrics", timeout=5)
    assert (refused.status_code, refused.json()["error"]) == (401, "unauthorized")
    assert refused.headers["WWW-Authenticate"] == 'Bearer realm="metrics"'


def test_every_response_has_a_request_id(client):
    made = client.get("/healthz").headers["X-Request-Id"]
    assert len(made) == 32
    assert client.get("/healthz").headers["X-Request-Id"] != made
    given = client.get("/healthz", headers={"X-Request-Id": "lb-1234.abc"})
    assert given.headers["X-Request-Id"] == "lb-1234.abc"
    hostile = client.get("/healthz", headers={"X-Request-Id": "a b {json}" + "x" * 100})
    assert hostile.headers["X-Request-Id"] != "a b {json}" + "x" * 100
    assert len(hostile.headers["X-Request-Id"]) == 32


def test_request_log_lines_are_json_with_the_route_not_the_path(client, caplog):
    caplog.set_level(logging.INFO, logger="idp.request")
    response = client.get(
        "/q/secret-login-id-in-the-path?x=secret-query", headers={"X-Request-Id": "req-7"}
    )
    [record] = [r for r in caplog.records if r.name == "idp.request"]
    line = json.loads(JsonFormatter().format(record))
    assert line["request_id"] == "req-7"
    assert line["route"] == "/q/<request_id>"
    assert line["status"] == response.status_code
    assert line["method"] == "GET"
    assert isinstance(line["duration_ms"], float)
    assert line["level"] == "info"
    assert "secret" not in json.dumps(line)


def test_log_lines_inside_a_request_carry_its_id(app):
    with app.test_request_context("/"):
        from flask import g

        g.request_id = "inner-42"
        record = logging.LogRecord(
            "idp.x", logging.WARNING, __file__, 1, "hello %s", ("you",), None
        )
        line = json.loads(JsonFormatter().format(record))
    assert line == {
        "time": line["time"],
        "level": "warning",
        "logger": "idp.x",
        "message": "hello you",
        "request_id": "inner-42",
    }


def test_debug_logs_of_a_whole_sign_in_hold_no_secret(tmp_path, backend):
    """``idp serve`` at ``IDP_LOG_LEVEL=DEBUG``: a sign-in, a refresh, UserInfo,
    introspection and revocation, and nowhere in the log a token, code, client secret,
    proof, cookie, login request id or short code (Authlib, SQLAlchemy, gunicorn and the
    phone paths all log at DEBUG)."""
    import requests

    from cluster import IdPProcess
    from idp_phone.api import PhoneClient
    from support import (
        PASSWORD,
        Browser,
        add_user,
        free_port,
        redirect_params,
    )

    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    config = {"IDP_DATABASE_URL": f"sqlite:///{tmp_path / 'idp.sqlite3'}"} | backend
    with running_app(tmp_path / "setup", issuer=issuer, **config) as setup:
        add_user(setup, "alice")
        client_id, client_secret = add_client(setup)
    env = config | {"IDP_ISSUER": issuer, "IDP_SECRET_KEY": "k" * 32, "IDP_LOG_LEVEL": "DEBUG"}
    idp = IdPProcess(tmp_path, "idp", env)
    idp.port = port
    idp.start()
    try:
        phone = PhoneClient(tmp_path / "phone")
        phone.enroll(issuer, "alice", PASSWORD, "Test phone")
        rp = RelyingParty(issuer, client_id, client_secret)
        browser = Browser(issuer)
        page = browser.open(rp.authorize_url())
        code = browser.short_code(page).json()["code"]
        login_id = phone.scan(page.qr_url)["login_request"]["id"]
        phone.approve(login_id)
        query = redirect_params(browser.complete(page))
        tokens = rp.exchange(query["code"]).json()
        refreshed = rp.token(
            {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
        )
        assert refreshed.status_code == 200, refreshed.text
        bearer = {"Authorization": "Bearer " + refreshed.json()["access_token"]}
        assert requests.get(f"{issuer}/userinfo", headers=bearer, timeout=10).status_code == 200
        auth = (client_id, client_secret)
        data = {"token": refreshed.json()["access_token"]}
        assert requests.post(f"{issuer}/introspect", data=data, auth=auth, timeout=10).ok
        assert requests.post(f"{issuer}/revoke", data=data, auth=auth, timeout=10).ok
        log = idp.log_text()
    finally:
        idp.stop()
    assert '"level": "debug"' in log  # the test would prove nothing at INFO
    cookies = [c.value for c in browser.session.cookies]
    secrets_ = {
        "client secret": client_secret,
        "login request id": login_id,
        "short code": code,
        "authorization code": query["code"],
        "state": rp.state,
        "nonce": rp.nonce,
        "PKCE verifier": rp.verifier,
        "access token": tokens["access_token"],
        "refresh token": tokens["refresh_token"],
        "id token": tokens["id_token"].split(".")[1],
        "refreshed access token": refreshed.json()["access_token"],
        "refreshed refresh token": refreshed.json()["refresh_token"],
        **{f"cookie {i}": value for i, value in enumerate(cookies)},
    }
    leaked = {what: value for what, value in secrets_.items() if value in log}
    leaked |= {"short code": code} if code.replace("-", "") in log else {}
    lines = [line for line in log.splitlines() if any(v in line for v in leaked.values())]
    assert not leaked, (leaked, lines[:5])
    # The lines that held them are still there, redacted: the phone's paths, Authlib's.
    assert "/api/mobile/v1/login-requests/[redacted]/approve" in log
    assert "'access_token': '[redacted]'" in log
