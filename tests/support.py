"""Test actors: a relying party, a browser and a phone, each doing what the real one does."""

from __future__ import annotations

import atexit
import base64
import concurrent.futures
import contextlib
import hashlib
import html
import itertools
import json
import os
import re
import secrets
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests
from flask import Flask
from joserfc import jwt
from joserfc.jwk import KeySet
from simple_websocket import Client as WebSocketClient
from simple_websocket import ConnectionClosed
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError, ProgrammingError
from werkzeug.serving import BaseWSGIServer, make_server

from idp import create_app, db
from idp.accounts.services import create_user
from idp.admin.services import create_client
from idp.migrate import upgrade
from idp.realtime.broker import RESTART
from idp_phone.api import ApprovalNeeded, PhoneClient

PASSWORD = "correct horse battery staple"

IN_CI = os.environ.get("CI") == "true"
POSTGRES_ADMIN_URL = os.environ.get(
    "IDP_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("IDP_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def service_missing(what: str, error: Exception) -> None:
    """Outside CI a missing service skips its tests, saying so; in CI it fails them."""
    message = f"{what} is not reachable ({error}); start it (see .ci/run)"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


@contextlib.contextmanager
def postgres_database(*, migrated: bool = False) -> Iterator[str]:
    """A fresh PostgreSQL database for one test, dropped afterwards: empty, or
    ``migrated`` (a copy of a template migrated once per schema, see ``_MIGRATED``)."""
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"idp_test_{secrets.token_hex(6)}"
    try:
        template = _postgres_template(admin) if migrated else None
        with admin.connect() as connection:
            copy = f' TEMPLATE "{template}"' if template else ""
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"{copy}')
    except OperationalError as error:
        admin.dispose()
        service_missing("PostgreSQL", error)
    url = make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    if migrated:
        _MIGRATED.add(url)
    try:
        yield url
    finally:
        _MIGRATED.discard(url)
        admin.dispose()
        # Dropping waits for a checkpoint (seconds on a busy server): done beside the
        # next test, and all of them before the test process exits.
        _DROPPER.submit(_drop_database, name)


_DROPPER = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="dropdb")
atexit.register(_DROPPER.shutdown, wait=True)


def _drop_database(name: str) -> None:
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.dispose()


#: Database URLs made from a migrated template: ``make_app`` needs not migrate them again.
#: Migrating takes most of a test's setup (seconds on PostgreSQL), copying a template a
#: fraction of it; the template's name carries a digest of the migrations, so a changed
#: migration gets a template of its own.
_MIGRATED: set[str] = set()
MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def _schema_digest() -> str:
    digest = hashlib.sha256()
    for path in sorted(MIGRATIONS.rglob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def _postgres_template(admin) -> str:
    """The migrated template database for this schema, made on first use."""
    name = f"idp_template_{_schema_digest()}"
    with admin.connect() as connection:
        if connection.exec_driver_sql(
            "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
        ).first():
            return name
        building = f"{name}_{secrets.token_hex(4)}"
        connection.exec_driver_sql(f'CREATE DATABASE "{building}"')
    url = make_url(POSTGRES_ADMIN_URL).set(database=building)
    upgrade(url.render_as_string(hide_password=False))
    with admin.connect() as connection:
        try:  # another test process may have finished one first: then use that
            connection.exec_driver_sql(f'ALTER DATABASE "{building}" RENAME TO "{name}"')
        except ProgrammingError:
            connection.exec_driver_sql(f'DROP DATABASE "{building}" WITH (FORCE)')
    return name


def sqlite_database(path: Path) -> str:
    """A migrated SQLite file at ``path`` (copied from a template migrated once)."""
    template = Path(tempfile.gettempdir()) / f"idp-template-{_schema_digest()}.sqlite3"
    if not template.exists():
        building = template.with_suffix(f".{os.getpid()}.{secrets.token_hex(4)}")
        upgrade(f"sqlite:///{building}")
        building.chmod(0o600)
        os.replace(building, template)  # whole or not at all, for other test processes
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template, path)
    path.chmod(0o600)  # as the IdP makes its own database files
    url = f"sqlite:///{path}"
    _MIGRATED.add(url)
    return url


def redis_url() -> str:
    """The test Redis, checked to answer."""
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as error:
        service_missing("Redis", error)
    return REDIS_URL


def listening_socket() -> socket.socket:
    """A socket listening on a free port of 127.0.0.1, for a server in this process: bound
    at once, so no other test or connection can take the port before the server serves."""
    return socket.create_server(("127.0.0.1", 0))


