"""OpenID CIBA (Client-Initiated Backchannel Authentication Core 1.0): a site's server
asks for a known user's approval on the phone, without a browser.

``POST /bc-authorize`` (CIBA Core §7) takes the site's request: a confidential client
registered for CIBA (``idp clients create --ciba``) authenticates as at the token
endpoint, names the user (exactly one of ``login_hint``, a username or email, and
``id_token_hint``, an ID token this IdP issued to it; ``login_hint_token`` is refused) and
may say what it is about (``binding_message``, shown on the phone). The answer is an
``auth_req_id`` the site polls the token endpoint with (``idp.oauth.polling``), or, in
ping mode, waits for a POST to its notification endpoint (:class:`Pinger`).

The request is a ``login_requests`` row of kind ``backchannel``, for the user it names,
waiting in that user's phones' inbox (``idp.mobile.inbox``). A hint that names nobody is
answered exactly as one that names someone: a row is made (``user_id`` NULL, subject
``hint:<digest>``) which no phone sees, so the site polls ``authorization_pending`` until
``expired_token``, as for a user who ignores it.

Against push bombing (a site, or a stolen client secret, flooding a user's phone until
they tap Approve to make it stop), for each subject (the user, or the hint):

- at most one open request per client: a second is refused (400 ``invalid_request``);
- at most ``IDP_LIMIT_CIBA_SUBJECT`` requests, from every client together (429 with
  ``Retry-After``);
- a user who denied the last three of one client's requests hears no more from it for
  ``IDP_CIBA_MUTE`` (refused as a pending one is, audited ``ciba.muted``).

An unknown hint meets the same rules, so none of the answers tells a site whether a
hint names someone.
"""

from __future__ import annotations

import contextlib
import hashlib
import heapq
import http.client
import itertools
import json
import logging
import queue
import re
import threading
import time
import unicodedata
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from authlib.oauth2.rfc6749 import scope_to_list
from flask import Flask, current_app
from flask_babel import lazy_gettext as _l
from sqlalchemy import select, text

from idp import audit, db
from idp.accounts.models import User
from idp.accounts.services import users_named
from idp.db import utcnow
from idp.errors import IdPError, InvalidRequest
from idp.oauth import polling
from idp.oauth.keys import hinted_claims
from idp.oauth.models import Client
from idp.oauth.polling import CIBA_GRANT_TYPE
from idp.qrlogin import lifecycle
from idp.qrlogin.lifecycle import OPEN, Kind, Status
from idp.qrlogin.models import DenialReason, LoginRequest
from idp.web import Caller

log = logging.getLogger(__name__)

#: A ``binding_message``: at most this many characters.
BINDING_MESSAGE_MAX = 40
#: Besides letters (of any script, with their combining marks) and digits.
BINDING_PUNCTUATION = frozenset(" .,-:!?'#()/")
#: A ping-mode client's ``client_notification_token`` (a bearer token, RFC 6750 §2.1).
NOTIFICATION_TOKEN_RE = re.compile(r"[A-Za-z0-9._~+/-]+=*")
NOTIFICATION_TOKEN_MAX = 1024
LOGIN_HINT_MAX = 320
#: How many denials in a row from one client mute it for the user.
MUTE_AFTER = 3
#: The parameters that must not be repeated.
SINGLE = (
    "scope",
    "login_hint",
    "id_token_hint",
    "login_hint_token",
    "binding_message",
    "requested_expiry",
    "client_notification_token",
    "user_code",
)


class InvalidBindingMessage(IdPError):
    status, code = 400, "invalid_binding_message"
    title = _l("The message to show on the phone is not valid")


class UnauthorizedClient(IdPError):
    status, code = 400, "unauthorized_client"
    title = _l("This website may not sign in this way")


class InvalidScope(IdPError):
    status, code = 400, "invalid_scope"
    title = _l("This website asked for access this service does not give")


