"""The phone API's blueprint and what its views share: the device's proof, the JSON body,
and the view of a request the phone shows before it offers Approve. The routes are in
``idp.mobile.views`` (enrollment, devices, sign-ins) and ``idp.mobile.inbox.views`` (the
inbox)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, Response, current_app, request
from sqlalchemy.exc import InterfaceError, OperationalError

from idp import db, geoip, limits
from idp.errors import Expired, InvalidRequest, UnknownRequest, database_unavailable, json_errors
from idp.mobile.models import Device
from idp.mobile.proof import HEADER, Proof, check_proof, record_proof, settle_proof
from idp.oauth.models import SCOPE_DESCRIPTIONS
from idp.qrlogin import matching, proximity
from idp.qrlogin import services as logins
from idp.qrlogin.models import LoginRequest
from idp.qrlogin.useragent import summarize_user_agent

bp = json_errors(Blueprint("mobile", __name__, url_prefix="/api/mobile/v1"))


@bp.after_request
def _settle_proof(response: Response) -> Response:
    """The proof's ``jti`` is committed whatever the answer (see ``settle_proof``)."""
    try:
        settle_proof(succeeded=response.status_code < 400)
    except (OperationalError, InterfaceError) as error:
        return database_unavailable(error)
    return response


def login_request_view(
    login: LoginRequest, *, phone_ip: str | None, user_id: int
) -> dict[str, Any]:
    """Everything the phone must show before it offers Approve; ``phone_ip``: the
    address the phone's own request came from, compared with the browser's; ``user_id``:
    the phone's user (the ``login_hint`` is shown only when it names that account)."""
    redirect_uris = login.client.redirect_uris
    redirect_uri = login.params.get("redirect_uri") or (redirect_uris[0] if redirect_uris else "")
    # What would be granted: scope values the IdP ignores are not shown either.
    scopes = login.client.get_allowed_scope(login.params.get("scope", "")).split()
    return {
        "id": login.id,
        "status": login.status,
        # "browser" (an authorize page), "device" (a TV or command line, RFC 8628) or
        # "backchannel" (a site that asked for this user, CIBA).
        "kind": login.kind,
        "client": {
            "client_id": login.client.client_id,
            "name": login.client.name,
            "logo_uri": login.client.logo_uri,
            "redirect_host": urlsplit(redirect_uri).netloc or None,
        },
        "scopes": [
            {"name": s, "description": str(SCOPE_DESCRIPTIONS.get(s, s))}
            for s in dict.fromkeys(scopes)
        ],
        "browser": {
            "ip": login.browser_ip,
            # Approximate, from IDP_GEOIP_DATABASE; null without one or when unknown.
            "location": geoip.locate(login.browser_ip),
            "user_agent": login.browser_user_agent,
            "summary": summarize_user_agent(login.browser_user_agent),
        },
        # The site's guess at who is signing in (OIDC login_hint), never trusted (the
        # phone's own account decides), and shown only when it names this phone's account:
        # a hint naming nobody tells the phone nothing, one naming another account is
        # refused at the scan (WrongAccount).
        "login_hint": (
            login.params.get("login_hint") if logins.hint_names_user(login, user_id) else None
        ),
        # Number matching: Approve must send the one of these the page shows.
        "number_matching": {"choices": matching.choices(login)} if login.match_number else None,
        # CIBA: what the site says this request is about, to compare with its own screen.
        "binding_message": login.binding_message,
        "created_at": iso(login.created_at),
        "expires_at": iso(login.expires_at),
        # Is the phone near the browser? A relayed QR code is approved from elsewhere.
        # None when the policy is off; with require_same_network, whether it may approve.
        "proximity": proximity.for_phone(login, phone_ip),
    }


def verify(*, enrollment: bool = False, action: bool = False) -> Proof:
    """The request's proof, checked and accepted (its ``jti`` recorded); an ``action``
    (scan, approve, deny) also counts against the device's budget (``IDP_LIMIT_DEVICE``),
    in Redis: before this request writes anything, so that no lock is held meanwhile."""
    config = current_app.config
    proof = check_proof(
        request.headers.get(HEADER),
        method=request.method,
        url=config["IDP_ISSUER"] + request.path,
        body=request.get_data(cache=True),
        max_age=config["IDP_PROOF_MAX_AGE"],
        enrollment=enrollment,
    )
    if action and proof.device is not None:
        db.release_before_yield()
        limits.charge_device(proof.device.device_id)
    record_proof(proof)
    return proof


def verified_device(*, action: bool = False) -> Device:
    """The device whose proof signed this request (see :func:`verify`)."""
    device = verify(action=action).device
    assert device is not None  # a non-enrollment proof always names its device
    return device


def json_object() -> dict[str, Any]:
    body = request.get_json(silent=True, force=True) if request.get_data(cache=True) else {}
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object")
    return body


def string_member(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value or "\x00" in value or len(value) > 4096:
        raise InvalidRequest(f"'{name}' must be a non-empty string")
    return value


def iso(moment: Any) -> str:
    return moment.replace(microsecond=0).isoformat() + "Z"


View = Callable[..., Response]


def gone_is_gone(message: str) -> Callable[[View], View]:
    """Unknown and expired request ids (and other users' requests) get one answer, 410
    ``expired`` with ``message``, so that a guesser with an enrolled phone learns nothing
    (and purged requests are simply expired)."""

    def decorate(view: View) -> View:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Response:
            try:
                return view(*args, **kwargs)
            except (UnknownRequest, Expired):
                raise Expired(message) from None

        return wrapper

    return decorate
