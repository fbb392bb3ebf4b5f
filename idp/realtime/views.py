"""The WebSocket a waiting authorize page listens on: ``/ws/login/<id>``.

Only the browser holding the request's binding cookie, on our own origin, may
connect; the check runs before the WebSocket handshake, so others get a 403.
On connect the page first receives the current state (a missed message never
loses a login), then every change, pushed; it never polls.

Each socket is written by its handler thread alone (Flask-Sock frames sent from
two threads at once would interleave): broker messages reach the handler
through its subscription's queue.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

from flask import Blueprint, Flask, current_app, g, request
from flask_sock import Sock
from simple_websocket import Server
from wsproto.frame_protocol import CloseReason

from idp import db
from idp.db import utcnow
from idp.ops import metrics
from idp.qrlogin import services as logins
from idp.qrlogin.models import LoginRequest, Status
from idp.qrlogin.views import binding_secret, check_same_origin
from idp.realtime.broker import RECHECK, RESTART

bp = Blueprint("realtime", __name__)
sock = Sock()

#: After one of these the page moves on and the socket closes.
FINAL = {Status.APPROVED, Status.DENIED, Status.EXPIRED, Status.COMPLETED}


@bp.before_request
def _authorize_socket() -> None:
    if request.endpoint != "realtime.login_socket":
        return
    check_same_origin()
    request_id = (request.view_args or {}).get("request_id", "")
    # Subscribe first, then read the state (one read, which also checks the cookie): no
    # change can fall in between. teardown closes the subscription if the socket never opens.
    g.subscription = current_app.extensions["idp.broker"].subscribe(logins.channel(request_id))
    db.reads_only()  # one read (an expiry is one UPDATE of its own)
    g.login = logins.find_for_browser(request_id, binding_secret())
    g.state = _current_state(request_id, g.login)
    # The page's messages are a few bytes: per-message compression would only keep a
    # zlib compressor (hundreds of KB) for each waiting page. Decline the offer.
    request.environ.pop("HTTP_SEC_WEBSOCKET_EXTENSIONS", None)


@bp.teardown_request
def _close_subscription(_exc: BaseException | None) -> None:
    if subscription := g.pop("subscription", None):
        subscription.close()


class _DropInput(list[Any]):
    """Stands in for a socket's input buffer: the page never sends, so nothing is kept
    (a client streaming messages would otherwise grow the server's memory)."""

    received = False

    def append(self, _message: Any) -> None:
        self.received = True


@sock.route("/ws/login/<request_id>", bp=bp)
def login_socket(ws: Server, request_id: str) -> None:
    """Send the current state, then each change, until a final one."""
    login: LoginRequest = g.login
    state: dict[str, str] = g.state
    status = state["status"]
    subscription = g.subscription
    inbox = ws.input_buffer = _DropInput()
    heartbeat = current_app.config["IDP_WS_HEARTBEAT"]
    metrics.OPEN_WEBSOCKETS.inc()
    try:
        ws.send(json.dumps(state))
        while status not in FINAL and ws.connected:
            message = subscription.get(timeout=_seconds_until(login.expires_at, heartbeat))
            if inbox.received:
                ws.close(reason=CloseReason.POLICY_VIOLATION, message="the page sends nothing")
                return
            if message == RESTART:  # this worker is stopping: the page reconnects elsewhere
                ws.close(reason=CloseReason.SERVICE_RESTART, message="reconnect")
                return
            if message is None and utcnow() < login.expires_at:
                # Keeps proxies from dropping an idle socket and notices a dead peer.
                ws.send('{"heartbeat":true}')
                continue
            if message is None or message == RECHECK:
                # At expiry, or when the broker may have lost a message (it
                # reconnected): the database has the truth.
                state = _current_state(request_id)
            else:
                state = {k: v for k, v in message.items() if k in ("status", "number")}
                state.setdefault("status", status)
            if state["status"] != status:
                status = state["status"]
                ws.send(json.dumps(state))
                if message and status in (Status.APPROVED, Status.DENIED) and "at" in message:
                    metrics.APPROVE_TO_NOTIFY.observe(max(0.0, time.time() - message["at"]))
    finally:
        metrics.OPEN_WEBSOCKETS.dec()
        subscription.close()


def _current_state(request_id: str, login: LoginRequest | None = None) -> dict[str, str]:
    """The state in the database (``login``: just read), expiring the request if its time
    has passed: ``{"status": ...}``, with the number to match once scanned, if matching
    is on. Ends the transaction: the socket holds none while it waits."""
    login = login or logins.find_login_request(request_id)
    status = login.status
    if login.is_expired() and status != Status.EXPIRED:
        logins.expire_login(request_id)
        status = logins.find_login_request(request_id).status
    state = {"status": str(status)}
    if status == Status.SCANNED and login.match_number:
        state["number"] = login.match_number
    db.session.close()
    return state


def _seconds_until(moment: datetime, cap: float) -> float:
    return max(0.05, min(cap, (moment - utcnow()).total_seconds() + 0.05))


class _ReaderGreenlet:
    """Runs a socket's reader loop as a bare greenlet (gevent workers only): a
    ``threading.Thread`` under gevent adds its own bookkeeping (a started event, a lock,
    an entry in the thread registry) to every waiting page."""

    def __init__(self, target: Any) -> None:
        self._target = target
        self.name = "ws-reader"

    def start(self) -> None:
        import gevent

        gevent.spawn(self._target)


def _gevent_worker() -> bool:
    import sys

    monkey = sys.modules.get("gevent.monkey")
    return bool(monkey and monkey.is_module_patched("threading"))


def init_app(app: Flask) -> None:
    """Set up Flask-Sock; incoming frames are tiny, so cap them."""
    options = app.config.setdefault("SOCK_SERVER_OPTIONS", {"max_message_size": 1024})
    if _gevent_worker():
        options.setdefault("thread_class", _ReaderGreenlet)
    sock.init_app(app)