#: One answer for a subject with an open request from this client and for a muted one.
BUSY = (
    "a request of this client for this user is still waiting, or the user refused its last"
    " ones: wait for it to end (or for a while), then ask again"
)


@dataclass(frozen=True)
class Subject:
    """Whom a request is for: a user, or a hint that names nobody (``user_id`` None)."""

    key: str
    user_id: int | None
    username: str | None


@dataclass(frozen=True)
class Started:
    """A backchannel request made (its answer), not yet committed."""

    answer: dict[str, Any]
    user_id: int | None


def start(client: Client, form: Any, *, caller: Caller) -> Started:
    """Check a ``/bc-authorize`` request of an authenticated ``client`` and add its
    backchannel request in the caller's transaction (the view commits it, then announces
    it to the user's inbox)."""
    if CIBA_GRANT_TYPE not in client.grant_types:
        raise UnauthorizedClient("this client is not registered for CIBA")
    for name in SINGLE:
        if len(form.getlist(name)) > 1:
            raise InvalidRequest(f"'{name}' must not be repeated")
    if "request" in form:
        raise InvalidRequest("signed authentication requests ('request') are not supported")
    scope = _scope(client, form.get("scope"))
    subject = _subject(client, form)
    binding_message = _binding_message(form.get("binding_message"))
    config = current_app.config
    ttl = config["IDP_CIBA_TTL"]
    if (requested := form.get("requested_expiry")) is not None:
        ttl = min(ttl, _requested_expiry(requested))
    mode = client.backchannel_token_delivery_mode or "poll"
    token = _notification_token(form.get("client_notification_token")) if mode == "ping" else None
    # user_code (CIBA §7.1) is ignored: this IdP advertises no support for it, and the
    # approval on the user's own enrolled phone is what a user code would stand for.
    _charge_subject(subject)  # Redis: before this request writes (or locks) anything
    login, auth_req_id = _new_request(
        client,
        subject,
        scope=scope,
        ttl=ttl,
        binding_message=binding_message,
        token=token,
        caller=caller,
    )
    answer = {"auth_req_id": auth_req_id, "expires_in": ttl, "interval": login.poll_interval}
    return Started(answer, subject.user_id)


def add_discovery(metadata: dict[str, Any], issuer: str) -> None:
    """CIBA's provider metadata (CIBA Core §4), added to the discovery document."""
    grants = metadata.setdefault("grant_types_supported", [])
    if CIBA_GRANT_TYPE not in grants:
        grants.append(CIBA_GRANT_TYPE)
    metadata["backchannel_authentication_endpoint"] = f"{issuer}/bc-authorize"
    metadata["backchannel_token_delivery_modes_supported"] = ["poll", "ping"]
    metadata["backchannel_user_code_parameter_supported"] = False


def _scope(client: Client, scope: str | None) -> str:
    """The scope granted: what the client may have of what it asked; it must ask for
    ``openid`` (CIBA §7.1: a CIBA request is an OpenID request; the spec leaves the
    answer to one without it unspecified, and §13's ``invalid_scope`` says it)."""
    if not scope or "\x00" in scope or len(scope) > 500:
        raise InvalidScope("'scope' is required and must contain 'openid'")
    if "openid" not in scope_to_list(scope):
        raise InvalidScope("'scope' must contain 'openid'")
    return client.get_allowed_scope(scope)


