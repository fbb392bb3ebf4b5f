"""The CIBA ping queue (idp.oauth.ciba.Pinger) against a local receiver: a failed ping is
tried again with backoff up to its attempts, a 2xx ends it, a redirect is a failure and
is not followed, a full queue drops rather than blocks."""

from __future__ import annotations

import contextlib
import http.server
import threading
from collections.abc import Iterator

import pytest

from idp.oauth.ciba import Pinger


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[tuple[str, str]], list[int], threading.Event]]:
    """(its URL, what it got as (path, Authorization), the statuses to answer in turn, set
    after each request)."""
    got: list[tuple[str, str]] = []
    answers: list[int] = []
    event = threading.Event()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            got.append((self.path, self.headers.get("Authorization", "")))
            status = answers.pop(0) if answers else 204
            self.send_response(status)
            if status in (301, 302, 307):
                self.send_header("Location", "/elsewhere")
            self.end_headers()
            event.set()

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/notify", got, answers, event
    server.shutdown()
    thread.join(timeout=5)


def wait_for(got: list, count: int, event: threading.Event) -> None:
    for _ in range(100):
        if len(got) >= count:
            return
        event.wait(0.2)
        event.clear()
    raise AssertionError(f"{len(got)} pings arrived, not {count}")


def test_a_failed_ping_is_tried_again_until_a_2xx(receiver):
    url, got, answers, event = receiver
    answers.extend([500, 503])
    assert Pinger().submit(url, "tok", "req-1", attempts=4, timeout=2)
    wait_for(got, 3, event)
    assert got == [("/notify", "Bearer tok")] * 3
    event.wait(1.5)  # no fourth: the 204 ended it
    assert len(got) == 3


def test_attempts_are_bounded(receiver):
    url, got, answers, event = receiver
    answers.extend([500] * 10)
    assert Pinger().submit(url, "tok", "req-1", attempts=2, timeout=2)
    wait_for(got, 2, event)
    event.wait(2.5)  # past the next backoff: given up
    assert len(got) == 2


def test_a_redirect_is_a_failure_and_not_followed(receiver):
    url, got, answers, event = receiver
    answers.append(302)
    assert Pinger().submit(url, "tok", "req-1", attempts=1, timeout=2)
    wait_for(got, 1, event)
    event.wait(0.5)
    assert got == [("/notify", "Bearer tok")]  # nothing at /elsewhere


def test_a_full_queue_drops_instead_of_blocking():
    pinger = Pinger(capacity=1)
    pinger._start = lambda: None  # no thread drains it
    assert pinger.submit("http://127.0.0.1:9/", "t", "a", attempts=1, timeout=1)
    assert not pinger.submit("http://127.0.0.1:9/", "t", "b", attempts=1, timeout=1)


@pytest.fixture
def garbler() -> Iterator[tuple[str, list[int]]]:
    """A notification endpoint that answers every POST with a line that is not HTTP (its
    URL, and one entry per connection it got)."""
    import socket

    got: list[int] = []
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                got.append(1)
                conn.settimeout(1)
                with contextlib.suppress(OSError):
                    conn.recv(65536)
                    conn.sendall(b"NOT HTTP AT ALL\r\n\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/notify", got
    stop.set()
    thread.join(timeout=5)
    listener.close()


def test_an_answer_that_is_not_http_is_a_failure_tried_again(garbler):
    """A broken endpoint must not end the sending thread (which every client's pings
    share): its ping fails, and is tried again."""
    url, got = garbler
    pinger = Pinger()
    assert pinger.submit(url, "tok", "req-1", attempts=2, timeout=2)
    for _ in range(40):
        if len(got) >= 2:
            break
        threading.Event().wait(0.1)
    assert len(got) == 2  # the retry came: the thread lived on
    assert pinger._thread is not None and pinger._thread.is_alive()
