"""Browser sign-ins on the approval lifecycle (``idp.qrlogin.lifecycle``, whose table
and diagram say which transitions exist): what the authorize page, its WebSocket and
the phone API ask of a request, with the checks and errors each needs.

Revoking the phone that scanned or approved a request not yet completed denies it
(``refuse_device_logins``). Every denial stores its reason (``denied_reason``, a
``DenialReason``) and publishes it, so that the page says why, even when it reconnects
or completes after the fact.

A transition is part of the caller's transaction (the view commits it with the rest of
the request's work) and is published only once that has committed, so a page that
reconnects reads the truth even when it missed the message, and a rollback publishes
nothing. An expiry seen on read stands alone: the request that saw it fails, its work is
rolled back, and the expiry is committed by itself.
"""

from __future__ import annotations

import hmac
import re
import secrets
from datetime import timedelta
from typing import Any

from flask import current_app
from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import joinedload

from idp import audit, db
from idp.accounts.services import users_named
from idp.db import utcnow
from idp.errors import (
    AlreadyUsed,
    BindingMismatch,
    DifferentNetwork,
    Expired,
    InvalidRequest,
    NotApproved,
    RenewalLimit,
    UnknownRequest,
    WrongAccount,
    WrongDevice,
    WrongNumber,
)
from idp.mobile.models import Device
from idp.oauth.models import Client, digest
from idp.ops import metrics
from idp.qrlogin import lifecycle, matching, proximity
from idp.qrlogin.lifecycle import OPEN, Kind, approval_grace
from idp.qrlogin.models import DenialReason, LoginRequest, Status
from idp.web import Caller

#: 32 random bytes, base64url: 256 bits, far past guessing.
REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9_-]{43}$")

__all__ = ["approval_grace"]  # re-exported for housekeeping


def channel(request_id: str) -> str:
    """The broker channel of one login request."""
    return f"login:{request_id}"


def new_binding_secret() -> str:
    """A secret for the browser's HttpOnly binding cookie."""
    return secrets.token_urlsafe(32)


def create_login_request(
    *,
    client_id: str,
    params: dict[str, str],
    binding_secret: str,
    browser: Caller,
    renewals: int = 0,
    client: Client | None = None,
) -> LoginRequest:
    """Start a login request for a validated authorization request, in the caller's
    transaction. ``browser``: the browser whose page asked (its address and user agent
    are shown on the phone).

    ``client`` (the row of ``client_id``, when the caller has it) saves reading it again.
    """
    now = utcnow()
    login = LoginRequest(
        id=lifecycle.new_request_id(),
        binding_hash=digest(binding_secret),
        client_id=client_id,
        params=params,
        status=Status.PENDING,
        renewals=renewals,
        browser_ip=browser.ip,
        browser_user_agent=(browser.user_agent or "").replace("\x00", "")[:1000] or None,
        created_at=now,
        expires_at=now + timedelta(seconds=current_app.config["IDP_LOGIN_REQUEST_TTL"]),
    )
    if client is not None:
        login.client = client
    db.session.add(login)
    db.on_commit(metrics.LOGIN_REQUESTS.labels("created").inc)
    return login


def find_login_request(request_id: str, *, with_user: bool = False) -> LoginRequest:
    """The login request with this id (and its user, in the same query), or ``UnknownRequest``."""
    login = None
    if REQUEST_ID_RE.match(request_id or ""):
        options = [joinedload(LoginRequest.user)] if with_user else None
        login = db.session.get(LoginRequest, request_id, populate_existing=True, options=options)
    if login is None:
        raise UnknownRequest()
    return login


def peek_status(request_id: str) -> tuple[str, str | None, bool]:
    """The request's status, its number to match, and whether it is past its lifetime
    while unfinished: three columns by primary key, cheap enough for every heartbeat of
    every waiting page. ``UnknownRequest`` if it is gone."""
    row = db.session.execute(
        select(LoginRequest.status, LoginRequest.match_number, LoginRequest.expires_at).where(
            LoginRequest.id == request_id
        )
    ).one_or_none()
    if row is None:
        raise UnknownRequest()
    status, number, expires_at = row
    return status, number, status in OPEN and utcnow() >= expires_at


def denial_reason(request_id: str) -> str | None:
    """Why a denied request was denied (a ``DenialReason``), or ``None``: one column by
    primary key, read once when a page learns of the denial."""
    return db.session.scalar(
        select(LoginRequest.denied_reason).where(LoginRequest.id == request_id)
    )


