"""The approval lifecycle, declared once: every request the phone approves lives by it.

Three kinds of request (:class:`Kind`) wait on a phone: an authorize page's QR sign-in
(``browser``), a TV or command line polling with its ``device_code`` (RFC 8628,
``device``), and a site that asked for a known user and polls, or is pinged, with its
``auth_req_id`` (OpenID CIBA, ``backchannel``). They share one table
(``login_requests``), one set of states (:class:`Status`) and one transition table
(:data:`EDGES`)::

    pending  --scan-->     scanned
    scanned  --release-->  pending
    scanned  --approve-->  approved
    scanned  --deny-->     denied
    scanned  --restart-->  denied      (browser only)
    scanned  --revoke-->   denied
    approved --revoke-->   denied
    pending  --expire-->   expired
    scanned  --expire-->   expired
    approved --complete--> completed
    expired  --renew-->    expired     (browser only)

(a test checks that this diagram is the table). ``scan`` is the phone taking the request
up: a browser's QR read by the camera or typed as a short code, a device's user code
read or typed, a backchannel request opened from the phone's inbox. ``deny`` covers
every refusal by or at the phone (Deny, a wrong number, a phone off the browser's
network: ``denied_reason`` says which); ``restart`` is the page's "Not you? Show a new
code", ``revoke`` the phone being revoked, ``renew`` a fresh code replacing an expired one
(it marks the old one renewed, once). ``complete`` is the browser coming back for its
code, or the device or site redeeming its approval at the token endpoint.

:data:`OPEN` states wait on the phone, within the request's lifetime; an approval stays
completable for :func:`approval_grace` after it, even past that lifetime (a page whose
message was lost learns of it at its next heartbeat). :func:`is_open` says so in Python
and :func:`open_clause` in SQL, the same rule. :data:`FINAL` states have no edge out but
``renew``, which changes no state.

:func:`transition` is the only writer of ``status``: one compare-and-set ``UPDATE ...
WHERE status IN (...)`` (of two racing transitions exactly one changes the row), an
audit row, and a publish once the caller's transaction commits (``db.on_commit``: a
rollback publishes nothing), for one request or, with :func:`transition_where`, for every
request a condition selects.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from flask import current_app
from sqlalchemy import ColumnElement, and_, false, or_, update
from sqlalchemy.orm.attributes import set_committed_value

from idp import audit, db
from idp.db import utcnow
from idp.ops import metrics

if TYPE_CHECKING:
    from idp.mobile.models import Device
    from idp.qrlogin.models import LoginRequest
    from idp.web import Caller


class Status(StrEnum):
    """A request's state."""

    PENDING = "pending"
    SCANNED = "scanned"
    APPROVED = "approved"
    DENIED = "denied"
    EXPIRED = "expired"
    COMPLETED = "completed"


class Kind(StrEnum):
    """What asks for the phone's approval."""

    BROWSER = "browser"  # an authorize page showing a QR code (RFC 6749 §4.1)
    DEVICE = "device"  # a device polling with its device_code (RFC 8628)
    BACKCHANNEL = "backchannel"  # a site polling or pinged with its auth_req_id (CIBA)


#: Waiting on the phone, within the request's lifetime.
OPEN = frozenset({Status.PENDING, Status.SCANNED})
#: The phone has answered, or nobody did in time; what a waiting page waits for.
SETTLED = frozenset({Status.APPROVED, Status.DENIED, Status.EXPIRED, Status.COMPLETED})
#: No state-changing edge leaves these.
FINAL = frozenset({Status.DENIED, Status.EXPIRED, Status.COMPLETED})
ALL_KINDS = frozenset(Kind)


class Window(StrEnum):
    """What time condition an edge adds to its compare-and-set."""

    LIFETIME = "lifetime"  # the request is within its lifetime
    APPROVAL = "approval"  # the approval is still completable (lifetime or grace)
    LAPSED = "lapsed"  # the lifetime has passed
    ANY = "any"


@dataclass(frozen=True)
class Edge:
    """One transition: its name, the states it leaves, where it goes, for which kinds."""

    name: str
    sources: frozenset[Status]
    target: Status
    kinds: frozenset[Kind] = ALL_KINDS
    window: Window = Window.LIFETIME


def _edge(
    name: str,
    sources: Iterable[Status],
    target: Status,
    *,
    kinds: Iterable[Kind] = ALL_KINDS,
    window: Window = Window.LIFETIME,
) -> Edge:
    return Edge(name, frozenset(sources), target, frozenset(kinds), window)


