"""OpenID CIBA through a live server (idp.oauth.ciba): POST /bc-authorize, the phone's
inbox, the phone's decision and the token endpoint; poll and ping modes; every check of
the request; the defences against push bombing; an unknown user answered like one who
ignores the request."""

from __future__ import annotations

import http.server
import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey
from sqlalchemy import select

from idp import db
from idp.accounts.models import User
from idp.admin.services import create_client
from idp.audit import AuditEvent
from idp.errors import InvalidRequest
from idp.oauth.keys import key_store
from idp.oauth.polling import CIBA_GRANT_TYPE
from idp_phone.api import PhoneClient
from support import add_user, enroll_phone

pytestmark = pytest.mark.parametrize("backend", ["sqlite", "postgres+redis"], indirect=True)


@dataclass
class Site:
    """A CIBA client: its id and secret."""

    client_id: str
    secret: str


@dataclass
class World:
    live: object
    url: str
    app: object
    site: Site
    phone: PhoneClient
    tmp: Path

    def site_named(self, name: str, **options) -> Site:
        with self.app.app_context(), db.unit_of_work():
            client, secret = create_client(name, ["https://rp.example/cb"], **options)
            return Site(client.client_id, secret)

    def ask(self, site: Site | None = None, **params) -> requests.Response:
        site = site or self.site
        params.setdefault("scope", "openid profile")
        return requests.post(
            f"{self.url}/bc-authorize", data=params, auth=(site.client_id, site.secret), timeout=10
        )

    def poll(self, auth_req_id: str, site: Site | None = None) -> requests.Response:
        site = site or self.site
        return requests.post(
            f"{self.url}/token",
            data={"grant_type": CIBA_GRANT_TYPE, "auth_req_id": auth_req_id},
            auth=(site.client_id, site.secret),
            timeout=10,
        )


@pytest.fixture
def world(live_server, tmp_path) -> World:
    add_user(live_server.app, "alice")
    world = World(live_server, live_server.url, live_server.app, None, None, tmp_path)  # type: ignore[arg-type]
    world.site = world.site_named("Call centre", ciba_mode="poll")
    world.phone = enroll_phone(live_server.url, tmp_path / "phone")
    return world


def error(response: requests.Response, status: int = 400) -> str:
    assert response.status_code == status, response.text
    assert response.headers["Cache-Control"] == "no-store"
    return response.json()["error"]


def approve_in_inbox(phone: PhoneClient, binding_message: str | None = None) -> str:
    """The phone finds the one request in its inbox, opens it and approves it."""
    [item] = phone.inbox()
    assert item["binding_message"] == binding_message
    view = phone.open_request(item["id"])["login_request"]
    assert view["kind"] == "backchannel"
    phone.approve(item["id"])
    return item["id"]


def deny_in_inbox(phone: PhoneClient) -> None:
    [item] = phone.inbox()
    phone.open_request(item["id"])
    phone.deny(item["id"])


def test_discovery_names_the_endpoint_and_modes(world):
    metadata = requests.get(f"{world.url}/.well-known/openid-configuration", timeout=10).json()
    assert metadata["backchannel_authentication_endpoint"] == f"{world.url}/bc-authorize"
    assert metadata["backchannel_token_delivery_modes_supported"] == ["poll", "ping"]
    assert metadata["backchannel_user_code_parameter_supported"] is False
    assert CIBA_GRANT_TYPE in metadata["grant_types_supported"]


