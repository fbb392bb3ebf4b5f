"""The browser side of QR sign-in: the authorize page, renewal, completion.

``GET /authorize`` validates the OAuth request with Authlib, starts a login
request bound to this browser's cookie and shows its QR code. The page then
waits on a WebSocket; once the phone approves, it opens
``/authorize/complete/<id>``, which issues the code and redirects to the RP.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

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

from idp import CONTENT_SECURITY_POLICY, audit, db, limits
from idp.admin.services import logo_origin
from idp.db import utcnow
from idp.errors import ForeignOrigin, InvalidRequest, error_response, json_errors
from idp.oauth.server import Issuer, Server, StoredAuthorizationRequest, authorization_server
from idp.qrlogin import services as logins
from idp.qrlogin import shortcodes
from idp.qrlogin.models import LoginRequest, Status
from idp.qrlogin.qr import qr_svg
from idp.sso import services as sso
from idp.sso.models import BrowserSession
from idp.terminal import printable

bp = Blueprint("qrlogin", __name__)

#: Authorization request parameters kept with the login request (others are ignored).
KEPT_PARAMS = (
    "response_type", "client_id", "redirect_uri", "scope", "state", "nonce",
    "code_challenge", "code_challenge_method", "prompt", "max_age", "login_hint",
    "ui_locales", "claims_locales", "acr_values", "display", "response_mode",
)  # fmt: skip
BINDING_RE = re.compile(r"^[A-Za-z0-9_-]{43}$")


def binding_cookie_name() -> str:
    """``__Host-`` cookies are Secure-only and cannot be set by a sibling domain."""
    secure = current_app.config["IDP_ISSUER"].startswith("https://")
    return "__Host-idp_binding" if secure else "idp_binding"


def binding_secret() -> str | None:
    """This browser's binding secret, if it sent a well-formed one."""
    value = request.cookies.get(binding_cookie_name())
    return value if value and BINDING_RE.match(value) else None


def check_same_origin() -> None:
    """Refuse state-changing browser requests and sockets from other origins."""
    issuer = urlsplit(current_app.config["IDP_ISSUER"])
    if request.headers.get("Origin") != f"{issuer.scheme}://{issuer.netloc}":
        raise ForeignOrigin()


@bp.route("/authorize", methods=["GET", "POST"])
@limits.per_ip("IDP_LIMIT_BROWSER", scope="browser")
def authorize() -> Response:
    """Authorization endpoint (RFC 6749 §3.1; GET or form POST, OIDC Core §3.1.2.1):
    validate, then answer from the IdP session or show the QR code."""
    server = authorization_server()
    for name in ("response_type", "redirect_uri"):
        # Authlib quotes these in its error descriptions, which must be plain ASCII
        # (RFC 6749 §4.1.2.1); no valid value has other characters.
        if invalid_error_characters(request.values.get(name, "")):
            raise InvalidRequest(f"{name} has characters no valid value has")
    browser_session = sso.current_session()
    if browser_session is not None and not session_satisfies(browser_session):
        browser_session = None
    try:
        grant = server.get_consent_grant(end_user=browser_session.user if browser_session else None)
    except OAuth2Error as error:
        return authorization_error(server, error)
    if browser_session is not None:
        return answer_from_session(server, grant, browser_session)
    params = {k: request.values[k] for k in KEPT_PARAMS if k in request.values}
    secret = binding_secret() or logins.new_binding_secret()
    login = logins.create_login_request(
        client_id=grant.client.client_id,
        client=grant.client,
        params=params,
        binding_secret=secret,
        browser_ip=request.remote_addr,
        browser_user_agent=request.user_agent.string,
    )
    db.session.commit()
    if command := current_app.config["IDP_DEMO_PHONE_COMMAND"]:
        print(
            f"\n[demo] sign-in request from {printable(login.client.name)}; approve it with:\n"
            f"    {command} {qr_url(login)} --approve\n",
            flush=True,
        )
    page = render_template(
        "qrlogin/authorize.html",
        login=login,
        state=page_state(login),
        qr=qr_svg(qr_url(login), qr_label()),
    )
    response = make_response(page)
    if login.client.logo_uri and (origin := logo_origin(login.client.logo_uri)):
        # The registered logo's origin, and nothing else, joins the page's image sources.
        response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY.replace(
            "img-src 'self' data:", f"img-src 'self' data: {origin}"
        )
    response.set_cookie(
        binding_cookie_name(),
        secret,
        httponly=True,
        secure=binding_cookie_name().startswith("__Host-"),
        samesite="Lax",
        path="/",
    )
    _no_store(response)
    return response


