"""Where the server's time goes: py-spy samples of the worker under load, sorted into
categories, and database round trips per request counted in-process.

py-spy (``--nonblocking``, so the worker is not paused) samples the running greenlet's
stack; idle time in gevent's hub is not sampled. A category's share is *inclusive*: the
share of samples with a matching frame anywhere on the stack, so categories overlap.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import html
import json
import re
import secrets
import shutil
import sys
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.server import REDIRECT_URI, IdP

#: category -> regular expressions (all must match a frame of the stack) over the frames
#: ``function (package/module.py:line)`` that py-spy reports.
CATEGORIES: dict[str, tuple[str, ...]] = {
    "QR rendering (qr_svg, qrcode)": (r"^qr_svg \(|\(qrcode/",),
    "Jinja2 templates": (r"\(jinja2/|render_template",),
    "argon2 password hashing": (r"argon2",),
    "JWT signing (RS256 ID token)": (r"AlgModel\.sign \(",),
    "device-proof verification (ES256)": (r"^check_proof \(",),
    "  of which device public-key import": (r"^check_proof \(", r"import_key \("),
    "  of which jti insert + commit": (r"^_record_jti \(",),
    "signing-key loading (KeyStore._load)": (r"KeyStore\._load \(",),
    "SQLAlchemy (ORM + core, incl. driver)": (r"\(sqlalchemy/",),
    "DB driver (psycopg, sqlite3 execute/commit, pool ping)": (
        r"\(psycopg/|^DefaultDialect\.do_(execute|commit|rollback|ping) |^_sqlite_(begin|connect)",
    ),
    "Authlib": (r"\(authlib/",),
    "JSON log lines (idp.ops.logs, logging)": (r"\(idp/ops/logs\.py|\(logging/",),
    "Prometheus metrics": (r"\(prometheus_client/",),
    "WebSocket (flask_sock, simple_websocket, wsproto)": (
        r"\(simple_websocket/|\(wsproto/|\(flask_sock/",
    ),
    "Redis broker publish/subscribe": (r"\(redis/|\(idp/realtime/broker\.py",),
    "gunicorn HTTP parsing": (r"\(gunicorn/http/",),
}
VIEWS: dict[str, str] = {
    "GET /authorize": r"^authorize \(idp/qrlogin/views.py",
    "WS /ws/login (handshake + first state)": r"^_authorize_socket \(|^login_socket \(",
    "POST scan": r"^scan \(idp/mobile/views.py",
    "POST approve": r"^approve \(idp/mobile/views.py",
    "GET /authorize/complete": r"^complete \(idp/qrlogin/views.py",
    "POST /token": r"^token \(idp/oauth/views.py",
    "GET/POST /userinfo": r"^userinfo \(idp/oauth/views.py",
    "POST /introspect": r"^introspect \(idp/oauth/views.py",
}
FRAME_RE = re.compile(r"^(.*) \((.*?):?(\d*)\)$")


def py_spy() -> str | None:
    found = Path(sys.executable).with_name("py-spy")
    return str(found) if found.exists() else shutil.which("py-spy")


async def profile_while(idp: IdP, seconds: float, load: Awaitable[Any], label: str) -> dict:
    """Sample the worker for ``seconds`` while ``load`` runs; categorize the samples."""
    binary = py_spy()
    if binary is None:
        with contextlib.suppress(Exception):
            await load
        return {"error": "py-spy is not installed (pip install -e '.[bench]')"}
    worker = idp.worker_pids()[0]
    out = Path(tempfile.mkdtemp(prefix="idp-pyspy-")) / f"{label}.txt"
    command = [binary, "record", "--pid", str(worker), "--duration", str(int(seconds))]
    command += ["--rate", "200", "--nonblocking", "--format", "raw", "--output", str(out)]
    spy = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    load_task = asyncio.ensure_future(load)
    _, stderr = await spy.communicate()
    with contextlib.suppress(Exception):
        await load_task
    if not out.exists():
        return {"error": f"py-spy failed: {stderr.decode(errors='replace')[-500:]}"}
    result = analyse(out.read_text())
    result["raw_file"] = str(out)
    return result


def _stacks(raw: str) -> Iterator[tuple[list[str], int]]:
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            yield stack.split(";"), int(count)


def analyse(raw: str) -> dict[str, Any]:
    """Inclusive category and view shares, and the top self-time frames."""
    total = 0
    inclusive: collections.Counter[str] = collections.Counter()
    views: collections.Counter[str] = collections.Counter()
    leaves: collections.Counter[str] = collections.Counter()
    packages: collections.Counter[str] = collections.Counter()
    compiled = {name: [re.compile(p) for p in ps] for name, ps in CATEGORIES.items()}
    compiled_views = {name: re.compile(p) for name, p in VIEWS.items()}
    for frames, count in _stacks(raw):
        total += count
        for name, patterns in compiled.items():
            if all(any(p.search(f) for f in frames) for p in patterns):
                inclusive[name] += count
        for name, pattern in compiled_views.items():
            if any(pattern.search(f) for f in frames):
                views[name] += count
                break
        leaves[_short(frames[-1])] += count
        packages[_package(frames[-1])] += count

    def share(n: int) -> float:
        return round(100 * n / total, 1) if total else 0.0

    return {
        "samples": total,
        "categories_percent": {name: share(inclusive[name]) for name in CATEGORIES},
        "views_percent": {name: share(views[name]) for name in VIEWS},
        "top_self_percent": {name: share(n) for name, n in leaves.most_common(12)},
        "self_by_package_percent": {name: share(n) for name, n in packages.most_common(14)},
    }


def _package(frame: str) -> str:
    """The top-level package of a frame's file (``idp.qrlogin`` for our own code)."""
    match = FRAME_RE.match(frame)
    if not match:
        return "?"
    parts = match.group(2).split("/")
    if parts[0] == "idp" and len(parts) > 2:
        return f"idp.{parts[1]}"
    return parts[0] if len(parts) > 1 else match.group(2)