def _subject(client: Client, form: Any) -> Subject:
    """The user the request names, with exactly one hint (CIBA §7.1)."""
    given = [name for name in ("login_hint", "id_token_hint", "login_hint_token") if name in form]
    if len(given) != 1:
        raise InvalidRequest(
            "send exactly one of 'login_hint' and 'id_token_hint' to name the user"
            + (f" (got {', '.join(given)})" if given else "")
        )
    if given[0] == "login_hint_token":
        raise InvalidRequest("login_hint_token is not supported: send login_hint or id_token_hint")
    if given[0] == "login_hint":
        hint = form["login_hint"]
        if not hint.strip() or len(hint) > LOGIN_HINT_MAX or _has_controls(hint):
            raise InvalidRequest(
                f"'login_hint' must be a username or email of at most {LOGIN_HINT_MAX} characters"
            )
        named = users_named(hint)
        folded = "login_hint:" + hint.strip().lower()
        return _subject_of(next(iter(named)) if len(named) == 1 else None, folded)
    claims = hinted_claims(form["id_token_hint"])
    if not claims or not isinstance(claims.get("sub"), str):
        raise InvalidRequest("'id_token_hint' is not an ID token this server issued")
    audience = claims.get("aud")
    audiences = [audience] if isinstance(audience, str) else audience
    if not isinstance(audiences, list) or client.client_id not in audiences:
        raise InvalidRequest("'id_token_hint' was not issued to this client")
    user_id = db.session.scalar(select(User.id).where(User.subject == claims["sub"]))
    return _subject_of(user_id, "sub:" + claims["sub"])


def _subject_of(user_id: int | None, hint: str) -> Subject:
    # The same query either way: a hint naming nobody costs what one naming a user does.
    username = db.session.scalar(select(User.username).where(User.id == (user_id or -1)))
    if user_id is None:
        return Subject("hint:" + hashlib.sha256(hint.encode()).hexdigest(), None, None)
    return Subject(f"user:{user_id}", user_id, username)


def _has_controls(value: str) -> bool:
    return any(unicodedata.category(c)[0] == "C" for c in value)


def check_binding_message(message: str) -> str:
    """A ``binding_message`` the phone can show as it is: 1 to 40 letters (of any script),
    digits, spaces and basic punctuation (``. , - : ! ? ' # ( ) /``), or
    :class:`InvalidBindingMessage`."""
    message = unicodedata.normalize("NFC", message)
    allowed = all(
        c.isalnum()
        or c in BINDING_PUNCTUATION
        or (i > 0 and unicodedata.category(c) in ("Mn", "Mc"))  # a letter's marks
        for i, c in enumerate(message)
    )
    if not message.strip() or len(message) > BINDING_MESSAGE_MAX or not allowed:
        raise InvalidBindingMessage(
            f"'binding_message' must be 1 to {BINDING_MESSAGE_MAX} letters, digits, spaces"
            " or . , - : ! ? ' # ( ) /"
        )
    return message


def _binding_message(message: str | None) -> str | None:
    return None if message is None else check_binding_message(message)


def _requested_expiry(value: str) -> int:
    """``requested_expiry`` (CIBA §7.1): a positive whole number of seconds."""
    if not re.fullmatch(r"[0-9]{1,9}", value) or int(value) < 1:
        raise InvalidRequest("'requested_expiry' must be a positive whole number of seconds")
    return int(value)


def _notification_token(token: str | None) -> str:
    """A ping-mode client's ``client_notification_token`` (CIBA §7.1: required)."""
    if token is None:
        raise InvalidRequest("a ping-mode client must send 'client_notification_token'")
    if len(token) > NOTIFICATION_TOKEN_MAX or not NOTIFICATION_TOKEN_RE.fullmatch(token):
        raise InvalidRequest(
            "'client_notification_token' must be a bearer token (RFC 6750 characters) of at"
            f" most {NOTIFICATION_TOKEN_MAX} characters"
        )
    return token


def _charge_subject(subject: Subject) -> None:
    """Count one request against the subject's budget (``IDP_LIMIT_CIBA_SUBJECT``, every
    client together); a used-up budget raises ``RateLimitExceeded`` (429, ``Retry-After``).
    In Redis: the transaction so far is ended first (it has only read)."""
    from flask_limiter import Limiter

    db.release_before_yield()
    limiter: Limiter = current_app.extensions["idp.limiter"]
    budget = limiter.shared_limit(
        current_app.config["IDP_LIMIT_CIBA_SUBJECT"],
        scope="ciba-subject",
        key_func=lambda: subject.key,
    )
    with budget:
        pass