def test_poll_mode_from_request_to_tokens(world):
    answer = world.ask(login_hint="ALICE@example.com", binding_message="Order 42: pay (EUR)")
    assert answer.status_code == 200, answer.text
    assert answer.headers["Cache-Control"] == "no-store"
    body = answer.json()
    assert set(body) == {"auth_req_id", "expires_in", "interval"}
    assert len(body["auth_req_id"]) >= 43  # 256 bits, base64url
    assert error(world.poll(body["auth_req_id"])) == "authorization_pending"

    [item] = world.phone.inbox()
    assert item["client"]["name"] == "Call centre"
    assert item["status"] == "pending" and item["scanned_by"] is None
    assert [s["name"] for s in item["scopes"]] == ["openid", "profile"]
    view = world.phone.open_request(item["id"])["login_request"]
    assert view["binding_message"] == "Order 42: pay (EUR)"
    assert world.phone.inbox()[0]["scanned_by"] == "this_phone"
    world.phone.approve(item["id"])
    assert world.phone.inbox() == []

    time.sleep(body["interval"])  # a poll sooner than the interval is slow_down
    tokens = world.poll(body["auth_req_id"])
    assert tokens.status_code == 200, tokens.text
    grant = tokens.json()
    jwks = KeySet.import_key_set(requests.get(f"{world.url}/jwks", timeout=10).json())
    claims = jwt.decode(grant["id_token"], jwks).claims
    with world.app.app_context():
        subject = db.session.scalar(select(User.subject).where(User.username == "alice"))
    assert claims["iss"] == world.url
    assert claims["aud"] == world.site.client_id
    assert claims["sub"] == subject
    assert claims["exp"] > claims["iat"]
    info = requests.get(
        f"{world.url}/userinfo",
        headers={"Authorization": f"Bearer {grant['access_token']}"},
        timeout=10,
    )
    assert info.json()["sub"] == subject
    assert error(world.poll(body["auth_req_id"])) == "invalid_grant"  # single use
    with world.app.app_context():
        events = db.session.scalars(select(AuditEvent.event).order_by(AuditEvent.id)).all()
    assert "ciba.requested" in events and "login.approved" in events


class Receiver(http.server.BaseHTTPRequestHandler):
    """A ping-mode client's notification endpoint: keeps what it was sent."""

    received: list[tuple[str | None, dict]]
    arrived: threading.Event

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).received.append((self.headers.get("Authorization"), body))
        type(self).arrived.set()
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def receiver():
    handler = type("Handler", (Receiver,), {"received": [], "arrived": threading.Event()})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server, handler
    server.shutdown()
    thread.join(timeout=5)


def test_ping_mode_notifies_the_client_of_each_decision(world, receiver):
    server, handler = receiver
    endpoint = f"http://127.0.0.1:{server.server_address[1]}/ciba/notify"
    site = world.site_named("Bank", ciba_mode="ping", ciba_notification_endpoint=endpoint)
    assert error(world.ask(site, login_hint="alice")) == "invalid_request"  # no token
    assert error(world.ask(site, login_hint="alice", client_notification_token="a b")) == (
        "invalid_request"
    )

    answer = world.ask(site, login_hint="alice", client_notification_token="tok.en-1~+/==")
    assert answer.status_code == 200, answer.text
    auth_req_id = answer.json()["auth_req_id"]
    approve_in_inbox(world.phone)
    assert handler.arrived.wait(10), "no ping arrived"
    assert handler.received == [("Bearer tok.en-1~+/==", {"auth_req_id": auth_req_id})]
    tokens = world.poll(auth_req_id, site)
    assert tokens.status_code == 200, tokens.text
    assert tokens.json()["id_token"]

    handler.arrived.clear()
    answer = world.ask(site, login_hint="alice", client_notification_token="second")
    deny_in_inbox(world.phone)
    assert handler.arrived.wait(10), "no ping arrived after the denial"
    assert handler.received[-1] == ("Bearer second", {"auth_req_id": answer.json()["auth_req_id"]})
    assert error(world.poll(answer.json()["auth_req_id"], site), 400) == "access_denied"


GOOD_MESSAGES = [
    "Order 42: pay 10.50 (EUR)",
    "订单 1234",
    "Café #3 / ok? yes! it's",
    "नमस्ते",
    "x" * 40,
]
BAD_MESSAGES = [
    "",
    "   ",
    "x" * 41,
    "<script>",
    "a_b",
    "tab\there",
    "line\nbreak",
    "smile 😀",
    "50%",
]


def test_binding_message_rules(world):
    for message in BAD_MESSAGES:
        assert error(world.ask(login_hint="alice", binding_message=message)) == (
            "invalid_binding_message"
        ), message
    for n, message in enumerate(GOOD_MESSAGES):
        # A hint naming nobody each time: accepted, and alone for its subject.
        answer = world.ask(login_hint=f"nobody{n}@example.com", binding_message=message)
        assert answer.status_code == 200, (message, answer.text)
    answer = world.ask(login_hint="alice", binding_message="订单 1234")
    assert answer.status_code == 200
    assert world.phone.inbox()[0]["binding_message"] == "订单 1234"


