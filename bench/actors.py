"""The load generator's actors, over one aiohttp session (keep-alive): a browser on the
authorize page with its WebSocket, the enrolled phone with its ES256 device proofs
(``idp_phone.proof``, the reference app's own code), and the relying party."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import html
import json
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import aiohttp
from joserfc.jwk import ECKey

from bench.server import REDIRECT_URI, IdP
from idp_phone.profile import generate_key
from idp_phone.proof import make_proof, public_jwk

USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36"
STATE_RE = re.compile(r'data-state="([^"]*)"')
BINDING_COOKIE = "idp_binding"  # its name on a plain-http (loopback) issuer
API = "/api/mobile/v1"


class FlowError(Exception):
    """One step of a flow got an answer it should not have."""


def new_session(limit: int = 0) -> aiohttp.ClientSession:
    """One keep-alive session; cookies are handled per actor, not by a shared jar."""
    connector = aiohttp.TCPConnector(limit=limit, ttl_dns_cache=None, force_close=False)
    return aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),
        timeout=aiohttp.ClientTimeout(total=60),
        headers={"User-Agent": USER_AGENT},
        skip_auto_headers=("Accept-Encoding",),
    )


def s256(verifier: str) -> str:
    return (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    )


def basic_auth(idp: IdP, *, service: bool = False) -> str:
    """``client_secret_basic`` for the bench RP, or (``service``) for the service account."""
    if service:
        raw = f"{idp.service_id}:{idp.service_secret}".encode()
    else:
        raw = f"{idp.client_id}:{idp.client_secret}".encode()
    return "Basic " + base64.b64encode(raw).decode()


@dataclass
class Page:
    """An authorize page as a browser holds it: its state, binding cookie and PKCE."""

    state: dict[str, Any]
    cookie: str
    oauth_state: str
    verifier: str

    @property
    def id(self) -> str:
        return self.state["id"]


async def open_page(http: aiohttp.ClientSession, idp: IdP) -> Page:
    """``GET /authorize`` as a new browser: PKCE S256, nonce, state."""
    verifier = secrets.token_urlsafe(48)
    oauth_state = secrets.token_urlsafe(12)
    params = {
        "response_type": "code",
        "client_id": idp.client_id,
        "redirect_uri": REDIRECT_URI,
        "scope": "openid profile email",
        "state": oauth_state,
        "nonce": secrets.token_urlsafe(12),
        "code_challenge": s256(verifier),
        "code_challenge_method": "S256",
    }
    async with http.get(f"{idp.issuer}/authorize?{urlencode(params)}") as response:
        text = await response.text()
        cookie = response.cookies.get(BINDING_COOKIE)
        if response.status != 200 or cookie is None:
            raise FlowError(f"authorize HTTP {response.status}")
    match = STATE_RE.search(text)
    if not match:
        raise FlowError("authorize page without data-state")
    state = json.loads(html.unescape(match.group(1)))
    return Page(state, f"{BINDING_COOKIE}={cookie.value}", oauth_state, verifier)


class PageSocket:
    """The page's WebSocket; records when each status arrived."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, page: Page) -> None:
        self.ws = ws
        self.page = page
        self.statuses: list[tuple[str, float]] = []
        self._changed = asyncio.Event()
        self._task = asyncio.create_task(self._listen())

    @classmethod
    async def connect(cls, http: aiohttp.ClientSession, idp: IdP, page: Page) -> PageSocket:
        ws = await http.ws_connect(
            f"ws://{idp.issuer.removeprefix('http://')}{page.state['socket_path']}",
            headers={"Origin": idp.issuer, "Cookie": page.cookie},
            autoclose=True,
            autoping=True,
            max_msg_size=4096,
            # Offer permessage-deflate, as browsers do (aiohttp does not by default): what
            # the server does with the offer is part of a waiting page's cost.
            compress=15,
        )
        self = cls(ws, page)
        await self.wait_for({"pending", "scanned", "approved"}, timeout=30)
        return self

    async def _listen(self) -> None:
        async for message in self.ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(message.data)
            if "status" in data:
                self.statuses.append((data["status"], time.perf_counter()))
                self._changed.set()
        self._changed.set()

    async def wait_for(self, wanted: set[str], timeout: float = 30) -> float:
        """The arrival time of the first status in ``wanted`` (already arrived or next)."""
        deadline = time.monotonic() + timeout
        while True:
            for status, at in self.statuses:
                if status in wanted:
                    return at
            if self.ws.closed and self._task.done():
                raise FlowError(f"socket closed after {[s for s, _ in self.statuses]}")
            self._changed.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                raise FlowError(f"no {sorted(wanted)} on the socket in {timeout} s")
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except TimeoutError:
                continue

    async def close(self) -> None:
        if not self.ws.closed:
            await self.ws.close()
        self._task.cancel()


