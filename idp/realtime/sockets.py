"""The WebSockets' shared plumbing: Flask-Sock (``sock``), the event that tells a socket's
handler its peer sent something or left, a bare-greenlet reader under gevent, and the
slots that bound how many sockets one request or address holds. The page's socket
(``idp.realtime.views``) and the phone's inbox socket (``idp.mobile.inbox.views``) use it."""

from __future__ import annotations

import threading
from typing import Any

from flask import Flask, current_app, g, request
from flask_sock import Sock
from simple_websocket import Server

from idp.errors import TooManyRequests
from idp.realtime.slots import SocketSlots

sock = Sock()
#: Put in a socket's subscription when its peer sent a frame or closed: look at the socket.
SOCKET_NEWS: dict[str, Any] = {"socket": True}


class _SocketEvent:
    """simple-websocket's ``event_class``: its reader sets the event when a frame
    arrives or the peer closes. Ours also tells the handler, which waits on its
    subscription, not on the socket; made in the handshake, inside the request."""

    __slots__ = ("_event", "_subscription")

    def __init__(self) -> None:
        self._event = threading.Event()
        self._subscription = g.get("subscription")

    def set(self) -> None:
        self._event.set()
        if self._subscription is not None:
            self._subscription.deliver(SOCKET_NEWS)

    def clear(self) -> None:
        self._event.clear()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._event.wait(timeout)


def take_slot(key: str, *, too_many: str) -> tuple[str, str]:
    """Count a socket against its key (a sign-in's request, a phone) and the request's IP
    address, or refuse it: 429 with ``too_many`` (the key's cap) or the address's cap,
    ``Retry-After`` one heartbeat (a dead socket is noticed by then). The slot to release."""
    slots: SocketSlots = current_app.extensions["idp.socket_slots"]
    ip = request.remote_addr or ""
    full = slots.acquire(key, ip)
    retry_after = current_app.config["IDP_WS_HEARTBEAT"]
    if full == "request":
        raise TooManyRequests(too_many, retry_after=retry_after)
    if full == "ip":
        raise TooManyRequests("too many open sockets from this address", retry_after=retry_after)
    return key, ip


def peer_sent(ws: Server) -> bool:
    """After :data:`SOCKET_NEWS`: True if the page sent a frame; the socket's end (the page
    left) raises ``ConnectionClosed``, which ends the handler and frees its slot."""
    return ws.receive(timeout=0) is not None


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
    options.setdefault("event_class", _SocketEvent)
    if _gevent_worker():
        options.setdefault("thread_class", _ReaderGreenlet)
    config = app.config
    app.extensions["idp.socket_slots"] = SocketSlots(
        config["IDP_WS_MAX_PER_REQUEST"], config["IDP_WS_MAX_PER_IP"]
    )
    sock.init_app(app)