def id_token(world: World, **claims) -> str:
    with world.app.app_context():
        with db.unit_of_work():
            subject = db.session.scalar(select(User.subject).where(User.username == "alice"))
        key = key_store().signing_key("RS256")
    now = int(time.time())
    payload = {"iss": world.url, "aud": world.site.client_id, "sub": subject, "iat": now - 7200}
    payload["exp"] = now - 3600  # expired: a hint's expiry is ignored
    payload.update(claims)
    return jwt.encode({"alg": "RS256", "kid": key.kid}, payload, key)


def test_exactly_one_hint_and_what_each_accepts(world):
    assert error(world.ask()) == "invalid_request"
    assert error(world.ask(login_hint="alice", id_token_hint=id_token(world))) == (
        "invalid_request"
    )
    refused = world.ask(login_hint_token="eyJ.x.y")
    assert error(refused) == "invalid_request"
    assert refused.json()["error_description"].startswith("login_hint_token is not supported")
    assert error(world.ask(login_hint="alice", login_hint_token="x")) == "invalid_request"
    assert error(world.ask(login_hint="a" * 321)) == "invalid_request"
    assert error(world.ask(login_hint="al\x7fice")) == "invalid_request"

    other_issuer = id_token(world, iss="https://elsewhere.example")
    assert error(world.ask(id_token_hint=other_issuer)) == "invalid_request"
    foreign_key = RSAKey.generate_key(2048)
    forged = jwt.encode(
        {"alg": "RS256", "kid": "x"},
        {"iss": world.url, "aud": world.site.client_id, "sub": "x"},
        foreign_key,
    )
    assert error(world.ask(id_token_hint=forged)) == "invalid_request"
    other_client = world.site_named("Other", ciba_mode="poll")
    wrong_aud = id_token(world, aud=[other_client.client_id])
    described = world.ask(id_token_hint=wrong_aud)
    assert error(described) == "invalid_request"
    assert "not issued to this client" in described.json()["error_description"]
    assert error(world.ask(id_token_hint="not a token")) == "invalid_request"

    answer = world.ask(id_token_hint=id_token(world, aud=["x", world.site.client_id]))
    assert answer.status_code == 200, answer.text
    assert len(world.phone.inbox()) == 1  # it named alice


def test_client_scope_and_parameter_checks(world, live_server):
    assert error(world.ask(login_hint="alice", scope="profile email"), 400) == "invalid_scope"
    assert error(world.ask(login_hint="alice", scope=""), 400) == "invalid_scope"
    plain = world.site_named("Plain site")
    assert error(world.ask(plain, login_hint="alice")) == "unauthorized_client"
    wrong = Site(world.site.client_id, "not-the-secret")
    assert error(world.ask(wrong, login_hint="alice"), 401) == "invalid_client"
    with world.app.app_context(), db.unit_of_work():
        public, _ = create_client("Public", ["https://rp.example/cb"], public=True)
        public.grant_types = [*public.grant_types, CIBA_GRANT_TYPE]
        public_id = public.client_id
    answer = requests.post(
        f"{world.url}/bc-authorize",
        data={"client_id": public_id, "scope": "openid", "login_hint": "alice"},
        timeout=10,
    )
    assert error(answer, 401) == "invalid_client"
    for expiry in ("0", "-5", "soon", "1.5", "9" * 12):
        assert error(world.ask(login_hint="alice", requested_expiry=expiry)) == "invalid_request"
    repeated = requests.post(
        f"{world.url}/bc-authorize",
        data=[("scope", "openid"), ("login_hint", "alice"), ("login_hint", "bob")],
        auth=(world.site.client_id, world.site.secret),
        timeout=10,
    )
    assert error(repeated) == "invalid_request"
    assert error(world.ask(login_hint="alice", request="eyJ.x.y")) == "invalid_request"
    # A shorter lifetime is granted; user_code is ignored (not supported, and advertised so).
    answer = world.ask(login_hint="alice", requested_expiry="30", user_code="1234")
    assert answer.status_code == 200, answer.text
    assert answer.json()["expires_in"] == 30
    with pytest.raises(requests.HTTPError):
        requests.get(f"{world.url}/bc-authorize", timeout=10).raise_for_status()