def serve_in_thread(listener: socket.socket, app: Any) -> tuple[BaseWSGIServer, threading.Thread]:
    """Serve ``app`` (werkzeug, threaded) on ``listener`` (which is closed: the server has
    its own duplicate of it) in a daemon thread."""
    port = listener.getsockname()[1]
    server = make_server("127.0.0.1", port, app, threaded=True, fd=listener.fileno())
    listener.close()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    return server, thread


def free_port() -> int:
    """A TCP port nobody listens on right now, for a server another process will bind.

    It is below the kernel's ephemeral range, where outgoing connections take their local
    ports (one of them could take a port picked there before the server binds it), and in
    a slice of its own for each pytest-xdist worker, so two workers never pick the same.
    """
    for _ in range(1000):
        port = next(_PORTS)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("no free port in this worker's slice")


def _port_slice() -> Iterator[int]:
    """This process's ports, from a random one on, round and round."""
    low = 10_000
    try:
        high = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        high = 32_768  # Linux's default start of the ephemeral range
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw"))
    size = (high - low) // workers
    assert size >= 100, f"the ephemeral ports start at {high}: too low for {workers} workers"
    ports = list(range(low + worker * size, low + (worker + 1) * size))
    start = secrets.randbelow(size)
    return itertools.cycle(ports[start:] + ports[:start])


_PORTS = _port_slice()


REDIRECT_URI = "http://localhost:9999/callback"


def add_user(app, username: str = "alice", **kwargs: Any):
    with app.app_context(), db.unit_of_work():
        return create_user(
            username,
            PASSWORD,
            email=kwargs.get("email", f"{username}@example.com"),
            name=kwargs.get("name", username.title() + " Example"),
        )


def add_client(
    app, *, public: bool = False, name: str = "Test RP", redirect_uri: str = REDIRECT_URI
):
    with app.app_context(), db.unit_of_work():
        client, secret = create_client(name, [redirect_uri], public=public)
        return client.client_id, secret


def enroll_phone(
    server_url: str,
    profile_dir: Path,
    username: str = "alice",
    *,
    approver: PhoneClient | None = None,
    device_name: str = "Test phone",
) -> PhoneClient:
    """A phone enrolled with the user's password; when the user has a phone already,
    ``approver`` (one of those) types the new phone's code and approves it."""
    phone = PhoneClient(profile_dir)
    try:
        phone.enroll(server_url, username, PASSWORD, device_name)
    except ApprovalNeeded as needed:
        assert approver is not None, "the user has a phone: pass approver= to approve this one"
        found = approver.lookup_enrollment(needed.pending.code)
        approver.approve_enrollment(found["pending_enrollment"]["id"])
        phone.wait_for_approval(needed.pending, interval=0.05)
    return phone


def enroll_by_invitation(
    server_url: str, token: str, key: Any = None, device_name: str = "Invited phone"
) -> requests.Response:
    """A phone sending an invitation link's token (``POST /devices``, enrollment proof):
    what the web app does. ``key``: the phone's key (a new one by default)."""
    from joserfc.jwk import ECKey

    from idp_phone.proof import make_proof, public_jwk

    key = key or ECKey.generate_key("P-256")
    url = f"{server_url}/api/mobile/v1/devices"
    body = json.dumps({"invitation": token, "device_name": device_name}).encode()
    proof = make_proof(key, "POST", url, body, jwk=public_jwk(key))
    headers = {"Device-Proof": proof, "Content-Type": "application/json"}
    return requests.post(url, data=body, headers=headers, timeout=10)


def terminal_qr_text(art: str) -> str:
    """The text of a QR code drawn in block characters (``idp.qrlogin.qr.qr_text``), read
    as a phone's camera would read it off the terminal (drawn characters light)."""
    import zxingcpp
    from PIL import Image

    # qrcode draws a blank module pair as a no-break space (code page 437's 255).
    halves = {"█": (1, 1), "▀": (1, 0), "▄": (0, 1), "\xa0": (0, 0), " ": (0, 0)}
    lines = [line for line in art.splitlines() if line and set(line) <= set(halves)]
    width = max(map(len, lines))
    image = Image.new("L", (width, 2 * len(lines)), 0)
    for y, line in enumerate(lines):
        for x, char in enumerate(line):
            top, bottom = halves[char]
            image.putpixel((x, 2 * y), 255 * top)
            image.putpixel((x, 2 * y + 1), 255 * bottom)
    image = image.resize((width * 8, len(lines) * 16), Image.NEAREST)
    found = [b.text for b in zxingcpp.read_barcodes(image) if b.valid]
    assert found, f"no QR code in:\n{art}"
    return found[0]