def _new_request(
    client: Client,
    subject: Subject,
    *,
    scope: str,
    ttl: int,
    binding_message: str | None,
    token: str | None,
    caller: Caller,
) -> tuple[LoginRequest, str]:
    """Refuse a second open request and a muted client, then add the request (the view
    commits it). The checks and the insert are one transaction, serialized per subject
    and client (SQLite: its one writer; PostgreSQL: an advisory lock until commit)."""
    _serialize(subject, client)
    now = utcnow()
    same = (
        LoginRequest.kind == Kind.BACKCHANNEL,
        LoginRequest.subject_key == subject.key,
        LoginRequest.client_id == client.client_id,
    )
    waiting = db.session.scalar(
        select(LoginRequest.id)
        .where(*same, LoginRequest.status.in_(OPEN), LoginRequest.expires_at > now)
        .limit(1)
    )
    if waiting is not None:
        raise InvalidRequest(BUSY)
    if subject.user_id is not None and _muted(same, now):
        _refuse_muted(subject, client, caller)
    login, auth_req_id = polling.new_request(
        kind=Kind.BACKCHANNEL,
        client=client,
        scope=scope,
        caller=caller,
        ttl=ttl,
        interval=current_app.config["IDP_CIBA_POLL_INTERVAL"],
        user_id=subject.user_id,
        subject_key=subject.key,
        binding_message=binding_message,
        notification_token=token,
    )
    audit.record(
        "ciba.requested",
        caller=caller,
        username=subject.username,
        client_id=client.client_id,
        request=login.id[:8],
        known=subject.user_id is not None,
        mode=client.backchannel_token_delivery_mode or "poll",
    )
    return login, auth_req_id


def _refuse_muted(subject: Subject, client: Client, caller: Caller) -> None:
    """Refuse a muted client's request; the refusal is audited, and that stands."""
    with db.stand_alone():
        audit.record(
            "ciba.muted", caller=caller, username=subject.username, client_id=client.client_id
        )
    raise InvalidRequest(BUSY)


def _serialize(subject: Subject, client: Client) -> None:
    """Make concurrent requests for one subject and client take turns until commit."""
    if db.session.get_bind().dialect.name != "postgresql":
        db.session.execute(select(1))  # SQLite: BEGIN IMMEDIATE takes the one write lock
        return
    digest = hashlib.sha256(f"ciba\0{subject.key}\0{client.client_id}".encode()).digest()
    key = int.from_bytes(digest[:8], "big", signed=True)
    db.session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


def _muted(same: tuple[Any, ...], now: Any) -> bool:
    """The user denied the last :data:`MUTE_AFTER` decided requests of this client, the
    last within ``IDP_CIBA_MUTE``."""
    since = now - timedelta(seconds=current_app.config["IDP_CIBA_MUTE"])
    last = db.session.execute(
        select(LoginRequest.status, LoginRequest.denied_reason, LoginRequest.decided_at)
        .where(*same, LoginRequest.decided_at.is_not(None))
        .order_by(LoginRequest.decided_at.desc())
        .limit(MUTE_AFTER)
    ).all()
    return (
        len(last) == MUTE_AFTER
        and all(s == Status.DENIED and r == DenialReason.DENIED for s, r, _ in last)
        and last[0][2] > since
    )


# Ping mode (CIBA Core §10.2) ------------------------------------------------------------