def test_one_open_request_per_user_and_client(world):
    first = world.ask(login_hint="alice")
    assert first.status_code == 200
    busy = world.ask(login_hint="alice@example.com")  # the same user, named otherwise
    assert error(busy) == "invalid_request"
    other = world.site_named("Other site", ciba_mode="poll")
    assert world.ask(other, login_hint="alice").status_code == 200
    # An unknown hint is refused the same way, with the same words.
    assert world.ask(login_hint="ghost@example.com").status_code == 200
    ghost = world.ask(login_hint="GHOST@example.com")
    assert error(ghost) == "invalid_request"
    assert ghost.json() == busy.json()
    items = world.phone.inbox()
    mine = next(i for i in items if i["client"]["client_id"] == world.site.client_id)
    world.phone.open_request(mine["id"])
    world.phone.approve(mine["id"])
    assert world.ask(login_hint="alice").status_code == 200  # decided: a new one may come


@pytest.mark.idp_config(IDP_LIMIT_CIBA_SUBJECT="2/hour")
def test_per_subject_limit_across_clients(world):
    sites = [world.site, *(world.site_named(f"Site {n}", ciba_mode="poll") for n in range(2))]
    assert world.ask(sites[0], login_hint="alice").status_code == 200
    assert world.ask(sites[1], login_hint="alice").status_code == 200
    limited = world.ask(sites[2], login_hint="alice")
    assert error(limited, 429) == "too_many_requests"
    assert int(limited.headers["Retry-After"]) > 0
    # The same for a hint naming nobody: no answer tells the two apart.
    assert world.ask(sites[0], login_hint="ghost").status_code == 200
    assert world.ask(sites[1], login_hint="ghost").status_code == 200
    assert error(world.ask(sites[2], login_hint="ghost"), 429) == "too_many_requests"
    # Another user has a budget of their own.
    add_user(world.app, "bob")
    assert world.ask(sites[2], login_hint="bob").status_code == 200


def test_three_denials_in_a_row_mute_the_client(world):
    for _ in range(3):
        assert world.ask(login_hint="alice").status_code == 200
        deny_in_inbox(world.phone)
    muted = world.ask(login_hint="alice")
    assert error(muted) == "invalid_request"
    assert world.phone.inbox() == []
    other = world.site_named("Other site", ciba_mode="poll")
    assert world.ask(other, login_hint="alice").status_code == 200  # only that client is muted
    with world.app.app_context():
        rows = db.session.scalars(select(AuditEvent).where(AuditEvent.event == "ciba.muted")).all()
    assert [(r.username, r.client_id, r.ip) for r in rows] == [
        ("alice", world.site.client_id, "127.0.0.1")
    ]
    with world.app.app_context():
        asked = db.session.scalars(
            select(AuditEvent).where(AuditEvent.event == "ciba.requested")
        ).all()
    assert len(asked) == 4 and {r.ip for r in asked} == {"127.0.0.1"}
    assert {r.username for r in asked} == {"alice"} and asked[0].detail["known"] is True


@pytest.mark.idp_config(IDP_LIMIT_CIBA_SUBJECT="20/hour")
def test_an_approval_breaks_the_run_of_denials(world):
    for decide in (deny_in_inbox, deny_in_inbox, approve_in_inbox, deny_in_inbox, deny_in_inbox):
        assert world.ask(login_hint="alice").status_code == 200
        decide(world.phone)
    assert world.ask(login_hint="alice").status_code == 200


VARYING = ("Date", "Content-Length", "X-Request-Id")


def test_an_unknown_user_is_answered_like_one_who_ignores_it(world):
    known = world.ask(login_hint="alice", requested_expiry="2")
    unknown = world.ask(login_hint="nobody@example.com", requested_expiry="2")
    assert known.status_code == unknown.status_code == 200
    assert set(known.json()) == set(unknown.json())
    assert known.json()["expires_in"] == unknown.json()["expires_in"]
    assert known.json()["interval"] == unknown.json()["interval"]
    assert {k: v for k, v in known.headers.items() if k not in VARYING} == {
        k: v for k, v in unknown.headers.items() if k not in VARYING
    }
    for answer in (known, unknown):
        assert error(world.poll(answer.json()["auth_req_id"])) == "authorization_pending"
    time.sleep(known.json()["interval"] + 2)  # past both lifetimes and the interval
    for answer in (known, unknown):
        assert error(world.poll(answer.json()["auth_req_id"])) == "expired_token"
    assert world.phone.inbox() == []


