"""The browser side of QR sign-in: the authorize page, renewal, completion.

``GET /authorize`` validates the OAuth request with Authlib, starts a login
request bound to this browser's cookie and shows its QR code. The page then
waits on a WebSocket; once the phone approves, it opens
``/authorize/complete/<id>``, which issues the code and redirects to the RP.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from authlib.oauth2 import OAuth2Error
from authlib.oauth2.base import invalid_error_characters
from flask import (
    Blueprint,
    Response,
    current_app,
    jsonify,
    make_response,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext

from idp import audit, db, limits, web
from idp.admin.services import logo_origin
from idp.db import utcnow
from idp.errors import InvalidRequest, error_response, json_errors
from idp.oauth.keys import hinted_claims
from idp.oauth.server import Issuer, Server, StoredAuthorizationRequest, authorization_server
from idp.qrlogin import services as logins
from idp.qrlogin import shortcodes
from idp.qrlogin.models import LoginRequest, Status
from idp.qrlogin.qr import qr_svg
from idp.sso import services as sso
from idp.sso.models import BrowserSession

bp = Blueprint("qrlogin", __name__)

#: Authorization request parameters kept with the login request (others are ignored).
KEPT_PARAMS = (
    "response_type", "client_id", "redirect_uri", "scope", "state", "nonce",
    "code_challenge", "code_challenge_method", "prompt", "max_age", "login_hint",
    "ui_locales", "claims_locales", "acr_values", "display", "response_mode",
)  # fmt: skip


@bp.route("/authorize", methods=["GET", "POST"])
@limits.per_ip("IDP_LIMIT_BROWSER", scope="browser")
def authorize() -> Response:
    """Authorization endpoint (RFC 6749 §3.1; GET or form POST, OIDC Core §3.1.2.1):
    validate, then answer from the IdP session or start a login and show its QR code."""
    check_quotable(request.values)
    server = authorization_server()
    browser_session = usable_session()
    try:  # Authlib's validation, with ours (idp.oauth.checks)
        grant = server.get_consent_grant(end_user=browser_session.user if browser_session else None)
    except OAuth2Error as error:
        return authorization_error(server, error)
    if browser_session is not None:
        return answer_from_session(server, grant, browser_session)
    secret = web.binding_secret() or logins.new_binding_secret()
    return login_page(start_login(grant, secret), secret)


def check_quotable(values: Mapping[str, str]) -> None:
    """Authlib quotes ``response_type`` and ``redirect_uri`` in its error descriptions,
    which must be plain ASCII (RFC 6749 §4.1.2.1); no valid value has other characters."""
    for name in ("response_type", "redirect_uri"):
        if invalid_error_characters(values.get(name, "")):
            raise InvalidRequest(f"{name} has characters no valid value has")


def usable_session() -> BrowserSession | None:
    """This browser's IdP session, if this request may be answered from it."""
    browser_session = sso.current_session(web.read_cookie(web.SESSION_COOKIE))
    if browser_session is None:
        return None
    hint = request.values.get("id_token_hint")
    hinted = hinted_claims(hint) if hint else None
    approved = sso.approved_clients(browser_session)
    if not sso.session_satisfies(
        browser_session, request.values, approved=approved, hinted=hinted, now=utcnow()
    ):
        return None
    return browser_session


def start_login(grant: Any, binding_secret: str) -> LoginRequest:
    """A login request for this validated authorization request, committed, for the
    browser holding ``binding_secret``; the app's ``idp.login_started`` hooks hear of it."""
    params = {k: request.values[k] for k in KEPT_PARAMS if k in request.values}
    login = logins.create_login_request(
        client_id=grant.client.client_id,
        client=grant.client,
        params=params,
        binding_secret=binding_secret,
        browser=web.Caller.from_request(),
    )
    db.session.commit()
    for hook in current_app.extensions["idp.login_started"]:
        hook(login, qr_url(login))
    return login