@dataclass(order=True)
class Ping:
    """One notification to deliver: everything the sending thread needs (it never reads
    the database)."""

    due: float
    seq: int
    endpoint: str
    token: str
    auth_req_id: str
    attempts_left: int
    timeout: float
    delay: float = 1.0


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A notification endpoint that redirects is answered as a failure, never followed."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class Pinger:
    """A bounded queue of notifications, drained by one background thread (a greenlet
    under gevent): each is POSTed with a short timeout, and tried again with backoff
    (1 s, 2 s, 4 s...) up to its number of attempts; a 2xx answer ends it. Submitting
    never blocks: a full queue drops the notification (the client may still poll)."""

    CAPACITY = 1000

    def __init__(self, capacity: int = CAPACITY) -> None:
        self._queue: queue.Queue[Ping] = queue.Queue(capacity)
        self._later: list[Ping] = []  # retries, by due time
        self._seq = itertools.count()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirects)

    def submit(
        self, endpoint: str, token: str, auth_req_id: str, *, attempts: int, timeout: float
    ) -> bool:
        """Queue one notification; False if the queue is full (it is dropped, and logged)."""
        ping = Ping(
            time.monotonic(), next(self._seq), endpoint, token, auth_req_id, attempts, timeout
        )
        try:
            self._queue.put_nowait(ping)
        except queue.Full:
            log.warning("CIBA ping queue full: notification to %s dropped", endpoint)
            return False
        self._start()
        return True

    def _start(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="ciba-ping", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            wait = max(0.0, self._later[0].due - time.monotonic()) if self._later else None
            with contextlib.suppress(queue.Empty):
                heapq.heappush(self._later, self._queue.get(timeout=wait))
            while self._later and self._later[0].due <= time.monotonic():
                self._deliver(heapq.heappop(self._later))

    def _deliver(self, ping: Ping) -> None:
        if self.send(ping):
            return
        if ping.attempts_left > 1:
            ping.attempts_left -= 1
            ping.due = time.monotonic() + ping.delay
            ping.delay *= 2
            heapq.heappush(self._later, ping)
        else:
            log.warning("CIBA ping to %s failed: given up", ping.endpoint)

    def send(self, ping: Ping) -> bool:
        """POST ``{"auth_req_id": ...}`` with the client's bearer token; True on a 2xx."""
        body = json.dumps({"auth_req_id": ping.auth_req_id}).encode()
        outgoing = urllib.request.Request(  # noqa: S310 (https, or http on loopback)
            ping.endpoint,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "Authorization": f"Bearer {ping.token}",
            },
        )
        try:
            with self._opener.open(outgoing, timeout=ping.timeout) as answer:
                return 200 <= answer.status < 300
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as error:
            # HTTPException: an answer that is not HTTP (BadStatusLine...), which must not
            # end the one thread every client's pings share.
            log.info("CIBA ping to %s failed: %s", ping.endpoint, error)
            return False


PINGER = Pinger()


def _ping_on_decision(
    request_id: str, kind: str, user_id: int | None, status: str, extra: dict[str, str]
) -> None:
    """``lifecycle.listen``: a ping-mode request was approved or denied: queue its ping.
    Runs after the deciding transaction committed; reads the row in a short transaction
    of its own (the request's session is between transactions), never yields."""
    if kind != Kind.BACKCHANNEL or status not in (Status.APPROVED, Status.DENIED):
        return
    with db.independent_transaction() as session:
        login = session.get(LoginRequest, request_id)
        if login is None or not login.notification_token:
            return
        endpoint = login.client.backchannel_client_notification_endpoint
        if login.client.backchannel_token_delivery_mode != "ping" or not endpoint:  # noqa: S105
            return
        auth_req_id = polling.secret_for(login)
        token = login.notification_token
    config = current_app.config
    PINGER.submit(
        endpoint,
        token,
        auth_req_id,
        attempts=config["IDP_CIBA_PING_ATTEMPTS"],
        timeout=config["IDP_CIBA_PING_TIMEOUT"],
    )


def init_app(app: Flask) -> None:
    """Listen for decisions (ping mode); the view is on :data:`bp`."""
    lifecycle.listen(_ping_on_decision)
