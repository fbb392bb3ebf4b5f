"""The device authorization grant (RFC 8628), the device's and the phone's side.

A TV, a command-line tool or any device without a good browser POSTs
``/device_authorization`` with its ``client_id`` (and secret, if it has one). It gets a
``device_code`` to poll the token endpoint with (``idp.oauth.polling``), and a user code
``XXXX-XXXX`` to show with ``verification_uri`` (``{issuer}/device``) and
``verification_uri_complete`` (``{issuer}/device?user_code=XXXX-XXXX``, which a device
may show as a QR code).

The person approves with the phone app: its camera reads the QR code of
``verification_uri_complete``, or the person types the user code where they type a
page's "Can't scan?" code. Either way the phone API finds the request by the user
code (``shortcodes.find_by_code``, with its lock-out on wrong codes); the request is a
``login_requests`` row of kind ``device`` whose ``short_code_hash`` is the digest of
the user code, alive as long as the request. The IdP never stores the user code or the
device code in clear.

``GET /device`` is a page for someone who opened the verification URI in a browser: it
says to use the phone app, and shows the code it was given (never looked up: the page
says nothing about whether a code exists).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

from authlib.oauth2.rfc6749.errors import (
    InvalidClientError,
    InvalidScopeError,
    UnauthorizedClientError,
)
from authlib.oauth2.rfc8628 import DeviceAuthorizationEndpoint as AuthlibDeviceEndpoint
from flask import Blueprint, Response, current_app, make_response, render_template, request
from sqlalchemy.exc import IntegrityError

from idp import audit, db, web
from idp.oauth import polling
from idp.oauth.claims import issuer
from idp.oauth.models import Client, digest
from idp.qrlogin import shortcodes
from idp.qrlogin.lifecycle import Kind
from idp.qrlogin.models import LoginRequest
from idp.web import Caller

#: The grant type a client must be registered for (RFC 8628 §3.4).
GRANT_TYPE = "urn:ietf:params:oauth:grant-type:device_code"
#: Where the person goes: the path of ``verification_uri``, on the issuer.
VERIFICATION_PATH = "/device"


def verification_uri() -> str:
    """``{issuer}/device``."""
    return issuer() + VERIFICATION_PATH


def verification_uri_complete(user_code: str) -> str:
    """``{issuer}/device?user_code=XXXX-XXXX`` (the code's letters and hyphen need no
    escaping)."""
    return f"{verification_uri()}?user_code={user_code}"


def user_code_from_url(text: str) -> str | None:
    """The user code of a ``verification_uri_complete`` of this issuer, normalized, or
    ``None`` if ``text`` is not one: same scheme and host as the issuer, exactly the
    path ``/device``, one ``user_code`` parameter and nothing else, no fragment. A
    malformed code in such a URL is ``""`` (a refusal the caller words)."""
    base, parts = urlsplit(issuer()), urlsplit(text.strip())
    if (
        parts.scheme.lower() != base.scheme.lower()
        or parts.netloc.lower() != base.netloc.lower()
        or parts.path != base.path.rstrip("/") + VERIFICATION_PATH
        or parts.fragment
        or "#" in text
    ):
        return None
    query = parse_qs(parts.query, keep_blank_values=True)
    if set(query) != {"user_code"} or len(query["user_code"]) != 1:
        return None
    return shortcodes.normalize(query["user_code"][0]) or ""


class DeviceAuthorizationEndpoint(AuthlibDeviceEndpoint):
    """``POST /device_authorization`` (RFC 8628 §3.1-3.2).

    Public clients name themselves with ``client_id`` in the body; confidential ones
    authenticate as at the token endpoint (Basic or the body). A client not registered
    for the grant is refused (400 ``unauthorized_client``), an unknown one 401
    ``invalid_client``; the scope granted is the client's allowed part of the scope
    asked for, and none at all is 400 ``invalid_scope``.
    """

    CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]

    def authenticate_client(self, request: Any) -> Any:
        """The client, as at the token endpoint; any failure (an unknown ``client_id``
        too, which the token endpoint answers with a 400) is 401 ``invalid_client`` with
        a ``Basic`` challenge: a device has nobody to read a subtler answer."""
        try:
            return super().authenticate_client(request)
        except InvalidClientError as error:
            error.status_code = 401
            raise

    def create_endpoint_response(self, request: Any) -> tuple[int, dict[str, Any], list[Any]]:
        """The device's codes, after the checks above; the new request joins the
        caller's transaction (the view commits it with a 200)."""
        client = self.authenticate_client(request)
        if not client.check_grant_type(GRANT_TYPE):
            raise UnauthorizedClientError(
                description="this client is not registered for the device authorization grant"
            )
        scope = client.get_allowed_scope(request.payload.scope)
        if not scope:
            raise InvalidScopeError(
                description="none of the scope asked for is allowed for this client"
                if request.payload.scope
                else "ask for a scope, e.g. 'openid profile'"
            )
        config = current_app.config
        ttl, interval = config["IDP_DEVICE_CODE_TTL"], config["IDP_DEVICE_POLL_INTERVAL"]
        login, device_code, user_code = _new_device_request(
            client, scope, request.caller, ttl=ttl, interval=interval
        )
        audit.record(
            "device.authorization_started",
            caller=request.caller,
            client_id=client.client_id,
            scope=scope,
            request=login.id[:8],
        )
        data = {
            "device_code": device_code,
            "user_code": user_code,
            "verification_uri": verification_uri(),
            "verification_uri_complete": verification_uri_complete(user_code),
            "expires_in": ttl,
            "interval": interval,
        }
        return 200, data, [("Content-Type", "application/json"), *_NO_STORE]


_NO_STORE = [("Cache-Control", "no-store"), ("Pragma", "no-cache")]


def _new_device_request(
    client: Client, scope: str, caller: Caller, *, ttl: int, interval: int
) -> tuple[LoginRequest, str, str]:
    """A device request with a fresh user code, in the caller's transaction: (the row,
    its device_code, its user code). The user code shares the short codes' unique
    column: a clash with a live code (astronomically rare) draws again."""
    for _ in range(3):
        user_code = shortcodes.new_code()
        try:
            with db.session.begin_nested():  # a clash undoes this attempt only
                login, device_code = polling.new_request(
                    kind=Kind.DEVICE,
                    client=client,
                    scope=scope,
                    caller=caller,
                    ttl=ttl,
                    interval=interval,
                    short_code_hash=digest(user_code),
                )
                login.short_code_expires_at = login.expires_at
                db.session.flush()
        except IntegrityError:
            continue
        return login, device_code, user_code
    raise RuntimeError("could not draw a unique user code")


#: ``GET /device``: a page, with HTML errors like the other pages people open.
pages = Blueprint("device", __name__)


@pages.get(VERIFICATION_PATH)
def verification_page() -> Response:
    """The verification URI opened in a browser: use the phone app. A ``user_code``
    given is shown (normalized) after a check of its form only, never looked up, so the
    page says nothing of whether it exists; one that cannot be a code is a 400 that says
    what a code looks like. Changes nothing; not kept by caches (the code is in the URL)."""
    given = request.args.get("user_code")
    code = shortcodes.normalize(given) if given is not None else None
    status = 400 if given is not None and code is None else 200
    page = render_template("device.html", code=code, malformed=status == 400)
    return web.no_store(make_response(page, status))
