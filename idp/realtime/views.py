"""The WebSocket a waiting authorize page listens on: ``/ws/login/<id>``.

Only the browser holding the request's binding cookie, on our own origin, may
connect; the check runs before the WebSocket handshake, so others get a 403.
On connect the page first receives the current state (a missed message never
loses a login), then every change, pushed; it never polls.

Each socket is written by its handler thread alone (Flask-Sock frames sent from
two threads at once would interleave): broker messages reach the handler
through its subscription's queue, and so does the socket's own news (the peer
closed, or sent a frame), so that the handler learns of it at once.

A request may hold a few sockets, an IP address more (``IDP_WS_MAX_PER_REQUEST``,
``IDP_WS_MAX_PER_IP``, per process); past that the handshake is refused with 429.
Each heartbeat re-reads the request's state (one primary-key read): a change
whose message was lost (the broker down, or a crash between commit and publish)
reaches the page within a heartbeat.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime

from flask import Blueprint, Flask, current_app, g, request
from simple_websocket import Server
from sqlalchemy.exc import InterfaceError, OperationalError
from wsproto.frame_protocol import CloseReason

from idp import db, web
from idp.db import utcnow
from idp.ops import metrics
from idp.qrlogin import services as logins
from idp.qrlogin.lifecycle import SETTLED
from idp.qrlogin.models import LoginRequest, Status
from idp.realtime import sockets
from idp.realtime.broker import RECHECK, RESTART
from idp.realtime.sockets import SOCKET_NEWS, peer_sent, sock, take_slot

bp = Blueprint("realtime", __name__)
log = logging.getLogger(__name__)

#: After one of these the page moves on and the socket closes.
FINAL = SETTLED  # what a waiting page waits for
#: What of a broker message the page gets: the status, the number to match, a denial's reason.
SENT = ("status", "number", "reason")


@bp.before_request
def _authorize_socket() -> None:
    if request.endpoint != "realtime.login_socket":
        return
    web.check_same_origin()
    request_id = (request.view_args or {}).get("request_id", "")
    # Subscribe first, then read the state (one read, which also checks the cookie): no
    # change can fall in between. teardown closes the subscription if the socket never opens.
    g.subscription = current_app.extensions["idp.broker"].subscribe(logins.channel(request_id))
    db.reads_only()  # one read (an expiry is one UPDATE of its own)
    g.login = logins.find_for_browser(request_id, web.binding_secret())
    _take_slot(request_id)
    g.state = _current_state(request_id, g.login)
    # The page's messages are a few bytes: per-message compression would only keep a
    # zlib compressor (hundreds of KB) for each waiting page. Decline the offer.
    request.environ.pop("HTTP_SEC_WEBSOCKET_EXTENSIONS", None)


def _take_slot(request_id: str) -> None:
    """Count this socket against its request and its IP address, or refuse it (429)."""
    g.socket_slot = take_slot(request_id, too_many="too many open sockets for this sign-in")


@bp.teardown_request
def _close_subscription(_exc: BaseException | None) -> None:
    if subscription := g.pop("subscription", None):
        subscription.close()
    if slot := g.pop("socket_slot", None):  # the socket is closed: its slot is free
        current_app.extensions["idp.socket_slots"].release(*slot)


@sock.route("/ws/login/<request_id>", bp=bp)
def login_socket(ws: Server, request_id: str) -> None:
    """Send the current state, then each change, until a final one."""
    login: LoginRequest = g.login
    state: dict[str, str] = g.state
    status = state["status"]
    subscription = g.subscription
    heartbeat = current_app.config["IDP_WS_HEARTBEAT"]
    metrics.OPEN_WEBSOCKETS.inc()
    try:
        ws.send(json.dumps(state))
        while status not in FINAL and ws.connected:
            message = subscription.get(timeout=_seconds_until(login.expires_at, heartbeat))
            if message == SOCKET_NEWS:
                if peer_sent(ws):
                    ws.close(reason=CloseReason.POLICY_VIOLATION, message="the page sends nothing")
                    return
                continue
            if message == RESTART:  # this worker is stopping: the page reconnects elsewhere
                ws.close(reason=CloseReason.SERVICE_RESTART, message="reconnect")
                return
            if message is None or message == RECHECK:
                # A heartbeat, the expiry, or a broker that may have lost messages: the
                # database has the truth (a message may never have been published).
                reread = _reread_state(request_id)
                if reread is None and utcnow() >= login.expires_at:
                    # The expiry cannot be recorded now: the page reconnects (with backoff)
                    # and reads the state once the database is back.
                    ws.close(reason=CloseReason.TRY_AGAIN_LATER, message="try again later")
                    return
                state = reread or {"status": status}
            else:
                state = {k: v for k, v in message.items() if k in SENT}
                state.setdefault("status", status)
            if state["status"] != status:
                status = state["status"]
                ws.send(json.dumps(state))
                if message and status in (Status.APPROVED, Status.DENIED) and "at" in message:
                    metrics.APPROVE_TO_NOTIFY.observe(max(0.0, time.time() - message["at"]))
            elif message is None:
                # Keeps proxies from dropping an idle socket and notices a dead peer.
                ws.send('{"heartbeat":true}')
    finally:
        metrics.OPEN_WEBSOCKETS.dec()
        subscription.close()


def _reread_state(request_id: str) -> dict[str, str] | None:
    """:func:`_current_state`, or ``None`` while the database is away: until the request
    expires the socket stays open, and the next heartbeat reads again."""
    try:
        return _current_state(request_id)
    except (OperationalError, InterfaceError) as error:
        log.debug("page socket: database unavailable, trying again later: %s", error)
        db.session.remove()
        return None


def _current_state(request_id: str, login: LoginRequest | None = None) -> dict[str, str]:
    """The state in the database (``login``: just read), expiring the request if its time
    has passed: ``{"status": ...}``, with the number to match once scanned, if matching
    is on, and a denial's ``reason``. Ends the transaction: the socket holds none while
    it waits."""
    if login is None:  # every heartbeat of every page: three columns by primary key
        status, number, expired = logins.peek_status(request_id)
    else:
        status, number, expired = login.status, login.match_number, login.is_expired()
    if expired and status != Status.EXPIRED:
        with db.unit_of_work():  # this step's own transaction: the expiry is published after
            logins.expire_login(request_id)
        status, number, _ = logins.peek_status(request_id)
    state = {"status": str(status)}
    if status == Status.SCANNED and number:
        state["number"] = number
    if status == Status.DENIED:  # once per page: the denial is final
        reason = login.denied_reason if login is not None else logins.denial_reason(request_id)
        if reason:
            state["reason"] = str(reason)
    db.session.close()
    return state


def _seconds_until(moment: datetime, cap: float) -> float:
    return max(0.05, min(cap, (moment - utcnow()).total_seconds() + 0.05))


def init_app(app: Flask) -> None:
    """Set up the sockets (``idp.realtime.sockets``)."""
    sockets.init_app(app)
