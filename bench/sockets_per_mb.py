"""How many idle waiting-page WebSockets one gunicorn worker holds per MB of memory.

Compares gunicorn's ``gevent`` worker (one greenlet per connection) with its
``gthread`` worker (one pool thread per connection, so ``--threads`` above the
socket count) on this app. For each worker class and each count K it:

1. starts ``gunicorn -w 1`` on a fresh port against a temporary SQLite IdP
   (``idp db upgrade``, then ``idp clients create --public``);
2. warms up: a few authorize pages, whose WebSockets stay open throughout,
   then reads the worker's RSS ("before");
3. opens K authorize pages (``GET /authorize`` with PKCE S256, each with a
   fresh binding cookie, over keep-alive sessions) and then K WebSockets to
   ``/ws/login/<id>`` with the page's cookie and ``Origin``; a socket counts as
   open once the server has sent its first state;
4. lets them idle, reads the RSS ("after"), then the worker's CPU time over an
   idle window, and checks how many sockets are still open.

gthread also gets ``--worker-connections 20000``: its default (1000) caps open
connections, WebSockets included. With the default heartbeat (25 s) the idle
window ends before the sockets' first heartbeat; ``--heartbeat 5`` includes them.

Only the project's own dependencies are used: ``requests`` for the pages and
``wsproto`` (via flask-sock/simple-websocket) over asyncio for the sockets;
memory and CPU come from ``/proc`` (Linux only).

    .venv/bin/python -m bench.sockets_per_mb [--counts 200,1000,2000]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import contextlib
import hashlib
import html
import json
import os
import re
import resource
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

import requests
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)

from bench.server import free_port, idp_command

REPO = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
REDIRECT_URI = "http://127.0.0.1:9/cb"
BINDING_COOKIE = "idp_binding"  # the name on a plain-http (loopback) issuer
STATE_RE = re.compile(r'data-state="([^"]*)"')
WARMUP_PAGES = 5
HANDSHAKE_TIMEOUT = 30.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- the worker process, read from /proc -------------------------------------


def proc_status(pid: int) -> dict[str, str]:
    """``/proc/<pid>/status`` as a mapping."""
    text = Path(f"/proc/{pid}/status").read_text()
    return {k: v.strip() for k, _, v in (line.partition(":") for line in text.splitlines())}


def rss_kb(pid: int) -> int:
    return int(proc_status(pid)["VmRSS"].split()[0])


def thread_count(pid: int) -> int:
    return int(proc_status(pid)["Threads"])


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of every thread of ``pid``."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(c) for c in path.read_text().split()] if path.exists() else []


# --- the IdP instance and its gunicorn ----------------------------------------


@dataclass
class Instance:
    """A temporary IdP: instance folder, SQLite database, one public client."""

    root: Path
    heartbeat: int
    secret_key: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    client_id: str = ""

    def env(self, issuer: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}
        env |= {
            "IDP_INSTANCE_PATH": str(self.root / "instance"),
            "IDP_ISSUER": issuer,
            "IDP_DATABASE_URL": f"sqlite:///{self.root / 'idp.sqlite3'}",
            "IDP_SECRET_KEY": self.secret_key,
            "IDP_BROKER_URL": "memory://",
            "IDP_LOGIN_REQUEST_TTL": "600",  # no page expires during a run
            "IDP_WS_HEARTBEAT": str(self.heartbeat),
        }
        return env

    def set_up(self) -> None:
        env = self.env(f"http://{HOST}:8000")
        run = {"env": env, "cwd": REPO, "check": True, "capture_output": True, "text": True}
        subprocess.run([*idp_command(), "db", "upgrade"], **run)
        create = ["clients", "create", "--public", "--json", "--name", "bench"]
        created = subprocess.run([*idp_command(), *create, "--redirect-uri", REDIRECT_URI], **run)
        self.client_id = json.loads(created.stdout)["client_id"]


@dataclass
class Gunicorn:
    """One gunicorn master with one worker, in its own process group."""

    worker_class: str
    threads: int
    instance: Instance
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    worker_pid: int = 0

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "gunicorn", "--no-control-socket", "-w", "1"]
        cmd += ["-k", self.worker_class, "--worker-connections", "20000"]
        if self.worker_class == "gthread":
            cmd += ["--threads", str(self.threads)]
        cmd += ["--graceful-timeout", "3", "-b", f"{HOST}:{self.port}", "idp:create_app()"]
        return cmd

    @contextlib.contextmanager
    def running(self) -> Iterator[Gunicorn]:
        log_path = self.instance.root / f"gunicorn-{self.worker_class}-{self.port}.log"
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                self.command(),
                env=self.instance.env(self.base_url),
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                self._wait_ready(log_path)
                yield self
            finally:
                self._stop()

    def _wait_ready(self, log_path: Path) -> None:
        assert self.process is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited:\n{log_path.read_text()[-3000:]}")
            with contextlib.suppress(requests.RequestException):
                url = f"{self.base_url}/.well-known/openid-configuration"
                if requests.get(url, timeout=5).status_code == 200:
                    workers = children(self.process.pid)
                    if len(workers) == 1:
                        self.worker_pid = workers[0]
                        return
            time.sleep(0.2)
        raise RuntimeError(f"gunicorn did not start:\n{log_path.read_text()[-3000:]}")

    def _stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)  # its own group: master + worker
            self.process.wait(timeout=10)


# --- the pages and their sockets ---------------------------------------------


@dataclass(frozen=True)
class Page:
    socket_path: str
    cookie: str


def s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def authorize_url(base_url: str, client_id: str) -> str:
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT_URI,
        "scope": "openid profile",
        "state": secrets.token_urlsafe(12),
        "nonce": secrets.token_urlsafe(12),
        "code_challenge": s256(secrets.token_urlsafe(48)),
        "code_challenge_method": "S256",
    }
    return f"{base_url}/authorize?{urlencode(params)}"


def fetch_pages(
    base_url: str, client_id: str, count: int, parallel: int
) -> tuple[list[Page], collections.Counter[str]]:
    """``count`` authorize pages, each with its own binding cookie (keep-alive sessions)."""
    local = threading.local()
    sessions: list[requests.Session] = []
    lock = threading.Lock()

    def fetch(_: int) -> Page | str:
        if not hasattr(local, "session"):
            local.session = requests.Session()
            with lock:
                sessions.append(local.session)
        session: requests.Session = local.session
        session.cookies.clear()  # a new browser: the IdP sets a new binding cookie
        try:
            response = session.get(
                authorize_url(base_url, client_id), allow_redirects=False, timeout=30
            )
        except requests.RequestException as error:
            return f"GET {type(error).__name__}"
        match = STATE_RE.search(response.text)
        cookie = response.cookies.get(BINDING_COOKIE)
        if response.status_code != 200 or not match or not cookie:
            return f"GET HTTP {response.status_code}"
        state = json.loads(html.unescape(match.group(1)))
        return Page(state["socket_path"], f"{BINDING_COOKIE}={cookie}")

    try:
        with ThreadPoolExecutor(parallel) as pool:
            results = list(pool.map(fetch, range(count)))
    finally:
        for session in sessions:
            session.close()
    pages = [r for r in results if isinstance(r, Page)]
    errors = collections.Counter(r for r in results if isinstance(r, str))
    return pages, errors


class HandshakeError(Exception):
    pass


class PageSocket:
    """An idle waiting page's WebSocket: it answers pings and reads what comes."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.messages = 0
        self.open = False
        self._task: asyncio.Task[None] | None = None

    @classmethod
    async def connect(cls, port: int, page: Page, origin: str) -> PageSocket:
        reader, writer = await asyncio.open_connection(HOST, port)
        self = cls(reader, writer)
        try:
            await asyncio.wait_for(self._handshake(port, page, origin), HANDSHAKE_TIMEOUT)
        except BaseException:
            writer.close()
            raise
        self._task = asyncio.create_task(self._listen())
        return self

    async def _handshake(self, port: int, page: Page, origin: str) -> None:
        headers = [(b"origin", origin.encode()), (b"cookie", page.cookie.encode())]
        request = Request(host=f"{HOST}:{port}", target=page.socket_path, extra_headers=headers)
        self.writer.write(self.ws.send(request))
        accepted = False
        while not (accepted and self.messages):  # open once the first state arrived
            data = await self.reader.read(4096)
            if not data:
                raise HandshakeError("closed during handshake")
            self.ws.receive_data(data)
            for event in self.ws.events():
                if isinstance(event, RejectConnection):
                    raise HandshakeError(f"HTTP {event.status_code}")
                if isinstance(event, AcceptConnection):
                    accepted = True
                elif isinstance(event, TextMessage):
                    self.messages += 1
                elif isinstance(event, CloseConnection):
                    raise HandshakeError(f"closed by server ({event.code})")
        self.open = True

    async def _listen(self) -> None:
        with contextlib.suppress(OSError):
            while data := await self.reader.read(4096):
                self.ws.receive_data(data)
                for event in self.ws.events():
                    if isinstance(event, Ping):
                        self.writer.write(self.ws.send(event.response()))
                    elif isinstance(event, TextMessage):
                        self.messages += 1
                    elif isinstance(event, CloseConnection):
                        self.open = False
                        return
        self.open = False

    async def close(self) -> None:
        if self._task:
            self._task.cancel()
        with contextlib.suppress(Exception):
            if self.open:
                self.writer.write(self.ws.send(CloseConnection(code=1001)))
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()


