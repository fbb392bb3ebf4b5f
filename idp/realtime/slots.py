"""How many page sockets one login request, and one browser IP address, may hold open.

Each open socket costs this process a greenlet (or a thread), a file descriptor and a
subscription for as long as it stays open; a page needs one (a second for a moment
while it reconnects). The counts are this process's own: they bound what one browser
can make one worker hold, which is the resource at stake.
"""

from __future__ import annotations

import threading
from collections import Counter


class SocketSlots:
    """Open sockets per login request and per IP address, under a lock."""

    def __init__(self, per_request: int, per_ip: int) -> None:
        self.per_request = per_request
        self.per_ip = per_ip
        self._lock = threading.Lock()
        self._requests: Counter[str] = Counter()
        self._ips: Counter[str] = Counter()

    def acquire(self, request_id: str, ip: str) -> str | None:
        """Take a slot; ``None`` when taken, else which cap is reached (``"request"`` or
        ``"ip"``) and nothing is taken."""
        with self._lock:
            if self._requests[request_id] >= self.per_request:
                return "request"
            if self._ips[ip] >= self.per_ip:
                return "ip"
            self._requests[request_id] += 1
            self._ips[ip] += 1
            return None

    def release(self, request_id: str, ip: str) -> None:
        """Give back a slot taken by :meth:`acquire` (counters at zero are dropped)."""
        with self._lock:
            for counter, key in ((self._requests, request_id), (self._ips, ip)):
                counter[key] -= 1
                if counter[key] <= 0:
                    del counter[key]

    def held(self) -> int:
        """Open sockets counted here."""
        with self._lock:
            return sum(self._requests.values())