@dataclass
class Phone:
    """An enrolled device. Every request gets a fresh proof (new ``jti``)."""

    idp: IdP
    key: ECKey
    device_id: str = ""

    async def _post(
        self, http: aiohttp.ClientSession, path: str, payload: dict[str, Any], **proof: Any
    ) -> tuple[int, dict[str, Any]]:
        url = f"{self.idp.issuer}{API}{path}"
        body = json.dumps(payload, separators=(",", ":")).encode()
        if not proof:
            proof = {"kid": self.device_id}
        headers = {
            "Device-Proof": make_proof(self.key, "POST", url, body, **proof),
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        async with http.post(url, data=body, headers=headers) as response:
            return response.status, await response.json(content_type=None)

    @classmethod
    async def enroll(
        cls, http: aiohttp.ClientSession, idp: IdP, username: str, password: str, name: str
    ) -> Phone:
        phone = cls(idp, generate_key())
        payload = {"username": username, "password": password, "device_name": name}
        status, data = await phone._post(http, "/devices", payload, jwk=public_jwk(phone.key))
        if status != 201:
            raise FlowError(f"enroll HTTP {status}: {data}")
        phone.device_id = data["device_id"]
        return phone

    async def scan(self, http: aiohttp.ClientSession, page: Page) -> None:
        status, data = await self._post(http, "/login-requests/scan", {"qr": page.state["qr_url"]})
        if status != 200 or data["login_request"]["status"] != "scanned":
            raise FlowError(f"scan HTTP {status}: {data}")

    async def approve(self, http: aiohttp.ClientSession, page: Page) -> None:
        status, data = await self._post(http, f"/login-requests/{page.id}/approve", {})
        if status != 200:
            raise FlowError(f"approve HTTP {status}: {data}")


async def complete(http: aiohttp.ClientSession, idp: IdP, page: Page) -> str:
    """The page's completion redirect; returns the authorization code."""
    url = idp.issuer + page.state["complete_url"]
    async with http.get(url, headers={"Cookie": page.cookie}, allow_redirects=False) as response:
        await response.read()
        location = response.headers.get("Location", "")
        if response.status != 302 or not location.startswith(REDIRECT_URI + "?"):
            raise FlowError(f"complete HTTP {response.status} {location[:80]}")
    query = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    if query.get("state") != page.oauth_state or query.get("iss") != idp.issuer:
        raise FlowError("completion redirect with a wrong state or iss")
    return query["code"]


async def token_request(
    http: aiohttp.ClientSession, idp: IdP, form: dict[str, str], *, service: bool = False
) -> dict[str, Any]:
    """``POST /token`` with ``client_secret_basic``; the JSON answer of a 200."""
    headers = {"Authorization": basic_auth(idp, service=service)}
    async with http.post(f"{idp.issuer}/token", data=form, headers=headers) as response:
        data = await response.json(content_type=None)
        if response.status != 200:
            raise FlowError(f"token HTTP {response.status}: {data}")
        return data


async def exchange(http: aiohttp.ClientSession, idp: IdP, code: str, verifier: str) -> dict:
    """The code exchange, as the RP does it."""
    tokens = await token_request(
        http,
        idp,
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier,
        },
    )
    if not tokens.get("id_token") or not tokens.get("refresh_token"):
        raise FlowError("token answer without id_token or refresh_token")
    return tokens


async def service_token(http: aiohttp.ClientSession, idp: IdP) -> str:
    """A ``client_credentials`` access token of the service account (no refresh or ID
    token may come with it)."""
    tokens = await token_request(http, idp, {"grant_type": "client_credentials"}, service=True)
    if "refresh_token" in tokens or "id_token" in tokens or not tokens.get("access_token"):
        raise FlowError(f"client_credentials answer with keys {sorted(tokens)}")
    return tokens["access_token"]


async def introspect(http: aiohttp.ClientSession, idp: IdP, token: str) -> dict[str, Any]:
    """``POST /introspect`` as the service account; the answer must say ``active``."""
    headers = {"Authorization": basic_auth(idp, service=True)}
    form = {"token": token}  # no hint, like the reference's load
    async with http.post(f"{idp.issuer}/introspect", data=form, headers=headers) as response:
        data = await response.json(content_type=None)
        if response.status != 200 or data.get("active") is not True:
            raise FlowError(f"introspect HTTP {response.status} active={data.get('active')}")
        return data


async def userinfo(http: aiohttp.ClientSession, idp: IdP, access_token: str) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {access_token}"}
    async with http.get(f"{idp.issuer}/userinfo", headers=headers) as response:
        data = await response.json(content_type=None)
        if response.status != 200 or "sub" not in data:
            raise FlowError(f"userinfo HTTP {response.status}")
        return data


@dataclass
class LoginTimes:
    """One end-to-end QR login, timed per step (seconds)."""

    steps: dict[str, float] = field(default_factory=dict)
    approve_to_page: float = 0.0
    total: float = 0.0
    tokens: dict[str, Any] = field(default_factory=dict)


async def qr_login(http: aiohttp.ClientSession, idp: IdP, phone: Phone) -> LoginTimes:
    """Authorize page → WebSocket → scan → approve → page's message → completion
    redirect → code exchange → UserInfo."""
    times = LoginTimes()
    start = mark = time.perf_counter()

    def step(name: str) -> None:
        nonlocal mark
        now = time.perf_counter()
        times.steps[name] = now - mark
        mark = now

    page = await open_page(http, idp)
    step("authorize_page")
    socket = await PageSocket.connect(http, idp, page)
    step("ws_subscribe")
    try:
        await phone.scan(http, page)
        step("scan")
        approve_sent = time.perf_counter()
        await phone.approve(http, page)
        step("approve")
        arrived = await socket.wait_for({"approved"})
        times.approve_to_page = arrived - approve_sent
        mark = max(mark, arrived)
        step("page_message")
    finally:
        await socket.close()
    code = await complete(http, idp, page)
    step("complete_redirect")
    times.tokens = await exchange(http, idp, code, page.verifier)
    step("token")
    await userinfo(http, idp, times.tokens["access_token"])
    step("userinfo")
    times.total = time.perf_counter() - start
    return times


async def harvest_code(http: aiohttp.ClientSession, idp: IdP, phone: Phone) -> tuple[str, str]:
    """A fresh authorization code and its PKCE verifier, by the real flow without the
    page's socket (the completion reads the approved state from the database)."""
    page = await open_page(http, idp)
    await phone.scan(http, page)
    await phone.approve(http, page)
    return await complete(http, idp, page), page.verifier