async def open_sockets(
    port: int, pages: Sequence[Page], origin: str, concurrency: int
) -> tuple[list[PageSocket], collections.Counter[str]]:
    limit = asyncio.Semaphore(concurrency)

    async def one(page: Page) -> PageSocket | str:
        async with limit:
            try:
                return await PageSocket.connect(port, page, origin)
            except HandshakeError as error:
                return f"WS {error}"
            except TimeoutError:
                return "WS handshake timeout"
            except OSError as error:
                return f"WS {type(error).__name__}"

    results = await asyncio.gather(*(one(p) for p in pages))
    sockets = [r for r in results if isinstance(r, PageSocket)]
    return sockets, collections.Counter(r for r in results if isinstance(r, str))


# --- one measurement -----------------------------------------------------------


@dataclass
class Result:
    worker_class: str
    count: int
    opened: int = 0
    rss_before_kb: int = 0
    rss_after_kb: int = 0
    threads_after: int = 0
    idle_cpu_percent: float = 0.0
    still_open: int = 0
    seconds: float = 0.0
    errors: collections.Counter[str] = field(default_factory=collections.Counter)

    @property
    def kb_per_socket(self) -> float:
        return (self.rss_after_kb - self.rss_before_kb) / max(self.opened, 1)

    @property
    def sockets_per_mb(self) -> float:
        return 1024 / self.kb_per_socket if self.kb_per_socket > 0 else float("inf")