#: The transition table. The module docstring draws it; a test checks they agree.
EDGES: dict[str, Edge] = {
    e.name: e
    for e in (
        _edge("scan", {Status.PENDING}, Status.SCANNED),
        _edge("release", {Status.SCANNED}, Status.PENDING),
        _edge("approve", {Status.SCANNED}, Status.APPROVED),
        _edge("deny", {Status.SCANNED}, Status.DENIED),
        _edge("restart", {Status.SCANNED}, Status.DENIED, kinds={Kind.BROWSER}),
        _edge("revoke", {Status.SCANNED, Status.APPROVED}, Status.DENIED, window=Window.ANY),
        _edge("expire", {Status.PENDING, Status.SCANNED}, Status.EXPIRED, window=Window.LAPSED),
        _edge("complete", {Status.APPROVED}, Status.COMPLETED, window=Window.APPROVAL),
        _edge("renew", {Status.EXPIRED}, Status.EXPIRED, kinds={Kind.BROWSER}, window=Window.ANY),
    )
}


def new_request_id() -> str:
    """A request's id: 256 random bits, base64url (43 characters), never starting with
    ``-`` (one in 64 would), so that a command line takes it as an argument, not an option."""
    while (request_id := secrets.token_urlsafe(32)).startswith("-"):
        pass
    return request_id


def approval_grace() -> timedelta:
    """How long after the phone's approval the request may still be completed, even past
    its lifetime: ``IDP_CODE_TTL``, and at least two heartbeats, because a page whose
    message was lost learns of the approval only at its next heartbeat."""
    config = current_app.config
    return timedelta(seconds=max(config["IDP_CODE_TTL"], 2 * config["IDP_WS_HEARTBEAT"]))


def is_open(login: LoginRequest, now: datetime | None = None) -> bool:
    """Whether the request can still lead to a sign-in: waiting on the phone within its
    lifetime, or approved and still completable. :func:`open_clause` in SQL."""
    now = now or utcnow()
    if login.status in OPEN:
        return now < login.expires_at
    if login.status == Status.APPROVED:
        decided = login.decided_at
        return now < login.expires_at or (decided is not None and decided > now - approval_grace())
    return False


def is_lapsed(login: LoginRequest, now: datetime | None = None) -> bool:
    """Whether the request expired: marked so, or waiting on the phone past its lifetime."""
    now = now or utcnow()
    return login.status == Status.EXPIRED or (login.status in OPEN and now >= login.expires_at)


def open_clause(now: datetime | None = None) -> ColumnElement[bool]:
    """:func:`is_open` in SQL."""
    from idp.qrlogin.models import LoginRequest

    now = now or utcnow()
    return or_(
        and_(LoginRequest.status.in_(OPEN), LoginRequest.expires_at > now),
        and_(LoginRequest.status == Status.APPROVED, _approval_window(now)),
    )


def _approval_window(now: datetime) -> ColumnElement[bool]:
    from idp.qrlogin.models import LoginRequest

    return or_(LoginRequest.expires_at > now, LoginRequest.decided_at > now - approval_grace())


def _window(window: Window, now: datetime) -> ColumnElement[bool] | None:
    from idp.qrlogin.models import LoginRequest

    if window == Window.LIFETIME:
        return LoginRequest.expires_at > now
    if window == Window.LAPSED:
        return LoginRequest.expires_at <= now
    if window == Window.APPROVAL:
        return _approval_window(now)
    return None


def _conditions(edge: Edge, now: datetime) -> list[ColumnElement[bool]]:
    from idp.qrlogin.models import LoginRequest

    conditions: list[ColumnElement[bool]] = [LoginRequest.status.in_(edge.sources)]
    if edge.kinds != ALL_KINDS:
        conditions.append(LoginRequest.kind.in_(edge.kinds))
    if (window := _window(edge.window, now)) is not None:
        conditions.append(window)
    return conditions


#: Hears every committed transition of a request: ``(request_id, kind, user_id, status,
#: extra)``, run after the commit. The page's channel is one; the phone's inbox
#: (``idp.mobile.inbox``) and a CIBA client's ping (``idp.oauth.ciba``) add theirs.
Listener = Callable[[str, str, int | None, str, dict[str, str]], None]
_LISTENERS: list[Listener] = []


def listen(listener: Listener) -> Listener:
    """Register ``listener`` for every committed transition (idempotent)."""
    if listener not in _LISTENERS:
        _LISTENERS.append(listener)
    return listener


def publish(
    request_id: str,
    status: str,
    *,
    kind: str = Kind.BROWSER,
    user_id: int | None = None,
    extra: dict[str, str] | None = None,
) -> None:
    """Tell whoever waits on the request (the page, on any worker; the phone's inbox; a
    pinged client) that it changed. It is committed: call it through ``db.on_commit``.

    ``at`` (epoch seconds) lets the page's worker measure approve-to-notify latency.
    """
    metrics.LOGIN_REQUESTS.labels(str(status)).inc()
    extra = extra or {}
    message = {"status": str(status), "at": time.time(), **extra}
    current_app.extensions["idp.broker"].publish(f"login:{request_id}", message)
    for listener in _LISTENERS:
        listener(request_id, str(kind), user_id, str(status), extra)


