"""Notifications of login-request changes: publish and subscribe, nothing more.

The database is the truth; a message only says "look again, it changed". A
subscriber that misses one still gets the current state when it (re)connects.
The in-process broker serves one process; :class:`RedisBroker` carries messages
across workers and hosts.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
import time
from typing import Any, Protocol

log = logging.getLogger(__name__)


class Subscription:
    """Messages for one channel, delivered to one waiting consumer."""

    def __init__(self, broker: Broker, channel: str) -> None:
        self.channel = channel
        self._broker = broker
        self._queue: queue.Queue[dict[str, Any]] = queue.Queue(maxsize=100)

    def deliver(self, message: dict[str, Any]) -> None:
        """Called by the broker; never blocks (a full queue drops: state is in the DB)."""
        try:
            self._queue.put_nowait(message)
        except queue.Full:
            log.warning("subscriber on %s is not reading; message dropped", self.channel)

    def get(self, timeout: float) -> dict[str, Any] | None:
        """The next message, or ``None`` after ``timeout`` seconds."""
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def close(self) -> None:
        """Stop receiving."""
        self._broker.unsubscribe(self)


class Broker(Protocol):
    """What the realtime layer needs of a message broker."""

    def publish(self, channel: str, message: dict[str, Any]) -> None: ...

    def subscribe(self, channel: str) -> Subscription: ...

    def unsubscribe(self, subscription: Subscription) -> None: ...

    def close(self) -> None: ...


class LocalFanout:
    """Channel -> local subscriptions, guarded by a lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscriptions: dict[str, set[Subscription]] = {}

    def add(self, subscription: Subscription) -> bool:
        """Add; True when it is the channel's first local subscriber."""
        with self._lock:
            subs = self._subscriptions.setdefault(subscription.channel, set())
            subs.add(subscription)
            return len(subs) == 1

    def remove(self, subscription: Subscription) -> bool:
        """Remove; True when the channel has no local subscriber left."""
        with self._lock:
            subs = self._subscriptions.get(subscription.channel)
            if subs is None:
                return False
            subs.discard(subscription)
            if subs:
                return False
            del self._subscriptions[subscription.channel]
            return True

    def deliver(self, channel: str, message: dict[str, Any]) -> None:
        """Hand ``message`` to every local subscriber of ``channel``."""
        with self._lock:
            subs = list(self._subscriptions.get(channel, ()))
        for sub in subs:
            sub.deliver(message)

    def channels(self) -> list[str]:
        """Channels with at least one local subscriber."""
        with self._lock:
            return list(self._subscriptions)


class InProcessBroker:
    """The embedded default: one process, no network."""

    def __init__(self) -> None:
        self._fanout = LocalFanout()

    def publish(self, channel: str, message: dict[str, Any]) -> None:
        self._fanout.deliver(channel, message)

    def subscribe(self, channel: str) -> Subscription:
        subscription = Subscription(self, channel)
        self._fanout.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._fanout.remove(subscription)

    def close(self) -> None:
        """Nothing to release."""


class RedisBroker:
    """Redis pub/sub: one connection and one listener thread per process.

    Local subscribers share the process's Redis subscription to their channel;
    a lost connection is re-established and every channel subscribed again.
    """

    PREFIX = "qridp:"

    def __init__(self, url: str) -> None:
        import redis  # optional dependency: only production needs it

        self._redis = redis.Redis.from_url(url)
        self._fanout = LocalFanout()
        self._pubsub_lock = threading.Lock()
        self._pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._listen, name="redis-broker", daemon=True)
        self._thread.start()

    def publish(self, channel: str, message: dict[str, Any]) -> None:
        self._redis.publish(self.PREFIX + channel, json.dumps(message))

    def subscribe(self, channel: str) -> Subscription:
        subscription = Subscription(self, channel)
        if self._fanout.add(subscription):
            with self._pubsub_lock:
                self._pubsub.subscribe(self.PREFIX + channel)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        if self._fanout.remove(subscription):
            with self._pubsub_lock:
                self._pubsub.unsubscribe(self.PREFIX + subscription.channel)

    def close(self) -> None:
        """Stop the listener thread and drop the connections."""
        self._stopped.set()
        self._thread.join(timeout=5)
        self._pubsub.close()
        self._redis.close()

    def _listen(self) -> None:
        broken = False
        while not self._stopped.is_set():
            try:
                if broken:
                    self._resubscribe()
                    broken = False
                with self._pubsub_lock:
                    subscribed = bool(self._pubsub.subscribed)
                    message = self._pubsub.get_message(timeout=0) if subscribed else None
                if message is None:
                    time.sleep(0.005 if subscribed else 0.05)
                    continue
                channel = message["channel"].decode()[len(self.PREFIX) :]
                self._fanout.deliver(channel, json.loads(message["data"]))
            except Exception:  # the connection dropped: resubscribe after a pause
                if not self._stopped.is_set():
                    log.warning("redis broker connection lost; reconnecting", exc_info=True)
                    broken = True
                    self._stopped.wait(1)

    def _resubscribe(self) -> None:
        """A fresh pub/sub connection, subscribed to every channel with local subscribers."""
        with self._pubsub_lock:
            with contextlib.suppress(Exception):  # it is already broken
                self._pubsub.close()
            self._pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            channels = [self.PREFIX + c for c in self._fanout.channels()]
            if channels:
                self._pubsub.subscribe(*channels)


def create_broker(url: str) -> Broker:
    """The broker for ``IDP_BROKER_URL``: ``memory://`` or ``redis://...``."""
    if url == "memory://":
        return InProcessBroker()
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisBroker(url)
    raise ValueError(f"IDP_BROKER_URL must be memory:// or redis://..., not {url!r}")
