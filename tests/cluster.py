"""Real processes for the production-topology tests: `idp serve` processes, a layer-4
load balancer in front of them (which is also how a test cuts the network to
PostgreSQL), and a private Redis server that a test may kill and restart."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import requests

from support import free_port, service_missing

BIN = Path(sys.executable).parent


def wait_until(check: Callable[[], object], timeout: float = 30, what: str = "it") -> object:
    """Poll ``check`` until it returns something true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(Exception):
            if result := check():
                return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout} s")
        time.sleep(0.1)


class TcpProxy:
    """Forwards each TCP connection to the backend port chosen when it is accepted.

    In front of IdP processes it is the load balancer (``route`` picks where new
    connections go; open ones stay, as with a real one). In front of PostgreSQL
    it is the network: ``cut`` drops every connection and refuses new ones until
    ``restore``; ``freeze`` keeps every connection open but carries nothing (a hung
    host: the other side never answers) until ``thaw``.
    """

    def __init__(self, backend_port: int) -> None:
        self.backend_port = backend_port
        self._up = True
        self._flowing = threading.Event()
        self._flowing.set()
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        #: client-side port of an accepted connection -> local port of its upstream side
        self.upstream_of: dict[int, int] = {}
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._listener.settimeout(0.2)
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def route(self, backend_port: int) -> None:
        """Send new connections to ``backend_port``."""
        self.backend_port = backend_port

    def cut(self) -> None:
        """Drop every open connection and refuse new ones."""
        self._up = False
        with self._lock:
            for conn in list(self._open):
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
                conn.close()
            self._open.clear()

    def restore(self) -> None:
        self._up = True

    def freeze(self) -> None:
        """Stop carrying data, in either direction, on old and new connections alike."""
        self._flowing.clear()

    def thaw(self) -> None:
        self._flowing.set()

    def close(self) -> None:
        self._stopped.set()
        self.thaw()
        self.cut()
        self._thread.join(timeout=5)
        self._listener.close()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, (_, client_port) = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if not self._up:
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.backend_port), timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            client.settimeout(None)
            self.upstream_of[client_port] = upstream.getsockname()[1]
            with self._lock:
                self._open.update((client, upstream))
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                self._flowing.wait()
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
            with self._lock:
                self._open.discard(src)
                self._open.discard(dst)


class RedisServer:
    """A private redis-server on its own port, so a test may kill and restart it."""

    def __init__(self, tmp: Path) -> None:
        self.binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        if not Path(self.binary).exists():
            service_missing("redis-server (the program)", FileNotFoundError(self.binary))
        self.port = free_port()
        self.tmp = tmp
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.tmp),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        import redis

        client = redis.Redis(port=self.port, socket_connect_timeout=1)
        wait_until(client.ping, 15, "redis-server answering")
        client.close()

    def freeze(self) -> None:
        """SIGSTOP: connections stay open and new ones are accepted by the kernel, but
        nothing answers (a hung server, a stalled VM). Only ever this private server."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT: it answers again, everything that waited first."""
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL: the connections drop without goodbye, as in a crash."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None


class IdPProcess:
    """``idp serve`` in its own process group, logging to a file."""

    def __init__(self, tmp: Path, name: str, env: dict[str, str], workers: int = 1) -> None:
        self.name = name
        self.port = free_port()
        self.log = tmp / f"{name}.log"
        self.env = (
            os.environ
            | env
            | {
                "IDP_INSTANCE_PATH": str(tmp / f"instance-{name}"),
                "PYTHONUNBUFFERED": "1",
            }
        )
        self.workers = workers
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> IdPProcess:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [
                    str(BIN / "idp"),
                    "serve",
                    "--port",
                    str(self.port),
                    "--workers",
                    str(self.workers),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
            )
        wait_until(self._ready, 60, f"{self.name} ready:\n{self.log_text()}")
        return self

    def _ready(self) -> bool:
        assert self.process is not None and self.process.poll() is None, self.log_text()
        if len(self.worker_pids()) < self.workers:
            return False
        return requests.get(f"{self.url}/readyz", timeout=2).status_code == 200

    def worker_pids(self) -> list[int]:
        assert self.process is not None
        return [child.pid for child in psutil.Process(self.process.pid).children()]

    def worker_holding(self, peer_port: int) -> int:
        """The worker with an open connection from local port ``peer_port``."""
        for pid in self.worker_pids():
            for conn in psutil.Process(pid).net_connections(kind="tcp"):
                if conn.raddr and conn.raddr.port == peer_port:
                    return pid
        raise AssertionError(f"no worker of {self.name} holds a connection from {peer_port}")

    def metric(self, name: str, **labels: str) -> float:
        """One sample from this process's /metrics (0 when it has not been recorded)."""
        from prometheus_client.parser import text_string_to_metric_families

        text = requests.get(f"{self.url}/metrics", timeout=5).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(
                    sample.labels.get(k) == v for k, v in labels.items()
                ):
                    return sample.value
        return 0.0

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def terminate(self) -> int:
        """SIGTERM, as a deploy or a scale-down does; returns the exit status."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGTERM)
        return self.process.wait(timeout=30)

    def stop(self) -> None:
        """Quick shutdown, after the test (SIGQUIT): a graceful one (``terminate``) waits
        for every client's idle keep-alive connection to time out, 5 s."""
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGQUIT)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


def seeded_idp(
    tmp_path: Path,
    site_url: str,
    client_name: str,
    env: dict[str, str] | None = None,
    **client_options: Any,
) -> tuple[IdPProcess, str, str | None]:
    """A started `idp serve` on a SQLite file, with user alice ("Alice Example") and one
    client redirecting to ``{site_url}/callback``: (the process, client id, secret)."""
    from idp import db
    from idp.admin.services import create_client
    from support import add_user, running_app

    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    database = f"sqlite:///{tmp_path / 'idp.sqlite3'}"
    with running_app(tmp_path / "setup", issuer=issuer, IDP_DATABASE_URL=database) as setup:
        add_user(setup, "alice", name="Alice Example")
        with setup.app_context(), db.unit_of_work():
            client, secret = create_client(client_name, [f"{site_url}/callback"], **client_options)
            client_id = client.client_id
    settings = {
        "IDP_ISSUER": issuer,
        "IDP_DATABASE_URL": database,
        "IDP_SECRET_KEY": "browser-test-secret",
        "IDP_LOG_FORMAT": "text",
    }
    idp = IdPProcess(tmp_path, "idp", settings | (env or {}))
    idp.port = port
    idp.start()
    return idp, client_id, secret