def transition(
    login: LoginRequest,
    edge_name: str,
    *,
    by: Device | None,
    caller: Caller | None,
    event: str | None = None,
    reason: str | None = None,
    detail: dict[str, Any] | None = None,
    extra_where: Sequence[ColumnElement[bool]] = (),
    audited: bool = True,
    **values: Any,
) -> bool:
    """Move one request along ``edge_name``, in the caller's transaction: compare-and-set
    (with ``values`` written too), audit (as ``event``, by default ``login.<target>``;
    ``reason`` and ``detail`` join the row; ``by``: the phone, when one acted), and
    publish once that commits (with the number to match after a scan, the reason of a
    denial). True if this call changed the row, which then holds the new values; False if
    another transition won (the caller decides what that means)."""
    from idp.qrlogin.models import LoginRequest

    edge = EDGES[edge_name]
    now = utcnow()
    values = _closing(edge, values)
    result = db.session.execute(
        update(LoginRequest)
        .where(LoginRequest.id == login.id, *_conditions(edge, now), *extra_where)
        .values(status=edge.target, **values)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return False
    for key, value in {**values, "status": edge.target}.items():
        set_committed_value(login, key, value)
    if audited:
        _audit(login, edge, by=by, caller=caller, event=event, reason=reason, detail=detail)
    extra: dict[str, str] = {}
    if number := values.get("match_number"):  # the page shows it once the phone scanned
        extra["number"] = str(number)
    if denied_reason := values.get("denied_reason"):
        extra["reason"] = str(denied_reason)  # the page says why
    if edge.sources == {edge.target}:
        return True  # a mark (renew), not a change of state: nothing to tell
    request_id, kind, user_id = login.id, login.kind or Kind.BROWSER, login.user_id
    db.on_commit(lambda: publish(request_id, edge.target, kind=kind, user_id=user_id, extra=extra))
    return True


def transition_where(
    edge_name: str,
    where: Sequence[ColumnElement[bool]],
    *,
    by: Device | None,
    caller: Caller | None,
    event: str | None = None,
    reason: str | None = None,
    audited: bool = True,
    **values: Any,
) -> list[str]:
    """Move every request ``where`` selects along ``edge_name`` (one ``UPDATE``), audit
    each and publish each once the caller's transaction commits; the ids it moved."""
    from idp.qrlogin.models import LoginRequest

    edge = EDGES[edge_name]
    now = utcnow()
    values = _closing(edge, values)
    if not where:
        where = [false()]  # never every request by mistake
    moved = db.session.execute(
        update(LoginRequest)
        .where(*_conditions(edge, now), *where)
        .values(status=edge.target, **values)
        .returning(
            LoginRequest.id,
            LoginRequest.kind,
            LoginRequest.client_id,
            LoginRequest.browser_ip,
            LoginRequest.user_id,
        )
        .execution_options(synchronize_session=False)
    ).all()
    extra = {"reason": str(values["denied_reason"])} if values.get("denied_reason") else {}
    for request_id, kind, client_id, browser_ip, user_id in moved:
        if audited:
            audit.record(
                event or f"login.{edge.target}",
                caller=caller,
                username=by.user.username if by else None,
                device_id=by.device_id if by else None,
                client_id=client_id,
                request=request_id[:8],
                kind=None if kind == Kind.BROWSER else kind,
                browser_ip=browser_ip,
                reason=reason,
            )
        db.on_commit(_publisher(request_id, edge.target, kind=kind, user_id=user_id, extra=extra))
    return [row[0] for row in moved]


def _closing(edge: Edge, values: dict[str, Any]) -> dict[str, Any]:
    """A typed code (a browser's short code, a device's user code) lives only while its
    request waits on the phone: every edge out of :data:`OPEN` ends it."""
    if edge.target in OPEN or edge.sources == {edge.target}:
        return values
    return {"short_code_hash": None, **values}


def _publisher(
    request_id: str, status: Status, *, kind: str, user_id: int | None, extra: dict[str, str]
) -> Callable[[], None]:
    return lambda: publish(request_id, status, kind=kind, user_id=user_id, extra=extra)


def _audit(
    login: LoginRequest,
    edge: Edge,
    *,
    by: Device | None,
    caller: Caller | None,
    event: str | None,
    reason: str | None,
    detail: dict[str, Any] | None,
) -> None:
    audit.record(
        event or f"login.{edge.target}",
        caller=caller,
        username=by.user.username if by else None,
        device_id=by.device_id if by else None,
        client_id=login.client_id,
        request=login.id[:8],
        kind=None if login.kind in (None, Kind.BROWSER) else login.kind,
        browser_ip=login.browser_ip,
        reason=reason,
        **(detail or {}),
    )