def find_for_browser(
    request_id: str, binding_secret: str | None, *, with_user: bool = False
) -> LoginRequest:
    """The login request, if this browser holds its binding secret.

    An unknown id gets the same answer as a request of another browser (after the same
    digest comparison), so that the browser endpoints tell a guesser nothing.
    """
    try:
        login = find_login_request(request_id, with_user=with_user)
    except UnknownRequest:
        login = _NOBODY  # whose binding check always fails
    check_binding(login, binding_secret)
    return login


#: Stands in for an unknown request: nobody holds its binding secret.
_NOBODY = LoginRequest(binding_hash="!")


def check_binding(login: LoginRequest, binding_secret: str | None) -> None:
    """Refuse a browser that does not hold the request's binding cookie."""
    presented = digest(binding_secret) if binding_secret else ""
    if not hmac.compare_digest(presented, login.binding_hash):
        raise BindingMismatch()


def renew_login_request(
    request_id: str, binding_secret: str | None, *, browser: Caller
) -> LoginRequest:
    """Replace an expired request with a fresh one for the same page (bounded)."""
    old = find_for_browser(request_id, binding_secret)
    if old.status in OPEN and not old.is_expired():
        raise InvalidRequest("this code has not expired yet")
    if old.status not in (*OPEN, Status.EXPIRED):
        raise AlreadyUsed()
    if old.renewals >= current_app.config["IDP_QR_MAX_RENEWALS"]:
        raise RenewalLimit("reload the page for a new code")
    # Expired now (by this call, or before); the renewal's compare-and-set checks it. No
    # plain write of ``old.status`` here: flushed, it would overwrite whatever won the row
    # meanwhile (an approval that committed while this waited for it).
    expire_login(old.id)
    claimed = lifecycle.transition(
        old,
        "renew",
        by=None,
        caller=browser,
        audited=False,  # the new request is the record of it
        extra_where=(LoginRequest.renewed_at.is_(None),),
        renewed_at=utcnow(),
    )
    if not claimed:
        db.session.rollback()
        raise AlreadyUsed("this code was already renewed")
    # The claim commits together with the new request.
    return create_login_request(
        client_id=old.client_id,
        client=old.client,
        params=old.params,
        binding_secret=binding_secret or "",
        browser=browser,
        renewals=old.renewals + 1,
    )


def restart_login_request(
    request_id: str, binding_secret: str | None, *, browser: Caller
) -> LoginRequest:
    """ "Not you? Show a new code": the page's code was scanned by a phone that is not the
    person's (a passer-by who glimpsed the screen holds it until it expires). The scanned
    request ends, ``scanned -> denied`` (reason ``released``; the phone that scanned it
    can no longer decide it) and is marked renewed, in one compare-and-set; a fresh one
    replaces it for the same page and the same authorization request. It counts as a
    renewal: at most ``IDP_QR_MAX_RENEWALS`` per page."""
    old = find_for_browser(request_id, binding_secret)
    _check_open(old)
    if old.status == Status.PENDING:
        raise InvalidRequest("nobody has scanned this code: it is still waiting")
    if old.status != Status.SCANNED or old.device is None:
        raise AlreadyUsed(f"this sign-in request is already {old.status}")
    if old.renewals >= current_app.config["IDP_QR_MAX_RENEWALS"]:
        raise RenewalLimit("reload the page for a new code")
    now = utcnow()
    _transition(
        old,
        "restart",
        by=old.device,
        caller=browser,
        event="login.restarted",  # by the browser; the user and device are the scanner's
        reason="released",
        extra_where=(LoginRequest.device_pk == old.device_pk, LoginRequest.renewed_at.is_(None)),
        denied_reason=DenialReason.RELEASED,
        decided_at=now,
        renewed_at=now,
    )
    return create_login_request(
        client_id=old.client_id,
        client=old.client,
        params=old.params,
        binding_secret=binding_secret or "",
        browser=browser,
        renewals=old.renewals + 1,
    )