def test_registration_rules(app):
    with app.app_context():
        for options, words in (
            ({"ciba_mode": "ping"}, "needs a notification endpoint"),
            ({"ciba_mode": "poll", "public": True}, "cannot be a public client"),
            ({"ciba_mode": "poll", "ciba_notification_endpoint": "https://a.example"}, "ping"),
            ({"ciba_mode": "push"}, "must be one of"),
            ({"ciba_mode": "ping", "ciba_notification_endpoint": "http://rp.example/n"}, "https"),
            (
                {"ciba_mode": "ping", "ciba_notification_endpoint": "https://u:p@rp.example"},
                "https",
            ),
            ({"ciba_notification_endpoint": "https://rp.example/n"}, "--ciba"),
        ):
            with pytest.raises(InvalidRequest, match=words):
                create_client("Site", ["https://rp.example/cb"], **options)
            db.session.rollback()
        client, _ = create_client(
            "Site",
            ["https://rp.example/cb"],
            ciba_mode="ping",
            ciba_notification_endpoint="http://127.0.0.1:9/notify",
        )
        assert CIBA_GRANT_TYPE in client.grant_types
        assert client.backchannel_token_delivery_mode == "ping"
        db.session.rollback()


def test_the_cli_registers_and_lists_a_ciba_client(app, monkeypatch):
    from click.testing import CliRunner

    from idp.cli import main

    for key in ("IDP_DATABASE_URL", "IDP_BROKER_URL", "IDP_SECRET_KEY", "IDP_ISSUER"):
        monkeypatch.setenv(key, str(app.config[key]))
    monkeypatch.setenv("IDP_INSTANCE_PATH", app.instance_path)
    env: dict[str, str] = {}
    runner = CliRunner()
    base = ["clients", "create", "--name", "Bank", "--redirect-uri", "https://rp.example/cb"]
    made = runner.invoke(main, [*base, "--ciba", "--ciba-mode", "ping"], env=env)
    assert made.exit_code != 0 and "notification endpoint" in made.output
    made = runner.invoke(main, [*base, "--ciba-mode", "ping"], env=env)
    assert made.exit_code != 0 and "--ciba" in made.output
    made = runner.invoke(
        main,
        [*base, "--ciba", "--ciba-mode", "ping", "--ciba-notification-endpoint",
         "https://rp.example/notify", "--json"],
        env=env,
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    listed = json.loads(runner.invoke(main, ["clients", "list", "--json"], env=env).output)
    [row] = [r for r in listed if r["name"] == "Bank"]
    assert row["ciba_mode"] == "ping"
    assert row["ciba_notification_endpoint"] == "https://rp.example/notify"
    # A call centre's server has no redirect URI: --ciba needs none (the README's example).
    made = runner.invoke(main, ["clients", "create", "--name", "Call centre", "--ciba", "--json"])
    assert made.exit_code == 0, made.output
    assert json.loads(made.output)["client_secret"]
    listed = json.loads(runner.invoke(main, ["clients", "list", "--json"], env=env).output)
    [row] = [r for r in listed if r["name"] == "Call centre"]
    assert row["ciba_mode"] == "poll" and row["redirect_uris"] == []
    assert row["grant_types"] == ["refresh_token", "urn:openid:params:grant-type:ciba"]


@pytest.mark.idp_config(IDP_LIMIT_CIBA_SUBJECT="50/hour")
def test_racing_requests_for_one_user_and_client_make_one(world):
    """The check and the insert are one serialized transaction (SQLite's one writer, a
    PostgreSQL advisory lock): of requests sent at once, exactly one is made."""
    from concurrent.futures import ThreadPoolExecutor

    barrier = threading.Barrier(8)

    def ask_at_once(_: int) -> int:
        barrier.wait()
        return world.ask(login_hint="alice").status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = sorted(pool.map(ask_at_once, range(8)))
    assert statuses == [200] + [400] * 7
    assert len(world.phone.inbox()) == 1


@pytest.mark.idp_config(IDP_LIMIT_BACKCHANNEL="2/minute", IDP_LIMIT_CIBA_SUBJECT="50/hour")
def test_bc_authorize_is_limited_per_ip(world):
    """Hints that name nobody are each a subject of their own: the address is what bounds
    how many rows one client makes."""
    answers = [world.ask(login_hint=f"nobody{i}@example.com") for i in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert answers[2].json()["error"] == "too_many_requests"
    assert int(answers[2].headers["Retry-After"]) >= 1