async def measure(server: Gunicorn, count: int, args: argparse.Namespace) -> Result:
    result = Result(server.worker_class, count)
    pid, origin = server.worker_pid, server.base_url
    started = time.monotonic()
    client_id = server.instance.client_id
    warm_pages, warm_errors = await asyncio.to_thread(
        fetch_pages, origin, client_id, WARMUP_PAGES, 1
    )
    warm, more_errors = await open_sockets(server.port, warm_pages, origin, WARMUP_PAGES)
    if warm_errors or more_errors or len(warm) != WARMUP_PAGES:
        raise RuntimeError(f"warm-up failed: {warm_errors + more_errors}")
    sockets: list[PageSocket] = []
    try:
        await asyncio.sleep(2)
        result.rss_before_kb = rss_kb(pid)

        pages, result.errors = await asyncio.to_thread(
            fetch_pages, origin, client_id, count, args.http_parallel
        )
        progress(f"  {len(pages)} pages in {time.monotonic() - started:.1f} s")
        sockets, ws_errors = await open_sockets(server.port, pages, origin, args.ws_concurrency)
        result.errors += ws_errors
        result.opened = len(sockets)
        progress(f"  {result.opened} sockets open at {time.monotonic() - started:.1f} s")

        await asyncio.sleep(args.settle)
        result.rss_after_kb = rss_kb(pid)
        result.threads_after = thread_count(pid)
        cpu_start, clock_start = cpu_seconds(pid), time.monotonic()
        await asyncio.sleep(args.cpu_window)
        cpu = cpu_seconds(pid) - cpu_start
        result.idle_cpu_percent = 100 * cpu / (time.monotonic() - clock_start)
        result.still_open = sum(s.open for s in sockets)
        if lost := result.opened - result.still_open:
            result.errors["WS closed while idle"] += lost
    finally:
        await asyncio.gather(*(s.close() for s in [*sockets, *warm]))
    result.seconds = time.monotonic() - started
    return result


