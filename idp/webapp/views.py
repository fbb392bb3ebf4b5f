"""The phone web app: the IdP serves its own phone app, on its own origin.

``/app/`` is the app (enroll this phone, scan, type a code, this phone and the others);
``/q/<id>``, what every sign-in QR code holds, is the same app opened on one request, so
that a phone's own camera app lands on the approval screen; ``/app/invite/<token>`` is
the app opened on an enrollment invitation. The pages are one template; the app's
script (``idp/static/app/``) talks only to the phone API (``/api/mobile/v1``), signing
every request with a key the browser made and cannot export.

None of these pages changes anything: a link preview, a crawler or a glance at the QR
code by a phone without the app's key does nothing. Only the script's signed POSTs do.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, make_response, redirect, render_template
from flask import request as http_request
from flask_babel import gettext

from idp import web
from idp.admin.services import logo_origin
from idp.errors import UnknownRequest
from idp.i18n import html_lang
from idp.mobile import invitations
from idp.qrlogin import services as logins
from idp.qrlogin.useragent import summarize_user_agent
from idp.webapp.messages import app_messages

bp = Blueprint("webapp", __name__)

#: The app's own static files: all the service worker may keep (idp/static/app/sw.js
#: lists the same; tests/integration/test_phone_web_app.py checks the two agree).
APP_FILES = (
    "idp.css",
    "app/app.css",
    "app/app.js",
    "app/api.js",
    "app/keystore.js",
    "app/proof.js",
    "app/enrollment.js",
    "app/inbox.js",
    "app/scanner.js",
    "vendor/zxing-library.min.js",
    "app/icon-192.png",
    "app/icon-512.png",
)


@bp.get("/app")
def app_redirect() -> Any:
    """The app lives under ``/app/`` (its service worker's scope)."""
    return redirect("/app/", code=308)


@bp.get("/app/")
def app_home() -> Response:
    """The app: enroll this phone, or (enrolled) scan, type a code, manage the phones."""
    return _app_page(screen="home")


@bp.get("/q/<request_id>")
@bp.get("/app/q/<request_id>")
def approve_page(request_id: str) -> Response:
    """What a sign-in QR code holds. Opened in the phone browser that holds this IdP's
    key, the app scans it (a signed POST) and shows the approval screen; elsewhere it
    offers to set up this phone first. Opening it changes nothing. The app's own scanner
    and typed codes open it as ``/app/q/<id>``, inside the installed app's scope: an app
    added to the home screen keeps its own storage on some phones (iOS), apart from the
    browser's, and must not leave its scope to find its key."""
    extra = {}
    origin = _logo_origin_of(request_id)
    if origin:  # the site's logo, as on its authorize page: that origin, nothing else
        extra["img_src"] = [origin]
    return _app_page(
        screen="request", request_id=request_id, sent_by_site=_sent_by_a_site(), csp=extra
    )


def _sent_by_a_site() -> bool:
    """Whether another website navigated the phone here (``Sec-Fetch-Site``). A camera
    app, a typed or pasted link send ``none``; the app itself ``same-origin``. Any site
    the phone visits could otherwise make it scan a stranger's sign-in unasked, so the app
    asks first. (A browser that sends no such header is not asked: it cannot be told.)"""
    return http_request.headers.get("Sec-Fetch-Site") in ("cross-site", "same-site")


@bp.get("/app/invite/<token>")
def invitation_page(token: str) -> Response:
    """An enrollment invitation: who it is for, and **Set up this phone**. Reading it
    consumes nothing (a link preview only GETs); the app's signed POST uses it up."""
    invitation = invitations.open_invitation(token)
    if invitation is None:
        return _app_page(screen="invitation_gone", status=410)
    user = invitation.user
    invited = {"username": user.username, "name": user.name or user.username}
    return _app_page(screen="invitation", invitation=token, invited=invited)


@bp.get("/app/manifest.webmanifest")
def manifest() -> Response:
    """The web app manifest: installable to the home screen, opening ``/app/``."""
    name = current_app.config["IDP_NAME"]
    body = {
        "name": name,
        "short_name": name,
        "description": gettext("Sign in to websites by scanning their QR code"),
        "lang": html_lang(),
        "start_url": "/app/",
        "scope": "/app/",
        "id": "/app/",
        "display": "standalone",
        "background_color": "#f3f4f6",
        "theme_color": "#1d4ed8",
        "icons": [
            {"src": f"/static/app/icon-{size}.png", "sizes": f"{size}x{size}", "type": "image/png"}
            for size in (192, 512)
        ],
    }
    response = current_app.response_class(
        current_app.json.dumps(body), mimetype="application/manifest+json"
    )
    response.headers["Cache-Control"] = "no-cache"
    return response


@bp.get("/app/sw.js")
def service_worker() -> Response:
    """The service worker, served from ``/app/`` so that its scope is ``/app/``."""
    response = current_app.send_static_file("app/sw.js")
    response.headers["Content-Type"] = "text/javascript; charset=utf-8"
    response.headers["Cache-Control"] = "no-cache"  # a new version is seen at once
    return response


def _app_page(
    *, screen: str, status: int = 200, csp: dict[str, list[str]] | None = None, **extra: Any
) -> Response:
    config = current_app.config
    state = {
        "screen": screen,
        "issuer": config["IDP_ISSUER"],
        "api": config["IDP_ISSUER"] + "/api/mobile/v1",
        "device_name": summarize_user_agent(http_request.user_agent.string),
        "messages": app_messages(),
        **extra,
    }
    response = make_response(render_template("webapp/app.html", state=state), status)
    if csp:
        response.headers["Content-Security-Policy"] = web.content_security_policy(**csp)
    return web.no_store(response)


def _logo_origin_of(request_id: str) -> str | None:
    try:
        login = logins.find_login_request(request_id)
    except UnknownRequest:
        return None
    return logo_origin(login.client.logo_uri) if login.client.logo_uri else None