def scan_login(request_id: str, device: Device, *, caller: Caller | None = None) -> LoginRequest:
    """The phone scanned the QR: ``pending -> scanned``, by this device only (``caller``:
    the phone's request, for the audit log)."""
    login = find_login_request(request_id)
    if login.status == Status.SCANNED and login.device_pk == device.id and not login.is_expired():
        return login  # the same phone scanning again (a retry) sees the same request
    _check_open(login)
    if login.kind == Kind.BACKCHANNEL and login.user_id != device.user_id:
        raise UnknownRequest()  # a site asked another user's phone: nothing to see here
    if hint_names_user(login, device.user_id) is False:
        _refuse_wrong_account(login, device, caller)
    if login.status == Status.SCANNED:  # not by this device (its retry was answered above)
        raise AlreadyUsed("another device already scanned this code")
    if login.status != Status.PENDING:
        raise AlreadyUsed(f"this sign-in request was already {login.status}")
    # A typed code is used up by the scan; a device's user code is what the device shows
    # until it is approved, and a release gives it back.
    used_up: dict[str, Any] = {"short_code_hash": None} if login.kind == Kind.BROWSER else {}
    try:
        _transition(
            login,
            "scan",
            by=device,
            caller=caller,
            device_pk=device.id,
            scanned_at=utcnow(),
            **used_up,
            match_number=matching.new_number() if matching.required(login) else None,
        )
    except AlreadyUsed:
        # A retry that raced this phone's own first scan sees the request all the same.
        current = find_login_request(request_id)
        if current.status == Status.SCANNED and current.device_pk == device.id:
            return current
        raise
    return login


def hint_names_user(login: LoginRequest, user_id: int) -> bool | None:
    """Whom the request's ``login_hint`` names: True if this user (by username or email,
    ignoring case), False if only other accounts, None if no account (or there is no
    hint: sites send addresses the IdP may not know, and those refuse nothing)."""
    hint = login.params.get("login_hint")
    named = users_named(hint) if isinstance(hint, str) else set()
    if not named:
        return None
    return user_id in named


def _refuse_wrong_account(login: LoginRequest, device: Device, caller: Caller | None) -> None:
    """A phone of another account scanned a sign-in the site meant for someone else (a
    passer-by who glimpsed the screen): refused, and shown nothing of it (not the browser,
    not the site). The request stays pending for the right phone; the refusal is audited
    (the view commits it), without the browser's details."""
    audit.record(
        "login.scan_refused",
        caller=caller,
        username=device.user.username,
        device_id=device.device_id,
        client_id=login.client_id,
        request=login.id[:8],
        reason="wrong_account",
    )
    raise WrongAccount()


def approve_login(
    request_id: str, device: Device, number: str | None = None, *, caller: Caller | None = None
) -> LoginRequest:
    """The user approved on the phone that scanned: ``scanned -> approved``.

    With the proximity policy ``require_same_network``, the approving request (``caller``,
    whose address is judged now: the phone may have moved since it scanned) must come
    from the browser's network; else the sign-in is denied (``scanned -> denied``, reason
    ``different_network``) and ``DifferentNetwork`` is raised. With number matching,
    ``number`` must be the one the page shows; a wrong one denies the sign-in too and
    raises ``WrongNumber``. The caller commits either denial before failing.
    """
    login = _find_scanned_by(request_id, device)
    if far := proximity.refusal(login, caller.ip if caller else None):
        _transition(
            login,
            "deny",
            by=device,
            caller=caller,
            reason=DenialReason.DIFFERENT_NETWORK,
            detail={
                "verdict": far.verdict,
                "browser_network": far.facts.get("browser_network"),
                "phone_network": far.facts.get("phone_network"),
            },
            extra_where=(LoginRequest.device_pk == device.id,),
            decided_at=utcnow(),
            denied_reason=DenialReason.DIFFERENT_NETWORK,
        )
        raise DifferentNetwork()
    if login.match_number is not None:
        if number is None:
            raise InvalidRequest(
                "this sign-in needs number matching: send 'number', the two digits the page shows"
            )
        if not matching.matches(login, number):
            _transition(
                login,
                "deny",
                by=device,
                caller=caller,
                reason="wrong number",
                extra_where=(LoginRequest.device_pk == device.id,),
                decided_at=utcnow(),
                denied_reason=DenialReason.WRONG_NUMBER,
            )
            raise WrongNumber()
    _transition(
        login,
        "approve",
        by=device,
        caller=caller,
        extra_where=(LoginRequest.device_pk == device.id,),
        user_id=device.user_id,
        decided_at=utcnow(),
    )
    return login


def deny_login(request_id: str, device: Device, *, caller: Caller | None = None) -> LoginRequest:
    """The user refused on the phone that scanned: ``scanned -> denied``."""
    login = _find_scanned_by(request_id, device)
    _transition(
        login,
        "deny",
        by=device,
        caller=caller,
        extra_where=(LoginRequest.device_pk == device.id,),
        decided_at=utcnow(),
        denied_reason=DenialReason.DENIED,
    )
    return login


