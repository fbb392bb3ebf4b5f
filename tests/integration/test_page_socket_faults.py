"""The waiting page's socket under abuse and faults: caps on open sockets, a page that
leaves or sends, and a change whose message was never published."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
from simple_websocket import ConnectionClosed
from simple_websocket import ConnectionError as HandshakeRefused
from sqlalchemy.exc import OperationalError

from cluster import wait_until
from idp import db
from idp.db import utcnow
from idp.qrlogin.models import LoginRequest
from support import Browser, close_socket, next_status, redirect_params


def closed_with(ws, within: float = 5) -> int:
    """Wait (bounded) for the server to close ``ws``; its close code."""
    deadline = time.monotonic() + within
    with pytest.raises(ConnectionClosed):
        while time.monotonic() < deadline:
            ws.receive(timeout=0.2)
    return ws.close_reason


@pytest.mark.idp_config(IDP_WS_MAX_PER_REQUEST=2)
def test_sockets_per_sign_in_request_are_capped(world):
    live, rp, browser, _ = world
    page = browser.open(rp.authorize_url())
    sockets = [browser.socket(page), browser.socket(page)]
    for ws in sockets:
        assert next_status(ws) == "pending"
    with pytest.raises(HandshakeRefused) as refused:
        browser.socket(page)
    assert refused.value.status_code == 429
    # Another sign-in request of the same browser has slots of its own.
    other = browser.open(rp.authorize_url())
    assert next_status(browser.socket(other)) == "pending"
    assert live.app.extensions["idp.socket_slots"].held() == 3


@pytest.mark.idp_config(IDP_WS_MAX_PER_IP=2)
def test_sockets_per_ip_address_are_capped(world):
    live, rp, _, _ = world
    for _ in range(2):
        browser = Browser(live.url)
        assert next_status(browser.socket(browser.open(rp.authorize_url()))) == "pending"
    browser = Browser(live.url)
    page = browser.open(rp.authorize_url())
    with pytest.raises(HandshakeRefused) as refused:
        browser.socket(page)
    assert refused.value.status_code == 429


def _close_frame(ws) -> None:
    ws.close()


def _drop_connection(ws) -> None:
    ws.drop()


@pytest.mark.idp_config(IDP_WS_MAX_PER_REQUEST=1, IDP_WS_HEARTBEAT=25)
@pytest.mark.parametrize("leave", [_close_frame, _drop_connection], ids=["close", "drop"])
def test_a_page_that_leaves_frees_its_slot_at_once(world, leave):
    """Not at the next heartbeat: the socket's reader wakes the handler."""
    live, rp, browser, _ = world
    broker = live.app.extensions["idp.broker"]
    slots = live.app.extensions["idp.socket_slots"]
    page = browser.open(rp.authorize_url())
    ws = browser.socket(page)
    assert next_status(ws) == "pending"
    assert (broker.subscriptions(), slots.held()) == (1, 1)
    leave(ws)
    wait_until(lambda: (broker.subscriptions(), slots.held()) == (0, 0), 10, "the slot freed")
    again = browser.socket(page)
    assert next_status(again) == "pending"


@pytest.mark.idp_config(IDP_WS_HEARTBEAT=25)
def test_a_page_socket_that_sends_one_frame_is_closed_at_once(world):
    _, rp, browser, _ = world
    page = browser.open(rp.authorize_url())
    ws = browser.socket(page)
    assert next_status(ws) == "pending"
    ws.send("x")
    assert closed_with(ws, within=10) == 1008  # policy violation, long before a heartbeat