def login_page(login: LoginRequest, binding_secret: str) -> Response:
    """The page with the QR code, and the cookie that binds the login to this browser."""
    page = render_template(
        "qrlogin/authorize.html",
        login=login,
        state=page_state(login),
        qr=qr_svg(qr_url(login), qr_label()),
    )
    response = make_response(page)
    if login.client.logo_uri and (origin := logo_origin(login.client.logo_uri)):
        # The registered logo's origin, and nothing else, joins the page's image sources.
        policy = web.content_security_policy(img_src=[origin])
        response.headers["Content-Security-Policy"] = policy
    web.set_cookie(response, web.BINDING_COOKIE, binding_secret)
    return web.no_store(response)


def answer_from_session(server: Server, grant: Any, browser_session: BrowserSession) -> Response:
    """Single sign-on: issue the code now, with the session's honest ``auth_time``."""
    grant.request.login_request = sso.SessionLogin(
        id=f"session:{browser_session.id}",
        decided_at=browser_session.auth_time,
        device_pk=browser_session.device_pk,
    )
    response = server.create_authorization_response(
        request=grant.request, grant_user=browser_session.user, grant=grant
    )
    if grant.code_issued:
        audit.record(
            "login.sso",
            caller=web.Caller.from_request(),
            username=browser_session.user.username,
            device_id=browser_session.device.device_id if browser_session.device else None,
            client_id=grant.client.client_id,
        )
        db.session.commit()
    else:
        db.session.rollback()
    return web.no_store(response)


@bp.post("/authorize/renew/<request_id>")
@limits.per_ip("IDP_LIMIT_BROWSER", scope="browser")
@json_errors  # called by the page's script
def renew(request_id: str) -> Response:
    """The page's code expired: a fresh one for the same authorization request."""
    web.check_same_origin()
    login = logins.renew_login_request(
        request_id, web.binding_secret(), browser=web.Caller.from_request()
    )
    response = jsonify(page_state(login) | {"qr_svg": str(qr_svg(qr_url(login), qr_label()))})
    db.session.commit()
    return web.no_store(response)


@bp.post("/authorize/restart/<request_id>")
@limits.per_ip("IDP_LIMIT_BROWSER", scope="browser")
@json_errors  # called by the page's script
def restart(request_id: str) -> Response:
    """ "Not you? Show a new code": a phone that is not the person's scanned the code; it
    is released, and a fresh code replaces it for the same authorization request."""
    web.check_same_origin()
    login = logins.restart_login_request(
        request_id, web.binding_secret(), browser=web.Caller.from_request()
    )
    response = jsonify(page_state(login) | {"qr_svg": str(qr_svg(qr_url(login), qr_label()))})
    db.session.commit()
    return web.no_store(response)


@bp.post("/authorize/short-code/<request_id>")
@limits.per_ip("IDP_LIMIT_BROWSER", scope="browser")
@json_errors  # called by the page's script
def short_code(request_id: str) -> Response:
    """ "Can't scan?" was opened: a short code to type into the phone app instead."""
    web.check_same_origin()
    code, expires_at = shortcodes.issue_code(request_id, web.binding_secret())
    expires_in = max(0, int((expires_at - utcnow()).total_seconds()))
    response = jsonify(code=code, expires_in=expires_in)
    db.session.commit()
    return web.no_store(response)


@bp.get("/authorize/complete/<request_id>")
def complete(request_id: str) -> Response:
    """The phone decided: issue the code (or ``access_denied``) and go back to the RP."""
    login = logins.claim_completion(request_id, web.binding_secret())
    server = authorization_server()
    caller = web.Caller.from_request()
    oauth_request = StoredAuthorizationRequest(login.params, caller)
    oauth_request.login_request = login
    approved = login.status == Status.COMPLETED
    try:
        grant = server.get_consent_grant(
            request=oauth_request, end_user=login.user if approved else None
        )
    except OAuth2Error as error:  # e.g. the client was deleted meanwhile
        db.session.rollback()
        return authorization_error(server, error)
    response = server.create_authorization_response(
        request=oauth_request, grant_user=login.user if approved else None, grant=grant
    )
    if grant.code_issued:
        sign_in(response, login)
        audit.record(
            "login.completed",
            caller=caller,
            username=login.user.username if login.user else None,
            device_id=login.device.device_id if login.device else None,
            client_id=login.client_id,
            request=login.id[:8],
        )
        db.session.commit()
    else:
        db.session.rollback()
    return web.no_store(response)


