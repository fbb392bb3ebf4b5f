"""The phone's inbox (idp.mobile.inbox) through a live server: the list, opening an item,
and the WebSocket that sends the list first and after every change, to every phone of
the user, with its proof as a subprotocol."""

from __future__ import annotations

import json
import time

import pytest
import requests
from simple_websocket import Client as WebSocketClient
from simple_websocket import ConnectionClosed, ConnectionError

from idp import db
from idp.admin.services import create_client
from idp_phone.api import API_PREFIX, INBOX_SUBPROTOCOL, PhoneApiError, PhoneClient
from idp_phone.proof import make_proof
from support import Browser, RelyingParty, add_client, add_user, enroll_phone

pytestmark = pytest.mark.parametrize("backend", ["sqlite", "postgres+redis"], indirect=True)


@pytest.fixture
def world(live_server, tmp_path):
    app = live_server.app
    add_user(app, "alice")
    add_user(app, "bob")
    with app.app_context(), db.unit_of_work():
        client, secret = create_client("Call centre", ["https://rp.example/cb"], ciba_mode="poll")
        site = (client.client_id, secret)
    first = enroll_phone(live_server.url, tmp_path / "first")
    second = enroll_phone(live_server.url, tmp_path / "second", approver=first)
    bob = enroll_phone(live_server.url, tmp_path / "bob", username="bob")
    return live_server, site, first, second, bob


