"""The IdP under test: a database (SQLite file or a fresh PostgreSQL database), its
migration and fixtures through the ``idp`` command, and ``idp serve`` pinned to one core."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bench.proc import children

REPO = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
#: Every abuse limit (idp/limits.py), raised out of the load generator's reach in env().
LIMITS = ("BROWSER", "ENROLL", "PHONE_IP", "DEVICE", "PASSWORD")
POSTGRES_DSN = os.environ.get("BENCH_POSTGRES_DSN", "host=127.0.0.1 port=5432 user=postgres")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
REDIRECT_URI = "http://127.0.0.1:9/cb"
USERNAME = "bench"
PASSWORD = "bench-password-0123456789"
SERVER_CPU = 0
LOADGEN_CPU = 1


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def idp_command() -> list[str]:
    """The ``idp`` console script of this interpreter's environment."""
    script = Path(sys.executable).with_name("idp")
    if script.exists():
        return [str(script)]
    found = shutil.which("idp")
    if not found:
        raise SystemExit("the `idp` command is not installed: run `make install` first")
    return [found]


def pinning_available() -> bool:
    """``taskset`` exists and this machine has the two cores the harness pins to."""
    return shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2


@dataclass(frozen=True)
class Backend:
    """Where the IdP keeps its state and how its processes talk."""

    name: str  # "sqlite" or "postgres"
    database_url: str
    broker_url: str


@contextlib.contextmanager
def backend(name: str, tmp: Path) -> Iterator[Backend]:
    """A fresh SQLite file, or a fresh PostgreSQL database (dropped afterwards) + Redis."""
    if name == "sqlite":
        yield Backend(name, f"sqlite:///{tmp / 'idp.sqlite3'}", "memory://")
        return
    if name != "postgres":
        raise ValueError(f"unknown backend {name!r}")
    import psycopg
    import redis

    redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    database = f"idp_bench_{secrets.token_hex(6)}"
    with psycopg.connect(POSTGRES_DSN + " dbname=postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{database}"')
    try:
        params = dict(p.split("=", 1) for p in POSTGRES_DSN.split())
        url = (
            f"postgresql+psycopg://{params.get('user', 'postgres')}@"
            f"{params.get('host', HOST)}:{params.get('port', '5432')}/{database}"
        )
        yield Backend(name, url, REDIS_URL)
    finally:
        with psycopg.connect(POSTGRES_DSN + " dbname=postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


@dataclass
class IdP:
    """One IdP instance: its settings, fixtures and (while running) its server."""

    backend: Backend
    root: Path
    port: int = field(default_factory=free_port)
    secret_key: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    client_id: str = ""
    client_secret: str = ""
    service_id: str = ""  # a confidential client registered with --service-account
    service_secret: str = ""
    service_error: str = ""  # why there is none (a revision without the option)
    process: subprocess.Popen[bytes] | None = None
    workers: int = 1
    log_path: Path | None = None

    @property
    def issuer(self) -> str:
        return f"http://{HOST}:{self.port}"

    def env(self, **overrides: str) -> dict[str, str]:
        """The environment of every ``idp`` command: production settings except lifetimes
        long enough that no page, code or proof expires during a run."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}
        env |= {
            "IDP_INSTANCE_PATH": str(self.root / "instance"),
            "IDP_ISSUER": self.issuer,
            "IDP_DATABASE_URL": self.backend.database_url,
            "IDP_BROKER_URL": self.backend.broker_url,
            "IDP_SECRET_KEY": self.secret_key,
            "IDP_LOGIN_REQUEST_TTL": "900",
            "IDP_CODE_TTL": "600",
            # One load generator on 127.0.0.1 is every user at once: the abuse limits stay
            # on (their cost is measured) with budgets it cannot use up.
            **{f"IDP_LIMIT_{name}": "100000000/minute" for name in LIMITS},
            # Every waiting page comes from 127.0.0.1: the per-IP socket cap (default 100,
            # idp/realtime/views.py) would refuse all but the first hundred with 429.
            "IDP_WS_MAX_PER_IP": "1000000",
            # The bench user's many phones are each enrolled by password alone (a next
            # phone's approval by an old one is not what is measured).
            "IDP_PASSWORD_ENROLLMENT": "always",
            "PYTHONUNBUFFERED": "1",
        }
        return env | overrides

    def _idp(self, *argv: str, stdin: str | None = None) -> str:
        done = subprocess.run(
            [*idp_command(), *argv],
            env=self.env(),
            cwd=REPO,
            input=stdin,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"idp {' '.join(argv)} failed:\n{done.stderr[-2000:]}")
        return done.stdout

    def set_up(self) -> None:
        """Migrate, create the user, a confidential client (the phones enroll later) and a
        service account (``client_credentials``, introspection of its own tokens)."""
        self._idp("db", "upgrade")
        self._idp(
            "users", "create", USERNAME, "--email", "bench@example.com", "--name", "Bench User",
            "--password-stdin", stdin=PASSWORD + "\n",
        )  # fmt: skip
        created = json.loads(
            self._idp(
                "clients", "create", "--json", "--name", "Bench RP", "--redirect-uri", REDIRECT_URI
            )
        )
        self.client_id, self.client_secret = created["client_id"], created["client_secret"]
        argv = ["clients", "create", "--json", "--name", "Bench service"]
        argv += ["--redirect-uri", REDIRECT_URI, "--service-account"]
        try:
            service = json.loads(self._idp(*argv))
        except RuntimeError as error:  # a revision before service accounts
            self.service_error = str(error).strip().splitlines()[-1][:200]
            return
        self.service_id, self.service_secret = service["client_id"], service["client_secret"]

    def serve_command(self, worker_connections: int) -> list[str]:
        """``idp serve`` with one worker, pinned to the server core."""
        command = [*idp_command(), "serve", "--host", HOST, "--port", str(self.port)]
        command += ["--workers", str(self.workers), "--worker-connections", str(worker_connections)]
        if pinning_available():
            command = ["taskset", "-c", str(SERVER_CPU), *command]
        return command

    def start(self, *, heartbeat: int = 25, worker_connections: int = 12000) -> None:
        """Start the server (``serve_command``) and wait until its workers are ready."""
        command = self.serve_command(worker_connections)
        self.log_path = self.root / f"serve-{self.port}.log"
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command,
                env=self.env(IDP_WS_HEARTBEAT=str(heartbeat)),
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"idp serve exited:\n{self.log_tail()}")
            if len(self.worker_pids()) >= self.workers and self._ready():
                return
            time.sleep(0.1)
        raise RuntimeError(f"idp serve did not become ready:\n{self.log_tail()}")

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.issuer}/readyz", timeout=2) as response:  # noqa: S310
                return response.status == 200
        except OSError:
            return False

    def worker_pids(self) -> list[int]:
        """The gunicorn workers (children of the master)."""
        if self.process is None:
            return []
        return children(self.process.pid)

    @property
    def server_pids(self) -> tuple[int, ...]:
        """The master and its workers: everything whose CPU counts as the server's."""
        assert self.process is not None
        return (self.process.pid, *self.worker_pids())

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:] if self.log_path else ""

    def stop(self) -> None:
        """SIGTERM the process group (master and workers); SIGKILL if it lingers."""
        if self.process is None or self.process.poll() is not None:
            self.process = None
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        self.process = None

    @contextlib.contextmanager
    def running(self, **start: int) -> Iterator[IdP]:
        self.start(**start)
        try:
            yield self
        finally:
            self.stop()