def session_satisfies(browser_session: BrowserSession) -> bool:
    """May this request be answered from the browser's IdP session, without a scan?

    Not with ``prompt=login``, not when the sign-in is older than ``max_age`` seconds,
    and not when ``id_token_hint`` names someone else (OIDC Core §3.1.2.1).
    """
    if "login" in request.values.get("prompt", "").split():
        return False
    max_age = request.values.get("max_age", "")
    if max_age:
        if not (max_age.isascii() and max_age.isdigit()):
            return False  # refused as invalid_request by the grant's validation
        elapsed = (utcnow() - browser_session.auth_time).total_seconds()
        if elapsed > int(max_age):
            return False
    if hint := request.values.get("id_token_hint"):
        subject = hinted_claims(hint).get("sub")
        if subject != browser_session.user.subject:
            return False
    return True


def hinted_claims(id_token: str) -> dict[str, Any]:
    """The claims of an ID token we signed (expired ones too), or ``{}``."""
    from joserfc import jwt
    from joserfc.errors import JoseError
    from joserfc.jwk import KeySet

    from idp.oauth.keys import ALGORITHMS, key_store

    if len(id_token) > 8192:
        return {}
    try:
        token = jwt.decode(id_token, KeySet.import_key_set(key_store().jwks()), list(ALGORITHMS))
    except (JoseError, ValueError):
        return {}
    if token.claims.get("iss") != current_app.config["IDP_ISSUER"]:
        return {}
    return dict(token.claims)


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
    if response.status_code == 302 and "code=" in (response.location or ""):
        audit.record(
            "login.sso",
            username=browser_session.user.username,
            device_id=browser_session.device.device_id if browser_session.device else None,
            client_id=grant.client.client_id,
        )
        db.session.commit()
    else:
        db.session.rollback()
    _no_store(response)
    return response


@bp.post("/authorize/renew/<request_id>")
@limits.per_ip("IDP_LIMIT_BROWSER", scope="browser")
@json_errors  # called by the page's script
def renew(request_id: str) -> Response:
    """The page's code expired: a fresh one for the same authorization request."""
    check_same_origin()
    login = logins.renew_login_request(
        request_id,
        binding_secret(),
        browser_ip=request.remote_addr,
        user_agent=request.user_agent.string,
    )
    response = jsonify(page_state(login) | {"qr_svg": str(qr_svg(qr_url(login), qr_label()))})
    db.session.commit()
    _no_store(response)
    return response


@bp.post("/authorize/short-code/<request_id>")
@limits.per_ip("IDP_LIMIT_BROWSER", scope="browser")
@json_errors  # called by the page's script
def short_code(request_id: str) -> Response:
    """ "Can't scan?" was opened: a short code to type into the phone app instead."""
    check_same_origin()
    code, expires_at = shortcodes.issue_code(request_id, binding_secret())
    expires_in = max(0, int((expires_at - utcnow()).total_seconds()))
    response = jsonify(code=code, expires_in=expires_in)
    db.session.commit()
    _no_store(response)
    return response


@bp.get("/authorize/complete/<request_id>")
def complete(request_id: str) -> Response:
    """The phone decided: issue the code (or ``access_denied``) and go back to the RP."""
    login = logins.claim_completion(request_id, binding_secret())
    server = authorization_server()
    oauth_request = StoredAuthorizationRequest(login.params)
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
    if approved and response.status_code == 302 and "code=" in response.location:
        # The browser is now signed in at the IdP too (single sign-on).
        sso.start_session(response, login.user, login.device_pk, login.decided_at or utcnow())
        audit.record(
            "login.completed",
            username=login.user.username if login.user else None,
            device_id=login.device.device_id if login.device else None,
            client_id=login.client_id,
            request=login.id[:8],
        )
        db.on_commit(lambda: logins.publish_status(login.id, Status.COMPLETED))
        db.session.commit()
    else:
        db.session.rollback()
    _no_store(response)
    return response


@bp.get("/q/<request_id>")
def qr_landing(request_id: str) -> str:
    """Where a phone's plain camera app lands: it says to use the app, and nothing more."""
    return render_template("qrlogin/qr_landing.html")


def authorization_error(server: Server, error: OAuth2Error) -> Response:
    """Redirect the error to the RP when that is safe (RFC 6749 §4.1.2.1), else a page."""
    if error.redirect_uri:
        response = server.handle_error_response(None, error)
        Issuer().add_issuer_parameter(server, response)
        _no_store(response)
        return response
    response = error_response(400, error.error, error.get_error_description())
    _no_store(response)
    return response


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
        "expired": gettext("Expired — getting a new code…"),
        "completed": gettext("This sign-in was already used"),
        "code_expired": gettext("This code expired"),
        "connection_lost": gettext("Connection lost — get a new code to try again"),
        "countdown": gettext("The code changes in {time}"),
        "short_code_valid": gettext("Valid for {seconds} seconds."),
    }


def _no_store(response: Response) -> None:
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