# --- output ----------------------------------------------------------------------


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def code_version() -> str:
    def git(*argv: str) -> str:
        done = subprocess.run(["git", *argv], cwd=REPO, capture_output=True, text=True)
        return done.stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", "idp")
    return head + (" + uncommitted changes in idp/" if dirty else "")


def print_table(results: Sequence[Result]) -> None:
    header = (
        f"{'worker':<8} {'K':>6} {'open':>6} {'RSS before':>11} {'RSS after':>10} "
        f"{'KB/socket':>10} {'sockets/MB':>11} {'threads':>8} {'idle CPU':>9} {'errors':>7}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r.worker_class:<8} {r.count:>6} {r.still_open:>6} "
            f"{r.rss_before_kb / 1024:>8.1f} MB {r.rss_after_kb / 1024:>7.1f} MB "
            f"{r.kb_per_socket:>10.1f} {r.sockets_per_mb:>11.2f} {r.threads_after:>8} "
            f"{r.idle_cpu_percent:>8.2f}% {sum(r.errors.values()):>7}"
        )
    for r in results:
        if r.errors:
            details = ", ".join(f"{k}: {n}" for k, n in r.errors.most_common())
            print(f"errors {r.worker_class} K={r.count}: {details}")


def raise_file_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard == resource.RLIM_INFINITY else min(hard, max(soft, needed))
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft != resource.RLIM_INFINITY and soft < needed:
        progress(f"warning: open-file limit {soft} < {needed}; raise the hard limit")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])

    def int_list(text: str) -> list[int]:
        return [int(n) for n in text.split(",") if n]

    parser.add_argument(
        "--counts",
        type=int_list,
        default=[200, 1000, 2000],
        help="socket counts K, comma-separated (default 200,1000,2000)",
    )
    parser.add_argument(
        "--classes",
        type=lambda s: s.split(","),
        default=["gevent", "gthread"],
        help="gunicorn worker classes (default gevent,gthread)",
    )
    parser.add_argument(
        "--settle", type=float, default=5.0, help="seconds idle before reading the RSS (default 5)"
    )
    parser.add_argument(
        "--cpu-window",
        type=float,
        default=10.0,
        help="seconds of idle CPU measured (default 10)",
    )
    parser.add_argument(
        "--heartbeat",
        type=int,
        default=25,
        help="IDP_WS_HEARTBEAT for the server (default 25, the app's)",
    )
    parser.add_argument(
        "--http-parallel",
        type=int,
        default=4,
        help="keep-alive sessions fetching pages at once (default 4)",
    )
    parser.add_argument(
        "--ws-concurrency",
        type=int,
        default=100,
        help="WebSocket handshakes in flight at once (default 100)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if not Path("/proc/self/status").exists():
        raise SystemExit("this bench reads /proc: Linux only")
    raise_file_limit(2 * max(args.counts) + 1000)
    results: list[Result] = []
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="idp-bench-") as tmp:
        instance = Instance(Path(tmp), heartbeat=args.heartbeat)
        instance.set_up()
        for worker_class in args.classes:
            for count in args.counts:
                server = Gunicorn(worker_class, threads=count + 50, instance=instance)
                progress(f"{worker_class} K={count}: {' '.join(server.command())}")
                with server.running():
                    results.append(asyncio.run(measure(server, count, args)))
    print(
        f"\ncode {code_version()}; {os.cpu_count()} CPUs; Python {sys.version.split()[0]}; "
        f"IDP_WS_HEARTBEAT={args.heartbeat}; settle {args.settle:g} s; "
        f"idle CPU over {args.cpu_window:g} s; total {time.monotonic() - began:.0f} s\n"
    )
    print_table(results)


if __name__ == "__main__":
    main()