def make_app(tmp_path: Path, issuer: str = "http://127.0.0.1:8000", **config: Any) -> Flask:
    """A migrated IdP (SQLite in ``tmp_path`` unless ``IDP_DATABASE_URL`` is given)."""
    settings = {
        "TESTING": True,
        "IDP_ISSUER": issuer,
        "IDP_SECRET_KEY": "test-secret-key",
    }
    settings.update(config)
    url = settings.get("IDP_DATABASE_URL")
    if url is None:
        sqlite_file = tmp_path / "idp.sqlite3"
        url = settings["IDP_DATABASE_URL"] = (
            f"sqlite:///{sqlite_file}" if sqlite_file.exists() else sqlite_database(sqlite_file)
        )
    if url not in _MIGRATED:
        upgrade(url)
    app = create_app(settings, instance_path=str(tmp_path / "instance"))
    # A Redis broker is ready once Redis confirmed its subscription (until then /readyz
    # says "unreachable"): tests start from a settled app.
    wait_ready = getattr(app.extensions["idp.broker"], "wait_ready", None)
    assert wait_ready is None or wait_ready(10), "the Redis broker did not subscribe"
    return app


@contextlib.contextmanager
def running_app(
    tmp_path: Path, issuer: str = "http://127.0.0.1:8000", **config: Any
) -> Iterator[Flask]:
    """:func:`make_app` for a ``with`` block, which disposes of the app however it ends."""
    app = make_app(tmp_path, issuer, **config)
    try:
        yield app
    finally:
        dispose_app(app)


def record_publishes(app: Flask, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict]]:
    """Every message ``app``'s broker publishes from now on, in order, as (channel,
    message); each is still published."""
    broker = app.extensions["idp.broker"]
    messages: list[tuple[str, dict]] = []
    lock = threading.Lock()
    original = broker.publish

    def record(name: str, message: dict) -> None:
        with lock:
            messages.append((name, message))
        original(name, message)

    monkeypatch.setattr(broker, "publish", record)
    return messages


def dispose_app(app: Flask) -> None:
    """Release the app's connections (a PostgreSQL database can then be dropped), and end
    its page sockets now (as a stopping worker does), not at their next heartbeat: a
    live server's socket handlers outlive its shutdown, and would go on reading a
    database that is gone."""
    broker = app.extensions["idp.broker"]
    broker.broadcast(RESTART)
    broker.close()
    app.extensions["idp.db"].engine.dispose()


class PageSocket(WebSocketClient):
    """simple-websocket's client, for a page's socket, reading one byte at a time.

    Its handshake parses only the first event of what one read returned: a message the
    server sent right after the 101 response, in the same segment (gevent often does),
    would wait in its buffer until more data came. Read byte by byte (the documented
    ``receive_bytes``), the handshake takes only the response, and the message stays in
    the socket for the client's reader.
    """

    @classmethod
    def connect(cls, url: str, headers: dict[str, str] | None = None) -> PageSocket:
        return cls(url, headers=headers, receive_bytes=1)

    def drop(self) -> None:
        """Go away without a close frame (a tab killed, a network lost)."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()

    @property
    def local_port(self) -> int:
        """This end's TCP port (a proxy in between knows the connection by it)."""
        return self.sock.getsockname()[1]


def s256(verifier: str) -> str:
    return (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    )


@dataclass
class RelyingParty:
    """A minimal OIDC relying party: authorize URL with PKCE and nonce, code exchange."""

    idp_url: str
    client_id: str
    client_secret: str | None
    redirect_uri: str = REDIRECT_URI
    state: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    nonce: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    verifier: str = field(default_factory=lambda: secrets.token_urlsafe(48))

    def authorize_url(self, **overrides: str | None) -> str:
        params: dict[str, str | None] = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": self.redirect_uri,
            "scope": "openid profile email",
            "state": self.state,
            "nonce": self.nonce,
            "code_challenge": s256(self.verifier),
            "code_challenge_method": "S256",
        }
        params.update(overrides)
        return f"{self.idp_url}/authorize?" + urlencode({k: v for k, v in params.items() if v})

    def token(self, data: dict[str, str], *, auth: str = "basic") -> requests.Response:
        data = dict(data)
        kwargs: dict[str, Any] = {}
        if auth == "basic":
            kwargs["auth"] = (self.client_id, self.client_secret)
        elif auth == "post":
            data |= {"client_id": self.client_id, "client_secret": self.client_secret or ""}
        else:
            data |= {"client_id": self.client_id}
        return requests.post(f"{self.idp_url}/token", data=data, timeout=10, **kwargs)

    def exchange(self, code: str, verifier: str | None = None, **kw: Any) -> requests.Response:
        return self.token(
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": self.redirect_uri,
                "code_verifier": verifier or self.verifier,
            },
            **kw,
        )

    def verify_id_token(self, id_token: str) -> tuple[dict[str, Any], dict[str, Any]]:
        jwks = requests.get(f"{self.idp_url}/jwks", timeout=10).json()
        token = jwt.decode(id_token, KeySet.import_key_set(jwks), algorithms=["RS256", "ES256"])
        return dict(token.header), dict(token.claims)


