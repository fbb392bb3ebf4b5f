"""Notifications of login-request changes: publish and subscribe, nothing more.

The database is the truth; a message only says "look again, it changed". A
subscriber that misses one still gets the current state when it (re)connects.
The in-process broker serves one process; :class:`RedisBroker` carries messages
across workers and hosts.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import threading
import weakref
from typing import Any, Protocol

log = logging.getLogger(__name__)

#: Sent to local subscribers when messages may have been missed: re-read the database.
RECHECK: dict[str, Any] = {"recheck": True}
#: Sent to local subscribers when this process is shutting down: go elsewhere.
RESTART: dict[str, Any] = {"restart": True}

#: Every broker of this process, so that shutdown can reach their subscribers.
_brokers: weakref.WeakSet[Any] = weakref.WeakSet()


def announce_shutdown() -> None:
    """Tell every waiting page of this process to reconnect (to another worker)."""
    for broker in list(_brokers):
        broker.broadcast(RESTART)


class Subscription:
    """Messages for one channel, delivered to one waiting consumer.

    One per waiting page, so it is kept small: a list and an event (a ``queue.Queue``
    carries a lock, three conditions and four deques). Messages are appended by the
    broker and taken in order by the one consumer; the event only says "look".
    """

    __slots__ = ("_arrived", "_broker", "_messages", "channel")

    #: Kept for a consumer that does not read; more are dropped (the state is in the DB).
    LIMIT = 100

    def __init__(self, broker: Broker, channel: str) -> None:
        self.channel = channel
        self._broker = broker
        self._messages: list[dict[str, Any]] = []
        self._arrived = threading.Event()

    def deliver(self, message: dict[str, Any]) -> None:
        """Called by the broker; never blocks (a full subscription drops: state is in the DB)."""
        if len(self._messages) >= self.LIMIT:
            log.warning("subscriber on %s is not reading; message dropped", self.channel)
            return
        self._messages.append(message)
        self._arrived.set()

    def get(self, timeout: float) -> dict[str, Any] | None:
        """The next message, or ``None`` after ``timeout`` seconds."""
        if not self._messages:
            # Cleared only while nothing waits, and looked at again after clearing: a
            # message delivered meanwhile is in the list, and one delivered later sets it.
            self._arrived.clear()
            if not self._messages:
                self._arrived.wait(timeout)
        if not self._messages:
            return None
        return self._messages.pop(0)

    def close(self) -> None:
        """Stop receiving."""
        self._broker.unsubscribe(self)


class Broker(Protocol):
    """What the realtime layer needs of a message broker."""

    def publish(self, channel: str, message: dict[str, Any]) -> None: ...

    def subscribe(self, channel: str) -> Subscription: ...

    def unsubscribe(self, subscription: Subscription) -> None: ...

    def broadcast(self, message: dict[str, Any]) -> None: ...

    def subscriptions(self) -> int: ...

    def ping(self) -> bool: ...

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

    def broadcast(self, message: dict[str, Any]) -> None:
        """Hand ``message`` to every local subscriber of every channel."""
        with self._lock:
            subs = [sub for group in self._subscriptions.values() for sub in group]
        for sub in subs:
            sub.deliver(message)

    def count(self) -> int:
        """Local subscriptions (one per open page socket)."""
        with self._lock:
            return sum(len(group) for group in self._subscriptions.values())


class InProcessBroker:
    """The embedded default: one process, no network."""

    def __init__(self) -> None:
        self._fanout = LocalFanout()
        _brokers.add(self)

    def publish(self, channel: str, message: dict[str, Any]) -> None:
        self._fanout.deliver(channel, message)

    def subscribe(self, channel: str) -> Subscription:
        subscription = Subscription(self, channel)
        self._fanout.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._fanout.remove(subscription)

    def broadcast(self, message: dict[str, Any]) -> None:
        self._fanout.broadcast(message)

    def subscriptions(self) -> int:
        """Local subscriptions (one per open page socket)."""
        return self._fanout.count()

    def ping(self) -> bool:
        return True

    def close(self) -> None:
        """Nothing to release."""


class RedisBroker:
    """Redis pub/sub across workers and hosts.

    Every process subscribes once, at start, to one Redis channel that carries all
    login events, and fans them out to its local subscribers; a page subscribing
    costs no Redis command, and nothing races a SUBSCRIBE. Each event is small and
    a login makes about four, so even a large cluster's processes read them easily.

    A listener thread blocks on the connection. When the connection drops it
    reconnects and then tells every local subscriber to re-read the database
    (:data:`RECHECK`): whatever was published in the gap is found there. A publish
    that fails is kept and sent once Redis answers again.
    """

    CHANNEL = "qridp:login-events"
    #: Publishes kept while Redis is unreachable (older ones are dropped: the
    #: recheck after reconnecting covers them).
    BACKLOG = 10_000

    def __init__(self, url: str) -> None:
        import redis  # optional dependency: only production needs it

        self._redis = redis.Redis.from_url(
            url, health_check_interval=10, socket_keepalive=True, socket_connect_timeout=5
        )
        self._fanout = LocalFanout()
        self._backlog: collections.deque[bytes] = collections.deque(maxlen=self.BACKLOG)
        self._stopped = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._listen, name="redis-broker", daemon=True)
        self._thread.start()
        _brokers.add(self)

    def publish(self, channel: str, message: dict[str, Any]) -> None:
        payload = json.dumps({"channel": channel, "message": message}).encode()
        try:
            self._redis.publish(self.CHANNEL, payload)
        except Exception:  # the state is committed; deliver the news when Redis is back
            log.warning("redis publish failed; kept for after reconnecting", exc_info=True)
            self._backlog.append(payload)

    def subscribe(self, channel: str) -> Subscription:
        subscription = Subscription(self, channel)
        self._fanout.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._fanout.remove(subscription)

    def broadcast(self, message: dict[str, Any]) -> None:
        self._fanout.broadcast(message)

    def subscriptions(self) -> int:
        """Local subscriptions (one per open page socket)."""
        return self._fanout.count()

    def ping(self) -> bool:
        """True when Redis answers and this process is subscribed."""
        try:
            return bool(self._redis.ping()) and self._ready.is_set()
        except Exception:
            return False

    def wait_ready(self, timeout: float) -> bool:
        """Wait until the listener is subscribed (tests and start-up checks)."""
        return self._ready.wait(timeout)

    def close(self) -> None:
        """Stop the listener thread and drop the connections."""
        self._stopped.set()
        self._thread.join(timeout=5)
        self._redis.close()

    def _listen(self) -> None:
        first = True
        while not self._stopped.is_set():
            try:
                pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
                try:
                    pubsub.subscribe(self.CHANNEL)
                    self._ready.set()
                    if not first:  # anything published meanwhile is in the database
                        log.info("redis broker reconnected")
                        self._fanout.broadcast(RECHECK)
                    first = False
                    self._flush_backlog()
                    while not self._stopped.is_set():
                        # Blocks up to a second, so that close() is noticed.
                        message = pubsub.get_message(timeout=1.0)
                        if message is not None:
                            self._deliver(message["data"])
                finally:
                    self._ready.clear()
                    with contextlib.suppress(Exception):  # it may be broken already
                        pubsub.close()
            except Exception as error:  # the connection dropped: reconnect after a pause
                if not self._stopped.is_set():
                    log.warning("redis broker connection lost (%s); reconnecting", error)
                    self._stopped.wait(0.5)

    def _deliver(self, data: bytes) -> None:
        try:
            event = json.loads(data)
            channel, message = event["channel"], event["message"]
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring a malformed event on %s", self.CHANNEL)
            return
        self._fanout.deliver(channel, message)

    def _flush_backlog(self) -> None:
        while self._backlog:
            payload = self._backlog.popleft()
            try:
                self._redis.publish(self.CHANNEL, payload)
            except Exception:
                self._backlog.appendleft(payload)
                raise


def create_broker(url: str) -> Broker:
    """The broker for ``IDP_BROKER_URL`` (checked by idp.config): ``memory://`` or Redis."""
    from idp.config import is_redis_url

    if url == "memory://":
        return InProcessBroker()
    if is_redis_url(url):
        return RedisBroker(url)
    raise ValueError(f"IDP_BROKER_URL must be memory:// or a Redis URL, not {url!r}")