def release_login(request_id: str, device: Device, *, caller: Caller | None = None) -> LoginRequest:
    """The phone that scanned gives the request back ("Not my sign-in": it scanned someone
    else's screen): ``scanned -> pending``, as if never scanned (no device, no number to
    match; a typed code stays used up), so that the page shows its QR code again and the
    right phone can scan it. Neither an approval nor a denial: the sign-in goes on."""
    login = _find_scanned_by(request_id, device)
    _transition(
        login,
        "release",
        by=device,
        caller=caller,
        event="login.released",
        extra_where=(LoginRequest.device_pk == device.id,),
        device_pk=None,
        scanned_at=None,
        match_number=None,
    )
    return login


def expire_login(request_id: str) -> bool:
    """Mark a request still waiting on the phone past its lifetime ``expired``, in the
    caller's transaction; True if this call did (it is published once that commits)."""
    moved = lifecycle.transition_where(
        "expire", [LoginRequest.id == request_id], by=None, caller=None, audited=False
    )
    return bool(moved)


def refuse_device_logins(device: Device, *, caller: Caller | None) -> list[str]:
    """The phone is being revoked: the requests it scanned or approved that are still
    open (that nobody completed yet) are refused (``revoke``: reason ``device_revoked``),
    so the browser's completion, or the device's or site's poll, answers ``access_denied``.

    In the caller's transaction, which revokes the device too; each returned request
    id is published once that has committed.
    """
    now = utcnow()
    return lifecycle.transition_where(
        "revoke",
        [LoginRequest.device_pk == device.id, lifecycle.open_clause(now)],
        by=device,
        caller=caller,
        event="login.denied",
        reason=DenialReason.DEVICE_REVOKED,
        decided_at=func.coalesce(LoginRequest.decided_at, now),
        denied_reason=DenialReason.DEVICE_REVOKED,
    )


def claim_completion(request_id: str, binding_secret: str | None) -> LoginRequest:
    """The browser came back for its result.

    An approved request becomes ``completed`` in the caller's transaction (the
    caller issues the authorization code in the same one, audits it, then commits); a
    denied one is returned as it is. Anything else is refused.
    """
    login = find_for_browser(request_id, binding_secret, with_user=True)
    if login.status == Status.DENIED:
        return login
    if login.status == Status.COMPLETED:
        raise AlreadyUsed("this sign-in was already completed")
    if login.is_expired():
        raise Expired()
    if login.status != Status.APPROVED:
        raise NotApproved()
    claimed = lifecycle.transition(
        login, "complete", by=None, caller=None, audited=False, completed_at=utcnow()
    )
    if not claimed:
        db.session.rollback()
        if find_login_request(request_id).status == Status.APPROVED:
            raise Expired("this approval was not used in time: sign in again")
        raise AlreadyUsed("this sign-in was already completed")
    return login


def publish_status(request_id: str, status: str, **extra: str) -> None:
    """Tell the waiting page that a browser request changed (``lifecycle.publish``)."""
    lifecycle.publish(request_id, status, extra=extra)


def _find_scanned_by(request_id: str, device: Device) -> LoginRequest:
    login = find_login_request(request_id)
    _check_open(login)
    if login.status == Status.PENDING:
        raise InvalidRequest("scan the code before approving or denying it")
    if login.device_pk != device.id:
        raise WrongDevice()
    if login.status == Status.DENIED and login.renewed_at is not None:
        raise AlreadyUsed("the computer showed a new code instead: this one signs nobody in")
    if login.status != Status.SCANNED:
        raise AlreadyUsed(f"this sign-in request was already {login.status}")
    return login


def _check_open(login: LoginRequest) -> None:
    if login.is_expired():
        request_id = login.id
        with db.stand_alone():  # this request fails, but the expiry it saw stands
            expire_login(request_id)
        raise Expired()


def _transition(
    login: LoginRequest,
    edge: str,
    *,
    by: Device,
    caller: Caller | None,
    reason: str | None = None,
    detail: dict[str, Any] | None = None,
    event: str | None = None,
    extra_where: tuple[ColumnElement[bool], ...] = (),
    **values: Any,
) -> None:
    """``lifecycle.transition`` along ``edge``, by the phone ``by``; refuse with a clear
    error (``Expired``, ``AlreadyUsed``) if another transition won."""
    moved = lifecycle.transition(
        login,
        edge,
        by=by,
        caller=caller,
        event=event,
        reason=reason,
        detail=detail,
        extra_where=extra_where,
        **values,
    )
    if not moved:
        current = find_login_request(login.id)
        _check_open(current)
        raise AlreadyUsed(f"this sign-in request is already {current.status}")