@dataclass
class Page:
    """What the authorize page told its script."""

    state: dict[str, Any]
    response: requests.Response

    @property
    def id(self) -> str:
        return self.state["id"]

    @property
    def qr_url(self) -> str:
        return self.state["qr_url"]


class Browser:
    """A browser: a cookie jar, the authorize page's data, its WebSocket."""

    def __init__(self, idp_url: str) -> None:
        self.idp_url = idp_url
        self.session = requests.Session()
        self.session.headers["User-Agent"] = (
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36"
        )

    def open(self, url: str) -> Page:
        response = self.session.get(url, allow_redirects=False, timeout=10)
        assert response.status_code == 200, (response.status_code, response.text[:500])
        match = re.search(r'data-state="([^"]*)"', response.text)
        assert match, "the authorize page has no data-state"
        return Page(json.loads(html.unescape(match.group(1))), response)

    def cookie_header(self) -> str:
        return "; ".join(f"{c.name}={c.value}" for c in self.session.cookies)

    def socket(self, page_or_path: Page | str, *, origin: str | None = None, cookies: bool = True):
        path = page_or_path.state["socket_path"] if isinstance(page_or_path, Page) else page_or_path
        headers = {"Origin": origin or self.idp_url}
        if cookies:
            headers["Cookie"] = self.cookie_header()
        return PageSocket.connect("ws" + self.idp_url.removeprefix("http") + path, headers=headers)

    def renew(self, page: Page, *, origin: str | None = None) -> requests.Response:
        return self._post_json(page.state["renew_url"], origin)

    def restart(self, page: Page, *, origin: str | None = None) -> requests.Response:
        """What "Not you? Show a new code" does: release the scanned code for a new one."""
        return self._post_json(page.state["restart_url"], origin)

    def short_code(self, page: Page, *, origin: str | None = None) -> requests.Response:
        """What opening "Can't scan?" does: ask for a short code to type."""
        return self._post_json(page.state["short_code_url"], origin)

    def _post_json(self, path: str, origin: str | None) -> requests.Response:
        """The page script's POST of ``{}`` (from ``origin``, by default the IdP's own)."""
        return self.session.post(
            self.idp_url + path,
            headers={"Origin": origin or self.idp_url, "Content-Type": "application/json"},
            data="{}",
            timeout=10,
        )

    def complete(self, page: Page) -> requests.Response:
        return self.session.get(
            self.idp_url + page.state["complete_url"], allow_redirects=False, timeout=10
        )


def close_socket(ws) -> None:
    """Close from the client side, unless the server already did (or is doing so)."""
    with contextlib.suppress(ConnectionClosed, OSError):
        ws.close()


def next_message(ws, timeout: float = 10) -> dict[str, Any]:
    """The next status message on a page's socket, whole (heartbeats skipped)."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        raw = ws.receive(timeout=left)
        if raw is None:
            break
        message = json.loads(raw)
        if "status" in message:
            return message
    raise AssertionError("no status message in time")


def next_status(ws, timeout: float = 10) -> str:
    """The next status on a page's socket (heartbeats skipped)."""
    return next_message(ws, timeout)["status"]


def approve_and_exchange(rp: RelyingParty, browser: Browser, phone: PhoneClient) -> dict:
    """A whole sign-in: open the page, scan, approve, complete, exchange the code."""
    page = browser.open(rp.authorize_url())
    phone.approve(phone.scan(page.qr_url)["login_request"]["id"])
    response = rp.exchange(redirect_params(browser.complete(page))["code"])
    assert response.status_code == 200, response.text
    return response.json()


def checked_id_token(issuer: str, id_token: str, client_id: str) -> dict[str, Any]:
    """An ID token's claims, once its signature (the IdP's JWKS), ``iss``, ``aud``, ``exp``
    and how the phone approved (``amr``, ``acr``, ``auth_time``) check out."""
    jwks = requests.get(f"{issuer}/jwks", timeout=10).json()
    claims = dict(jwt.decode(id_token, KeySet.import_key_set(jwks), ["RS256", "ES256"]).claims)
    assert claims["iss"] == issuer and claims["aud"] == client_id, claims
    assert claims["exp"] > time.time() >= claims["auth_time"] - 5, claims
    assert claims["amr"] == ["swk", "user"] and claims["acr"] == "urn:qr-idp:acr:phone-approval"
    return claims


def redirect_params(response: requests.Response) -> dict[str, str]:
    """The query of a redirect to the relying party."""
    assert response.status_code == 302, (response.status_code, response.text[:300])
    location = response.headers["Location"]
    assert location.startswith(REDIRECT_URI + "?"), location
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
