"""The phone's inbox: the backchannel requests (OpenID CIBA, ``idp.oauth.ciba``) waiting
for this phone's user. They have no QR code to scan, so the phone hears of them here.

- ``GET /api/mobile/v1/inbox`` lists them (open ones only: pending, or scanned by one of
  the user's phones, within their lifetime), oldest first.
- ``POST /api/mobile/v1/inbox/<id>/open`` takes one up (the scan of a QR sign-in:
  ``pending -> scanned`` by this phone) and answers what the phone shows before it
  offers Approve; then the usual ``/login-requests/<id>/approve`` or ``deny``.
- ``/api/mobile/v1/inbox/ws``, a WebSocket, sends the list at once and again each time it
  changes (a request made, taken up, decided, expired), until the phone closes it. A
  browser cannot set a header on a WebSocket, so the ``Device-Proof`` (for ``GET`` of the
  socket's ``http(s)`` URL, with an empty body) comes as the second value of
  ``Sec-WebSocket-Protocol``, after ``idp-inbox``, which the server selects. A reconnect
  gets the whole list first, so nothing is lost while the socket was down.

Every change of a backchannel request is published on the broker channel
``inbox:<user_id>`` once committed (a ``lifecycle.listen`` callback here; ``POST
/bc-authorize`` announces new ones); the socket then reads the list again (the
database is the truth, a message only says "look again"), and at every heartbeat too.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from flask import Flask, Response, current_app, g, jsonify, request
from simple_websocket import Server
from sqlalchemy import select
from sqlalchemy.exc import InterfaceError, OperationalError
from wsproto.frame_protocol import CloseReason

from idp import db, limits
from idp.db import utcnow
from idp.errors import Expired, InvalidProof, TooManyRequests, UnknownRequest
from idp.mobile.models import Device
from idp.mobile.proof import check_proof, record_proof
from idp.mobile.views import _iso, _json_object, _verified_device, bp, login_request_view
from idp.oauth.models import SCOPE_DESCRIPTIONS
from idp.qrlogin import lifecycle
from idp.qrlogin import services as logins
from idp.qrlogin.lifecycle import OPEN, Kind
from idp.qrlogin.models import LoginRequest
from idp.realtime.broker import RESTART
from idp.realtime.views import SOCKET_NEWS, _peer_sent, sock
from idp.web import Caller

log = logging.getLogger(__name__)

#: The WebSocket subprotocol the inbox socket speaks (the proof rides beside it).
SUBPROTOCOL = "idp-inbox"
GONE = "this request is expired or unknown: it is no longer in your inbox"


def channel(user_id: int | None) -> str:
    """The broker channel of one user's inbox (``inbox:-`` for nobody's)."""
    return f"inbox:{user_id if user_id is not None else '-'}"


def announce(user_id: int | None) -> None:
    """Tell the user's open inbox sockets (on any worker) to read the list again. Call it
    once the change is committed. ``None`` (a hint naming nobody) publishes all the
    same, on a channel nobody hears, so that it costs what a known user's costs."""
    current_app.extensions["idp.broker"].publish(channel(user_id), {"inbox": "changed"})


def _on_transition(
    request_id: str, kind: str, user_id: int | None, status: str, extra: dict[str, str]
) -> None:
    """``lifecycle.listen``: a backchannel request changed (after commit)."""
    if kind == Kind.BACKCHANNEL and user_id is not None:
        announce(user_id)


def inbox_items(device: Device, now: datetime | None = None) -> list[dict[str, Any]]:
    """The open backchannel requests of the device's user, oldest first, as the phone
    lists them. Reads only."""
    now = now or utcnow()
    rows = db.session.scalars(
        select(LoginRequest)
        .where(
            LoginRequest.kind == Kind.BACKCHANNEL,
            LoginRequest.user_id == device.user_id,
            LoginRequest.status.in_(OPEN),
            LoginRequest.expires_at > now,
        )
        .order_by(LoginRequest.created_at, LoginRequest.id)
        .limit(50)
    ).all()
    return [_item(login, device) for login in rows]


def _item(login: LoginRequest, device: Device) -> dict[str, Any]:
    client = login.client
    scopes = client.get_allowed_scope(login.params.get("scope", "")).split()
    scanned_by = None
    if login.device_pk is not None:
        scanned_by = "this_phone" if login.device_pk == device.id else "another_phone"
    return {
        "id": login.id,
        "status": login.status,
        "client": {"client_id": client.client_id, "name": client.name, "logo_uri": client.logo_uri},
        "binding_message": login.binding_message,
        "scopes": [
            {"name": s, "description": str(SCOPE_DESCRIPTIONS.get(s, s))}
            for s in dict.fromkeys(scopes)
        ],
        "created_at": _iso(login.created_at),
        "expires_at": _iso(login.expires_at),
        # Which phone took it up (opened it): none yet, this one, or another of the user's.
        "scanned_by": scanned_by,
    }


def _gone_is_gone(view: Callable[..., Response]) -> Callable[..., Response]:
    """Unknown, expired and other users' requests get one answer (410 ``expired``)."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Response:
        try:
            return view(*args, **kwargs)
        except (UnknownRequest, Expired):
            raise Expired(GONE) from None

    return wrapper


@bp.get("/inbox")
@limits.per_ip("IDP_LIMIT_PHONE_IP", scope="phone")
def inbox() -> Response:
    """The backchannel requests waiting for this phone's user."""
    device = _verified_device()
    return jsonify(inbox=inbox_items(device))


