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
``inbox:<issuer>:<user_id>`` once committed (a ``lifecycle.listen`` callback here; ``POST
/bc-authorize`` announces new ones); the socket then reads the list again (the
database is the truth, a message only says "look again"), and at every heartbeat too.

This package's own module holds what the inbox is; its views (``idp.mobile.inbox.views``,
on the mobile blueprint) the routes and the socket.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import Flask, current_app
from sqlalchemy import select

from idp import db
from idp.db import utcnow
from idp.mobile.models import Device
from idp.oauth.models import SCOPE_DESCRIPTIONS
from idp.qrlogin import lifecycle
from idp.qrlogin.lifecycle import OPEN, Kind
from idp.qrlogin.models import LoginRequest

#: The WebSocket subprotocol the inbox socket speaks (the proof rides beside it).
SUBPROTOCOL = "idp-inbox"


def channel(user_id: int | None) -> str:
    """The broker channel of one user's inbox (``-`` for nobody's). It names the issuer
    too: a user's id is a row number, and another IdP sharing the Redis server (or another
    test's) has a user of the same number, whose news must not wake this one's sockets."""
    issuer = current_app.config["IDP_ISSUER"]
    return f"inbox:{issuer}:{user_id if user_id is not None else '-'}"


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


def _iso(moment: datetime) -> str:
    return moment.replace(microsecond=0).isoformat() + "Z"


def init_app(app: Flask) -> None:
    """Hear backchannel requests change; let the socket select its subprotocol."""
    lifecycle.listen(_on_transition)
    options = app.config.setdefault("SOCK_SERVER_OPTIONS", {})
    options.setdefault("subprotocols", [SUBPROTOCOL])