@pytest.mark.idp_config(IDP_WS_HEARTBEAT=1, IDP_LOGIN_REQUEST_TTL=60)
def test_an_approval_never_published_reaches_the_page_at_its_next_heartbeat(world, monkeypatch):
    """The crash window between commit and publish (or a broker that lost the message):
    the heartbeat re-reads the state, the page learns of the approval and completes."""
    _, rp, browser, phone = world
    page = browser.open(rp.authorize_url())
    ws = browser.socket(page)
    assert next_status(ws) == "pending"
    phone.scan(page.qr_url)
    assert next_status(ws) == "scanned"
    monkeypatch.setattr("idp.qrlogin.lifecycle.publish", lambda *args, **kwargs: None)
    phone.approve(page.id)  # committed, never published
    assert next_status(ws, timeout=10) == "approved"  # long before the request expires
    close_socket(ws)
    params = redirect_params(browser.complete(page))
    assert params["state"] == rp.state
    assert rp.exchange(params["code"]).status_code == 200


@pytest.mark.idp_config(IDP_CODE_TTL=1, IDP_WS_HEARTBEAT=30)
def test_an_approval_learned_at_the_next_heartbeat_can_still_be_completed(world):
    """The approval grace covers two heartbeats, however short the code's lifetime: a page
    that learned late (its message lost), past the request's lifetime, still completes."""
    live, rp, browser, phone = world
    page = browser.open(rp.authorize_url())
    phone.scan(page.qr_url)
    phone.approve(page.id)
    with live.app.app_context():  # approved 40 s ago (more than one heartbeat) and expired since
        login = db.session.get(LoginRequest, page.id)
        login.decided_at = utcnow() - timedelta(seconds=40)
        login.expires_at = utcnow() - timedelta(seconds=10)
        db.session.commit()
    params = redirect_params(browser.complete(page))
    assert rp.exchange(params["code"]).status_code == 200


@pytest.mark.idp_config(IDP_CODE_TTL=1, IDP_WS_HEARTBEAT=30)
def test_an_approval_past_its_grace_is_refused(world):
    live, rp, browser, phone = world
    page = browser.open(rp.authorize_url())
    phone.scan(page.qr_url)
    phone.approve(page.id)
    with live.app.app_context():  # two heartbeats (60 s) and more since the approval
        login = db.session.get(LoginRequest, page.id)
        login.decided_at = utcnow() - timedelta(seconds=61)
        login.expires_at = utcnow() - timedelta(seconds=10)
        db.session.commit()
    late = browser.complete(page)
    assert late.status_code == 410
    assert "expired" in late.text


@pytest.mark.idp_config(IDP_WS_HEARTBEAT=1)
def test_a_heartbeat_that_cannot_reach_the_database_keeps_the_socket(world, monkeypatch):
    """The database is away at a heartbeat's re-read: the page keeps its socket and its
    heartbeats, and hears the next change once the database is back."""
    _, rp, browser, phone = world
    page = browser.open(rp.authorize_url())
    ws = browser.socket(page)
    assert next_status(ws) == "pending"
    failed: list[str] = []

    def unreachable(request_id: str):
        failed.append(request_id)
        raise OperationalError("SELECT status", {}, Exception("connection refused"))

    with monkeypatch.context() as away:
        away.setattr("idp.qrlogin.services.peek_status", unreachable)
        wait_until(lambda: len(failed) >= 2, 10, "two heartbeats failing to read")
    assert json.loads(ws.receive(timeout=5)) == {"heartbeat": True}
    phone.scan(page.qr_url)
    assert next_status(ws) == "scanned"


@pytest.mark.idp_config(IDP_WS_HEARTBEAT=1, IDP_LOGIN_REQUEST_TTL=2)
def test_a_socket_whose_expiry_cannot_be_read_asks_the_page_to_come_back(world, monkeypatch):
    """Past the request's lifetime with the database away: closed with 1013 (try again
    later), so that the page reconnects with backoff instead of waiting on a dead row."""
    _, rp, browser, _ = world
    page = browser.open(rp.authorize_url())
    ws = browser.socket(page)
    assert next_status(ws) == "pending"

    def unreachable(request_id: str):
        raise OperationalError("SELECT status", {}, Exception("connection refused"))

    monkeypatch.setattr("idp.qrlogin.services.peek_status", unreachable)
    assert closed_with(ws, within=10) == 1013