def ask(live, site, **params) -> str:
    params.setdefault("scope", "openid email")
    answer = requests.post(f"{live.url}/bc-authorize", data=params, auth=site, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()["auth_req_id"]


def next_list(ws: WebSocketClient, timeout: float = 10) -> list[dict]:
    """The next list the socket sends (heartbeats skipped)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = ws.receive(timeout=max(0.1, deadline - time.monotonic()))
        if text is None:
            break
        message = json.loads(text)
        if "inbox" in message:
            return message["inbox"]
    raise AssertionError("no list arrived")


def test_the_list_and_opening_an_item(world):
    live, site, first, second, bob = world
    assert first.inbox() == []
    ask(live, site, login_hint="alice", binding_message="Call 1234")
    [item] = first.inbox()
    assert item == second.inbox()[0]
    assert set(item) == {
        "id", "status", "client", "binding_message", "scopes", "created_at", "expires_at",
        "scanned_by",
    }  # fmt: skip
    assert item["client"] == {"client_id": site[0], "name": "Call centre", "logo_uri": None}
    assert item["status"] == "pending" and item["scanned_by"] is None
    assert [s["name"] for s in item["scopes"]] == ["openid", "email"]
    assert all(s["description"] for s in item["scopes"])
    assert bob.inbox() == []  # another user's phone sees nothing of it

    with pytest.raises(PhoneApiError) as refused:
        bob.open_request(item["id"])
    assert (refused.value.status, refused.value.error) == (410, "expired")
    view = first.open_request(item["id"])["login_request"]
    assert view["binding_message"] == "Call 1234" and view["status"] == "scanned"
    assert first.open_request(item["id"])["login_request"]["id"] == item["id"]  # a retry
    assert first.inbox()[0]["scanned_by"] == "this_phone"
    assert second.inbox()[0]["scanned_by"] == "another_phone"
    with pytest.raises(PhoneApiError) as taken:
        second.open_request(item["id"])
    assert (taken.value.status, taken.value.error) == (409, "already_used")
    first.deny(item["id"])
    assert first.inbox() == second.inbox() == []
    with pytest.raises(PhoneApiError) as gone:
        first.open_request("x" * 43)
    assert (gone.value.status, gone.value.error) == (410, "expired")


def test_a_qr_sign_in_is_not_in_the_inbox(world):
    live, _, first, _, _ = world
    client_id, secret = add_client(live.app)
    page = Browser(live.url).open(RelyingParty(live.url, client_id, secret).authorize_url())
    request_id = page.qr_url.rsplit("/", 1)[1]
    assert first.inbox() == []
    with pytest.raises(PhoneApiError) as refused:
        first.open_request(request_id)
    assert (refused.value.status, refused.value.error) == (410, "expired")


def test_the_socket_reaches_every_phone_and_a_decision_leaves_them_all(world):
    live, site, first, second, bob = world
    one, two, other = first.inbox_socket(), second.inbox_socket(), bob.inbox_socket()
    try:
        assert one.subprotocol == INBOX_SUBPROTOCOL
        assert next_list(one) == next_list(two) == next_list(other) == []
        ask(live, site, login_hint="alice", binding_message="Desk 7")
        [item] = next_list(one)
        assert next_list(two) == [item]
        assert item["binding_message"] == "Desk 7" and item["status"] == "pending"
        first.open_request(item["id"])
        assert next_list(one)[0]["scanned_by"] == "this_phone"
        assert next_list(two)[0]["scanned_by"] == "another_phone"
        first.approve(item["id"])
        assert next_list(one) == next_list(two) == []
        assert other.receive(timeout=0.5) in (None, '{"heartbeat":true}')  # bob heard nothing
    finally:
        for ws in (one, two, other):
            ws.close()


def test_another_idp_on_the_same_redis_wakes_no_socket_here(world, backend, tmp_path, monkeypatch):
    """User ids are row numbers: another IdP sharing the Redis server has an "alice" of the
    same id, whose inbox news must not wake this IdP's sockets (the channel names the
    issuer): each wake-up is a database read, on every socket of that user."""
    import contextlib
    from types import SimpleNamespace

    from idp.mobile.inbox import views as inbox_views
    from support import (
        dispose_app,
        listening_socket,
        make_app,
        postgres_database,
        serve_in_thread,
        sqlite_database,
    )

    live, _, first, _, _ = world
    with contextlib.ExitStack() as stack:
        if backend:
            url = stack.enter_context(postgres_database(migrated=True))
        else:
            url = sqlite_database(tmp_path / "other" / "idp.sqlite3")
        config = backend | {"IDP_DATABASE_URL": url}
        listener = listening_socket()
        other = SimpleNamespace(url=f"http://127.0.0.1:{listener.getsockname()[1]}")
        other_app = make_app(tmp_path / "other", issuer=other.url, **config)
        server, thread = serve_in_thread(listener, other_app)
        stack.callback(dispose_app, other_app)
        stack.callback(thread.join, 5)
        stack.callback(server.shutdown)
        add_user(other_app, "alice")  # the same row number as this IdP's alice
        with other_app.app_context(), db.unit_of_work():
            client, secret = create_client("Elsewhere", ["https://rp.example/cb"], ciba_mode="poll")
            elsewhere = (client.client_id, secret)
        ws = first.inbox_socket()
        try:
            assert next_list(ws) == []
            reads: list[int] = []
            real = inbox_views.inbox_items
            monkeypatch.setattr(
                inbox_views, "inbox_items", lambda *a, **k: reads.append(1) or real(*a, **k)
            )
            ask(other, elsewhere, login_hint="alice")
            time.sleep(1)
            assert reads == []  # this IdP's socket was not woken
            ask(live, world[1], login_hint="alice")  # while its own news does wake it
            assert len(next_list(ws)) == 1 and reads
        finally:
            ws.close()


def test_a_reconnect_gets_the_list_first(world):
    live, site, first, _, _ = world
    ws = first.inbox_socket()
    assert next_list(ws) == []
    ws.close()
    ask(live, site, login_hint="alice")  # while no socket is open
    again = first.inbox_socket()
    try:
        [item] = next_list(again)
        assert item["status"] == "pending"
    finally:
        again.close()


@pytest.mark.idp_config(IDP_CIBA_TTL=10)
def test_an_expired_request_leaves_the_list(world):
    live, site, first, _, _ = world
    ws = first.inbox_socket()
    try:
        assert next_list(ws) == []
        ask(live, site, login_hint="alice", requested_expiry="1")
        assert len(next_list(ws)) == 1
        assert next_list(ws, timeout=15) == []  # once its lifetime is over
    finally:
        ws.close()


def socket_with(live, protocols: list[str]) -> WebSocketClient:
    url = "ws" + live.url.removeprefix("http") + API_PREFIX + "/inbox/ws"
    return WebSocketClient(url, subprotocols=protocols, receive_bytes=1)  # see inbox_socket


def test_the_socket_needs_a_fresh_proof_of_an_enrolled_phone(world):
    live, _, first, _, _ = world
    url = f"{live.url}{API_PREFIX}/inbox/ws"
    profile = first.profile
    proof = make_proof(profile.key, "GET", url, b"", kid=profile.device_id)
    wrong_url = make_proof(profile.key, "GET", url + "x", b"", kid=profile.device_id)
    for protocols in ([INBOX_SUBPROTOCOL], [proof], [INBOX_SUBPROTOCOL, wrong_url]):
        with pytest.raises(ConnectionError) as refused:
            socket_with(live, protocols)
        assert refused.value.status_code == 401
    ws = socket_with(live, [INBOX_SUBPROTOCOL, proof])
    assert next_list(ws) == []
    ws.close()
    with pytest.raises(ConnectionError) as replayed:
        socket_with(live, [INBOX_SUBPROTOCOL, proof])  # a proof is used once
    assert replayed.value.status_code == 401
    assert requests.get(url, timeout=10).status_code == 400  # not a WebSocket handshake


def test_a_revoked_phone_loses_its_socket(world):
    live, _, first, second, _ = world
    ws = second.inbox_socket()
    assert next_list(ws) == []
    first.revoke(second.profile.device_id)
    ask(live, world[1], login_hint="alice")  # a change makes the socket look again
    with pytest.raises(ConnectionClosed) as closed:
        for _ in range(20):
            ws.receive(timeout=1)
    assert (closed.value.reason, closed.value.message) == (1008, "this device was revoked")


def test_the_phone_sends_nothing_on_the_socket(world):
    _, _, first, _, _ = world
    ws = first.inbox_socket()
    assert next_list(ws) == []
    ws.send("hello")
    with pytest.raises(ConnectionClosed) as closed:
        for _ in range(20):
            ws.receive(timeout=1)
    assert closed.value.reason == 1008  # policy violation


def test_a_phone_without_a_profile_cannot_list(tmp_path, live_server):
    phone = PhoneClient(tmp_path / "nothing")
    with pytest.raises(Exception, match=r"profile|enrolled|No such"):
        phone.inbox()


def test_idp_phone_lists_and_decides_the_inbox(world, capsys, monkeypatch):
    from idp_phone.cli import _watch, main

    live, site, first, second, _ = world
    profile = ["--profile", str(first.profile_dir)]
    assert main([*profile, "requests"]) == 0
    assert "No request is waiting." in capsys.readouterr().out
    ask(live, site, login_hint="alice", binding_message="Desk 7")
    ask(live, site, login_hint="nobody")  # a hint naming nobody: in no inbox
    assert main([*profile, "requests"]) == 0
    listing = capsys.readouterr().out
    [item] = first.inbox()
    assert item["id"] in listing and "Call centre" in listing and '"Desk 7"' in listing
    assert main([*profile, "requests", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"inbox": [item]}

    monkeypatch.setattr("sys.stdin.isatty", lambda: False, raising=False)
    assert not item["id"].startswith("-")  # so it is an argument, never an option
    assert main([*profile, "approve", item["id"]]) == 2  # cannot ask: --yes needed
    assert "--yes" in capsys.readouterr().err
    assert main([*profile, "approve", "--yes", item["id"]]) == 0
    shown = capsys.readouterr().out
    assert "Message:       Desk 7" in shown and "email" in shown and "Approved" in shown
    assert first.inbox() == []
    assert main([*profile, "deny", "--yes", "--", item["id"]]) == 1  # decided already
    assert "error: already_used" in capsys.readouterr().err

    # --watch prints the list it is sent, then again after each change.
    class Args:
        json = True

    sleeps: list[float] = []

    def stop(seconds: float) -> None:
        sleeps.append(seconds)
        raise KeyboardInterrupt

    watcher = PhoneClient(second.profile_dir)
    real_socket = watcher.inbox_socket

    def socket_that_ends():
        ws = real_socket()
        original = ws.receive
        calls = {"n": 0}

        def receive(timeout=None):
            calls["n"] += 1
            if calls["n"] == 2:
                ask(live, site, login_hint="alice")
            if calls["n"] <= 2:
                return original(timeout=10)
            raise ConnectionClosed(1000, "bye")

        ws.receive = receive
        return ws

    watcher.inbox_socket = socket_that_ends
    with pytest.raises(KeyboardInterrupt):
        _watch(Args(), watcher, sleep=stop)
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines[0] == {"inbox": []}
    assert len(lines[-1]["inbox"]) == 1
    assert sleeps == [1.0]


def test_the_web_app_speaks_of_the_inbox_in_both_languages(world):
    import html
    import re

    live = world[0]

    def page(language: str) -> tuple[str, dict[str, str]]:
        text = requests.get(
            f"{live.url}/app/", headers={"Accept-Language": language}, timeout=10
        ).text
        state = re.search(r'data-state="([^"]*)"', text)
        assert state
        return text, json.loads(html.unescape(state.group(1)))["messages"]

    english, english_messages = page("en")
    chinese, chinese_messages = page("zh-CN")
    assert '<h2 id="inbox-title">Waiting for you</h2>' in english
    assert '<h2 id="inbox-title">等你处理</h2>' in chinese
    assert english_messages["inbox_item"] == "{client} asks you to approve"
    assert chinese_messages["inbox_item"] == "{client} 请你批准"
    assert chinese_messages["binding_label"] != english_messages["binding_label"]


def test_a_database_away_past_an_items_expiry_is_not_asked_in_a_tight_loop(world, monkeypatch):
    """An item's lifetime ends while the database is away: the socket reads again at its
    heartbeat, not over and over (every socket of every phone would hammer the database
    the whole time it is down); once it is back, the list drops the item."""
    from sqlalchemy.exc import OperationalError

    from cluster import wait_until

    live, site, first, _, _ = world
    ws = first.inbox_socket()
    try:
        assert next_list(ws) == []
        ask(live, site, login_hint="alice", requested_expiry="1")
        assert len(next_list(ws)) == 1
        failed: list[int] = []

        def unreachable(device, now=None):
            failed.append(1)
            raise OperationalError("SELECT login_requests", {}, Exception("connection refused"))

        with monkeypatch.context() as away:
            away.setattr("idp.mobile.inbox.views.inbox_items", unreachable)
            wait_until(lambda: failed, 10, "a re-read failing")  # the item's expiry
            time.sleep(1.5)  # well within the heartbeat (25 s)
            assert len(failed) == 1  # no more re-reads until the heartbeat
        assert next_list(ws, timeout=40) == []  # the heartbeat's re-read
    finally:
        ws.close()
