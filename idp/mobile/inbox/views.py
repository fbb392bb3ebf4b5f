"""The inbox's routes on the phone API (see ``idp.mobile.inbox``): the list, opening one
request, and the WebSocket that pushes the list."""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

from flask import Response, current_app, g, jsonify, request
from simple_websocket import Server
from sqlalchemy.exc import InterfaceError, OperationalError
from wsproto.frame_protocol import CloseReason

from idp import db, limits
from idp.db import utcnow
from idp.errors import InvalidProof, UnknownRequest
from idp.mobile.api import bp, gone_is_gone, json_object, login_request_view, verified_device
from idp.mobile.inbox import SUBPROTOCOL, channel, inbox_items
from idp.mobile.models import Device
from idp.mobile.proof import check_proof, record_proof
from idp.qrlogin import services as logins
from idp.qrlogin.lifecycle import Kind
from idp.realtime.broker import RESTART
from idp.realtime.sockets import SOCKET_NEWS, peer_sent, sock, take_slot
from idp.web import Caller

log = logging.getLogger(__name__)

GONE = "this request is expired or unknown: it is no longer in your inbox"


@bp.get("/inbox")
@limits.per_ip("IDP_LIMIT_PHONE_IP", scope="phone")
def inbox() -> Response:
    """The backchannel requests waiting for this phone's user."""
    device = verified_device()
    return jsonify(inbox=inbox_items(device))


@bp.post("/inbox/<request_id>/open")
@limits.per_ip("IDP_LIMIT_PHONE_IP", scope="phone")
@gone_is_gone(GONE)
def open_item(request_id: str) -> Response:
    """Take one request of the inbox up (as a scan): what to show before Approve."""
    device = verified_device(action=True)
    json_object()
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
    g.inbox_slot = take_slot(
        f"inbox:{device.device_id}", too_many="too many open inbox sockets for this phone"
    )


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
            if peer_sent(ws):
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
    the list). An item whose expiry has passed is still listed only when the re-read
    failed (the database away): it waits for the heartbeat, not a tight loop of re-reads."""
    now = utcnow()
    soonest = heartbeat
    for item in items:
        expires = datetime.fromisoformat(item["expires_at"].removesuffix("Z"))
        if (left := (expires - now).total_seconds() + 1.05) > 0:
            soonest = min(soonest, left)
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