def _short(frame: str) -> str:
    match = FRAME_RE.match(frame)
    if not match:
        return frame
    function, path, line = match.groups()
    for marker in ("site-packages/", "lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{function} ({path}:{line})"


def one_line(prefix: str, result: dict[str, Any]) -> str:
    if "error" in result:
        return f"{prefix} {result['error']}"
    top = sorted(result["categories_percent"].items(), key=lambda kv: -kv[1])[:6]
    return f"{prefix} samples={result['samples']} " + " ".join(f"[{k}: {v}%]" for k, v in top)


# --- database round trips per request, counted in-process ---------------------------------

ISSUER = "http://127.0.0.1:8000"
PHONE_PASSWORD = "round-trips-password"


def count_round_trips(database_url: str, tmp: Path) -> dict[str, dict[str, int]]:
    """Run one QR login (without the socket) and the token calls through Flask's test
    client, counting pool checkouts, BEGINs, statements and COMMIT/ROLLBACKs per request.

    A checkout also pings when the pool has ``pool_pre_ping`` (one more round trip).
    """
    app = _round_trips_app(database_url, tmp)
    engine = app.extensions["idp.db"].engine
    # A checkout costs a round trip only when the pool pings the connection first.
    pings = bool(getattr(engine.pool, "_pre_ping", False)) and engine.dialect.name != "sqlite"
    recorder = _Recorder(app.test_client(), _count_database_calls(engine), pings)
    clients = _round_trips_clients(app)
    phone = _Phone.enroll(recorder.http)
    # Warm up the signing keys (made and loaded once per process) with a first login.
    for round_ in ("warm", "measured"):
        # Signed out: the first round's completion signed this browser in (single sign-on),
        # and a signed-in browser gets its code without a QR page.
        recorder.http.delete_cookie("idp_sso")
        code, verifier = _login_requests(recorder, phone, clients)
        _token_requests(recorder, clients, code, verifier)
        if round_ == "warm":
            recorder.table.clear()
    app.extensions["idp.broker"].close()
    engine.dispose()
    return recorder.table


def _round_trips_app(database_url: str, tmp: Path) -> Any:
    """A migrated database and an app on it, in this process."""
    from idp import create_app
    from idp.migrate import upgrade

    upgrade(database_url)
    return create_app(
        {"IDP_DATABASE_URL": database_url, "IDP_ISSUER": ISSUER, "IDP_SECRET_KEY": "bench"},
        instance_path=str(tmp / "instance"),
    )


def _count_database_calls(engine: Any) -> collections.Counter[str]:
    """A counter the engine's events update: checkouts, begins, statements, commits and
    rollbacks."""
    from sqlalchemy import event

    counts: collections.Counter[str] = collections.Counter()
    event.listen(engine.pool, "checkout", lambda *_: counts.update(["checkouts"]))

    def sent(what: str) -> Any:
        # In autocommit (db.reads_only) the driver sends no BEGIN, COMMIT or ROLLBACK.
        def count(conn: Any, *_: Any) -> None:
            if conn.get_execution_options().get("isolation_level") != "AUTOCOMMIT":
                counts.update([what])

        return count

    event.listen(engine, "begin", sent("begins"))
    event.listen(engine, "before_cursor_execute", lambda *_: counts.update(["statements"]))
    event.listen(engine, "commit", sent("commits"))
    event.listen(engine, "rollback", sent("rollbacks"))
    return counts


@dataclass(frozen=True)
class _Clients:
    """The user's RP and (on revisions that have them) a service account."""

    basic: dict[str, str]
    client_id: str
    service_basic: dict[str, str] | None


def _round_trips_clients(app: Any) -> _Clients:
    """The user ``rt``, a confidential client and a service account, committed."""
    from idp import db
    from idp.accounts.services import create_user
    from idp.admin.services import create_client

    with app.app_context():
        create_user("rt", PHONE_PASSWORD, email=None, name=None)
        client, secret = create_client("RT", [REDIRECT_URI], public=False)
        try:
            service, service_secret = create_client(
                "RT service", [REDIRECT_URI], service_account=True
            )
        except TypeError:  # a revision before service accounts
            service, service_secret = None, None
        db.session.commit()  # (revisions whose services committed: nothing left to commit)
        service_basic = None
        if service is not None:
            service_basic = _basic(service.client_id, service_secret)
        return _Clients(_basic(client.client_id, secret), client.client_id, service_basic)


@dataclass
class _Recorder:
    """Flask's test client, and what each named request sent to the database."""

    http: Any
    counts: collections.Counter[str]
    pings: bool
    table: dict[str, dict[str, int]] = field(default_factory=dict)

    def measured(self, name: str, call: Callable[[], Any]) -> Any:
        """Make the request ``call`` and record its counts and status under ``name``."""
        self.counts.clear()
        response = call()
        self.table[name] = dict(self.counts) | {"status": response.status_code}
        self.table[name]["pings"] = self.table[name].get("checkouts", 0) if self.pings else 0
        return response


@dataclass
class _Phone:
    """An enrolled device talking to the phone API through the test client."""

    http: Any
    key: Any
    device_id: str = ""

    @classmethod
    def enroll(cls, http: Any) -> _Phone:
        from idp_phone.profile import generate_key
        from idp_phone.proof import public_jwk

        phone = cls(http, generate_key())
        payload = {"username": "rt", "password": PHONE_PASSWORD, "device_name": "p"}
        enrolled = phone.post("/devices", payload, jwk=public_jwk(phone.key))
        phone.device_id = enrolled.get_json()["device_id"]
        return phone

    def post(self, path: str, payload: dict[str, Any], **proof: Any) -> Any:
        """POST ``payload`` to the phone API with a fresh device proof."""
        from idp_phone.proof import make_proof

        url = f"{ISSUER}/api/mobile/v1{path}"
        body = json.dumps(payload).encode()
        headers = {"Device-Proof": make_proof(self.key, "POST", url, body, **proof)}
        return self.http.post(url, data=body, headers=headers, content_type="application/json")


def _login_requests(recorder: _Recorder, phone: _Phone, clients: _Clients) -> tuple[str, str]:
    """The QR login's requests (page, scan, approve, completion); its code and verifier."""
    from bench.actors import STATE_RE, s256

    http, measured = recorder.http, recorder.measured
    verifier = secrets.token_urlsafe(48)
    params = {
        "response_type": "code", "client_id": clients.client_id, "redirect_uri": REDIRECT_URI,
        "scope": "openid profile email", "state": "s", "nonce": secrets.token_urlsafe(8),
        "code_challenge": s256(verifier), "code_challenge_method": "S256",
    }  # fmt: skip
    page = measured("GET /authorize", lambda: http.get("/authorize", query_string=params))
    state = json.loads(html.unescape(STATE_RE.search(page.get_data(as_text=True)).group(1)))
    kid = phone.device_id
    measured(
        "POST scan", lambda: phone.post("/login-requests/scan", {"qr": state["qr_url"]}, kid=kid)
    )
    measured(
        "POST approve", lambda: phone.post(f"/login-requests/{state['id']}/approve", {}, kid=kid)
    )
    done = measured("GET /authorize/complete", lambda: http.get(state["complete_url"]))
    return done.headers["Location"].split("code=")[1].split("&")[0], verifier


def _token_requests(recorder: _Recorder, clients: _Clients, code: str, verifier: str) -> None:
    """The RP's token calls, the service account's, and the two public documents."""
    http, measured, basic = recorder.http, recorder.measured, clients.basic
    form = {
        "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI,
        "code_verifier": verifier,
    }  # fmt: skip
    tokens = measured(
        "POST /token (authorization_code)", lambda: http.post("/token", data=form, headers=basic)
    ).get_json()
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    measured("GET /userinfo", lambda: http.get("/userinfo", headers=bearer))
    refresh = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    measured(
        "POST /token (refresh_token)", lambda: http.post("/token", data=refresh, headers=basic)
    )
    if clients.service_basic is not None:
        _service_requests(recorder, clients.service_basic)
    measured("GET /jwks", lambda: http.get("/jwks"))
    measured("GET discovery", lambda: http.get("/.well-known/openid-configuration"))


def _service_requests(recorder: _Recorder, service_basic: dict[str, str]) -> None:
    """The service account's ``client_credentials`` token and its introspection."""
    http, measured = recorder.http, recorder.measured
    cc = measured(
        "POST /token (client_credentials)",
        lambda: http.post(
            "/token", data={"grant_type": "client_credentials"}, headers=service_basic
        ),
    ).get_json()
    measured(
        "POST /introspect",
        lambda: http.post("/introspect", data={"token": cc["access_token"]}, headers=service_basic),
    )


def _basic(client_id: str, secret: str) -> dict[str, str]:
    """The ``Authorization`` header of ``client_secret_basic``."""
    raw = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": "Basic " + raw}