def sign_in(response: Response, login: LoginRequest) -> None:
    """The browser is now signed in at the IdP too (single sign-on): a new session for
    this client (and the old session's clients, if the same user), in place of the one
    it had, and its cookie."""
    assert login.user is not None  # the phone that approved it named its user
    secret = sso.start_session(
        login.user,
        login.device_pk,
        login.decided_at or utcnow(),
        client_id=login.client_id,
        replacing=web.read_cookie(web.SESSION_COOKIE),
    )
    ttl = current_app.config["IDP_SESSION_TTL"]
    web.set_cookie(response, web.SESSION_COOKIE, secret, max_age=ttl)


def authorization_error(server: Server, error: OAuth2Error) -> Response:
    """Redirect the error to the RP when that is safe (RFC 6749 §4.1.2.1), else a page."""
    if error.redirect_uri:
        response = server.handle_error_response(None, error)
        Issuer().add_issuer_parameter(server, response)
        return web.no_store(response)
    return web.no_store(error_response(400, error.error, error.get_error_description()))


def qr_url(login: LoginRequest) -> str:
    """What the QR code holds: ``{issuer}/q/{id}``."""
    return f"{current_app.config['IDP_ISSUER']}/q/{login.id}"


def qr_label() -> str:
    """The QR code's text alternative."""
    return gettext("QR code to scan with the QR-IdP app on your phone")


def page_state(login: LoginRequest) -> dict[str, Any]:
    """What the page's script needs to follow one login request."""
    lifetime = (login.expires_at - login.created_at).total_seconds()
    locales = login.params.get("ui_locales") or None
    return {
        "id": login.id,
        "qr_url": qr_url(login),
        # url_for would give an absolute ws:// URL for a WebSocket rule; the page wants the path.
        "socket_path": f"/ws/login/{login.id}",
        # ui_locales rides along so that what these answer is in the page's language.
        "complete_url": url_for("qrlogin.complete", request_id=login.id, ui_locales=locales),
        "renew_url": url_for("qrlogin.renew", request_id=login.id, ui_locales=locales),
        "restart_url": url_for("qrlogin.restart", request_id=login.id, ui_locales=locales),
        "short_code_url": url_for("qrlogin.short_code", request_id=login.id, ui_locales=locales),
        "expires_in": int(lifetime),
        "renewals_left": current_app.config["IDP_QR_MAX_RENEWALS"] - login.renewals,
        "messages": page_messages(),
    }


def page_messages() -> dict[str, str]:
    """What the page's script says, in the page's language (``{time}`` and ``{seconds}``
    are filled in by the script)."""
    return {
        "pending": gettext("Scan with the QR-IdP app"),
        "scanned": gettext("Scanned — confirm on your phone"),
        "match": gettext("Scanned — on your phone, tap {number} to approve"),
        "approved": gettext("Approved — signing you in…"),
        "denied": gettext("Denied on the phone"),
        "denied_different_network": gettext(
            "This sign-in was refused: the phone that scanned the code is not on this"
            " computer's network. Start again, and scan the new code with your own phone,"
            " on this network."
        ),
        "denied_wrong_number": gettext("Denied: the wrong number was picked on the phone"),
        "denied_device_revoked": gettext("Denied: the phone that scanned the code was removed"),
        "expired": gettext("Expired — getting a new code…"),
        "completed": gettext("This sign-in was already used"),
        "code_expired": gettext("This code expired"),
        "connection_lost": gettext("Connection lost — get a new code to try again"),
        "countdown": gettext("The code changes in {time}"),
        "short_code_valid": gettext("Valid for {seconds} seconds."),
    }
