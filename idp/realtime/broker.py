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
import time
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


def bounded_redis_options(timeout: float, url: str) -> dict[str, Any]:
    """redis-py options under which no call to the Redis at ``url`` waits longer than
    ``timeout`` seconds.

    A Redis that stops answering but keeps its connections (frozen, or a half-open TCP
    connection) would otherwise hold a caller for ever: redis-py sets no socket timeout.
    A failed call is not retried here; each caller knows its own fallback. TCP keepalive
    is for TCP only (redis-py refuses the option for a unix socket).
    """
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    options: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "retry": Retry(NoBackoff(), 0),
    }
    if not url.startswith(("unix://", "redis+unix://")):
        options["socket_keepalive"] = True
    return options


class RedisBroker:
    """Redis pub/sub across workers and hosts.

    Every process subscribes once, at start, to one Redis channel that carries all
    login events, and fans them out to its local subscribers; a page subscribing
    costs no Redis command, and nothing races a SUBSCRIBE. Each event is small and
    a login makes about four, so even a large cluster's processes read them easily.

    A listener thread reads the subscription. A pub/sub connection that is silent for
    ``ping_interval`` seconds is pinged, and one that leaves the ping unanswered for
    ``timeout`` seconds counts as lost, like one that drops: a Redis that is frozen, or
    a connection that died without a word, looks idle otherwise. After reconnecting the
    listener tells every local subscriber to re-read the database (:data:`RECHECK`):
    whatever was published in the gap is found there. A publish that fails, or that is
    made while the listener is not subscribed, is kept and sent once Redis answers again.
    Every Redis call is bounded by ``timeout``.
    """

    CHANNEL = "qridp:login-events"
    #: Publishes kept while Redis is unreachable (older ones are dropped: the
    #: recheck after reconnecting covers them).
    BACKLOG = 10_000

    def __init__(self, url: str, *, timeout: float = 2, ping_interval: float = 5) -> None:
        import redis  # optional dependency: only production needs it

        self._timeout = timeout
        self._ping_interval = ping_interval
        self._redis = redis.Redis.from_url(url, **bounded_redis_options(timeout, url))
        self._fanout = LocalFanout()
        self._backlog: collections.deque[bytes] = collections.deque(maxlen=self.BACKLOG)
        self._stopped = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._listen, name="redis-broker", daemon=True)
        self._thread.start()
        _brokers.add(self)

    def publish(self, channel: str, message: dict[str, Any]) -> None:
        payload = json.dumps({"channel": channel, "message": message}).encode()
        if not self._ready.is_set():  # Redis is known to be away: do not make the caller wait
            self._backlog.append(payload)
            return
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
        """True when this process is subscribed and Redis answers (within the timeout)."""
        if not self._ready.is_set():
            return False
        try:
            return bool(self._redis.ping())
        except Exception:
            return False

    def wait_ready(self, timeout: float) -> bool:
        """Wait until the listener is subscribed (tests and start-up checks)."""
        return self._ready.wait(timeout)

    def close(self) -> None:
        """Stop the listener thread and drop the connections (which wakes the listener
        now, not at the end of its current one-second read)."""
        self._stopped.set()
        self._redis.close()
        self._thread.join(timeout=5)

    def _listen(self) -> None:
        connected_before = False
        while not self._stopped.is_set():
            pubsub = self._redis.pubsub()
            try:
                self._subscribe(pubsub)
                self._ready.set()
                if connected_before:
                    log.info("redis broker reconnected")
                connected_before = True
                # Anything published while this process was not listening is in the database.
                self._fanout.broadcast(RECHECK)
                self._receive(pubsub)
            except Exception as error:  # lost, refused or silent: reconnect after a pause
                if not self._stopped.is_set():
                    log.warning("redis broker connection lost (%s); reconnecting", error)
            finally:
                self._ready.clear()
                with contextlib.suppress(Exception):  # it may be broken already
                    pubsub.close()
            self._stopped.wait(0.5)

    def _subscribe(self, pubsub: Any) -> None:
        """Subscribe, and wait (bounded) for Redis to confirm it: a frozen Redis accepts
        the connection and the command, and answers nothing."""
        pubsub.subscribe(self.CHANNEL)
        deadline = time.monotonic() + self._timeout
        while (left := deadline - time.monotonic()) > 0:
            message = pubsub.get_message(timeout=left)
            if message is not None and message["type"] == "subscribe":
                return
        raise TimeoutError("redis did not confirm the subscription")

    def _receive(self, pubsub: Any) -> None:
        """Deliver events until stopped; raise when the connection is lost or silent."""
        heard = time.monotonic()
        pinged: float | None = None
        while not self._stopped.is_set():
            if self._backlog:  # kept while Redis was away, or a publish failed meanwhile
                self._flush_backlog()
            # Waits a second at most, so that close() is noticed.
            message = pubsub.get_message(timeout=min(1.0, self._timeout))
            now = time.monotonic()
            if message is not None:
                heard, pinged = now, None  # anything at all proves the connection alive
                if message["type"] == "message":
                    self._deliver(message["data"])
            elif pinged is not None and now - pinged >= self._timeout:
                raise TimeoutError(f"redis left a ping unanswered for {self._timeout} s")
            elif pinged is None and now - heard >= self._ping_interval:
                pubsub.ping()  # its answer is a "pong" message
                pinged = now

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


def create_broker(url: str, *, timeout: float = 2, ping_interval: float = 5) -> Broker:
    """The broker for ``IDP_BROKER_URL`` (checked by idp.config): ``memory://`` or Redis;
    ``timeout`` and ``ping_interval``: ``IDP_REDIS_TIMEOUT`` and ``IDP_REDIS_PING_INTERVAL``."""
    from idp.config import is_redis_url

    if url == "memory://":
        return InProcessBroker()
    if is_redis_url(url):
        return RedisBroker(url, timeout=timeout, ping_interval=ping_interval)
    raise ValueError(f"IDP_BROKER_URL must be memory:// or a Redis URL, not {url!r}")