@bp.post("/inbox/<request_id>/open")
@limits.per_ip("IDP_LIMIT_PHONE_IP", scope="phone")
@_gone_is_gone
def open_item(request_id: str) -> Response:
    """Take one request of the inbox up (as a scan): what to show before Approve."""
    device = _verified_device(action=True)
    _json_object()
    login = logins.find_login_request(request_id)
    if login.kind != Kind.BACKCHANNEL or login.user_id != device.user_id:
        raise UnknownRequest()  # a QR sign-in, or another user's: not in this inbox
    caller = Caller.from_request()
    login = logins.scan_login(request_id, device, caller=caller)
    view = login_request_view(login, phone_ip=caller.ip, user_id=device.user_id)
    response = jsonify(login_request=view)
    db.session.commit()
    return response


# The socket ------------------------------------------------------------------------------


@bp.before_request
def _authorize_socket() -> None:
    """Before the handshake: the proof (from ``Sec-WebSocket-Protocol``), a slot, the
    subscription, then the list (no change can fall between those two)."""
    if request.endpoint != "mobile.inbox_socket":
        return
    device = _socket_device()
    _take_slot(device)
    g.subscription = current_app.extensions["idp.broker"].subscribe(channel(device.user_id))
    g.inbox_device_pk = device.id
    g.inbox_items = inbox_items(device)
    db.session.close()  # the socket holds no transaction while it waits
    # The messages are small: decline per-message compression (a zlib state per socket).
    request.environ.pop("HTTP_SEC_WEBSOCKET_EXTENSIONS", None)


def _socket_device() -> Device:
    """The device whose proof is the second ``Sec-WebSocket-Protocol`` value."""
    offered = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",")]
    others = [p for p in offered if p and p != SUBPROTOCOL]
    if SUBPROTOCOL not in offered or len(others) != 1:
        raise InvalidProof(
            f"offer the subprotocols '{SUBPROTOCOL}' and the Device-Proof (two values of"
            " Sec-WebSocket-Protocol)"
        )
    config = current_app.config
    proof = check_proof(
        others[0],
        method="GET",
        url=config["IDP_ISSUER"] + request.path,
        body=b"",
        max_age=config["IDP_PROOF_MAX_AGE"],
        enrollment=False,
    )
    record_proof(proof)
    db.session.commit()  # the proof is used once, whatever comes next
    assert proof.device is not None
    return proof.device


def _take_slot(device: Device) -> None:
    slots = current_app.extensions["idp.socket_slots"]
    key, ip = f"inbox:{device.device_id}", request.remote_addr or ""
    full = slots.acquire(key, ip)
    retry_after = current_app.config["IDP_WS_HEARTBEAT"]
    if full == "request":
        raise TooManyRequests("too many open inbox sockets for this phone", retry_after=retry_after)
    if full == "ip":
        raise TooManyRequests("too many open sockets from this address", retry_after=retry_after)
    g.inbox_slot = (key, ip)


@bp.teardown_request
def _close_socket(_exc: BaseException | None) -> None:
    if request.endpoint != "mobile.inbox_socket":
        return
    if subscription := g.pop("subscription", None):
        subscription.close()
    if slot := g.pop("inbox_slot", None):
        current_app.extensions["idp.socket_slots"].release(*slot)


@sock.route("/inbox/ws", bp=bp)
def inbox_socket(ws: Server) -> None:
    """Send the list, then again each time it changes, until the phone closes."""
    subscription = g.subscription
    device_pk: int = g.inbox_device_pk
    items: list[dict[str, Any]] = g.inbox_items
    heartbeat = current_app.config["IDP_WS_HEARTBEAT"]
    ws.send(json.dumps({"inbox": items}))
    while ws.connected:
        message = subscription.get(timeout=_wait(items, heartbeat))
        if message == SOCKET_NEWS:
            if _peer_sent(ws):
                ws.close(reason=CloseReason.POLICY_VIOLATION, message="the phone sends nothing")
                return
            continue
        if message == RESTART:  # this worker is stopping: the phone reconnects elsewhere
            ws.close(reason=CloseReason.SERVICE_RESTART, message="reconnect")
            return
        fresh = _reread(device_pk)
        if fresh is False:
            ws.close(reason=CloseReason.POLICY_VIOLATION, message="this device was revoked")
            return
        if isinstance(fresh, list) and fresh != items:
            items = fresh
            ws.send(json.dumps({"inbox": items}))
        elif message is None:
            ws.send('{"heartbeat":true}')  # keeps proxies from dropping an idle socket


def _wait(items: list[dict[str, Any]], heartbeat: float) -> float:
    """Seconds until the next heartbeat, or until the first item expires (it then leaves
    the list)."""
    now = utcnow()
    soonest = heartbeat
    for item in items:
        expires = datetime.fromisoformat(item["expires_at"].removesuffix("Z"))
        soonest = min(soonest, (expires - now).total_seconds() + 1.05)
    return max(0.05, soonest)


def _reread(device_pk: int) -> list[dict[str, Any]] | bool | None:
    """The list now; ``False`` if the device was revoked; ``None`` while the database is
    away (the next heartbeat reads again). Ends its transaction."""
    try:
        device = db.session.get(Device, device_pk, populate_existing=True)
        if device is None or device.revoked_at is not None:
            return False
        return inbox_items(device)
    except (OperationalError, InterfaceError) as error:
        log.debug("inbox socket: database unavailable, trying again later: %s", error)
        db.session.remove()
        return None
    finally:
        db.session.close()


def init_app(app: Flask) -> None:
    """Hear backchannel requests change; let the socket select its subprotocol."""
    lifecycle.listen(_on_transition)
    options = app.config.setdefault("SOCK_SERVER_OPTIONS", {})
    options.setdefault("subprotocols", [SUBPROTOCOL])
