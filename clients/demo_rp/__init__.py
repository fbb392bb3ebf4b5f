"""Demo relying party: a small website that signs its users in with QR-IdP.

It is an ordinary OpenID Connect client (authorization code flow with PKCE),
built on Authlib's Flask client:

* the IdP's endpoints come from OIDC discovery (``{issuer}/.well-known/openid-configuration``),
  loaded lazily on the first sign-in, never when the app is created;
* Authlib sends ``state``, ``nonce`` and an S256 ``code_challenge`` and, in
  ``authorize_access_token()``, checks the state and validates the ID token
  (signature with the IdP's JWKS, ``iss``, ``nonce``, ``exp``); this module
  also requires ``aud`` to hold our client id, the discovered ``issuer`` to be
  the configured one, the RFC 9207 ``iss`` response parameter to match, and
  the UserInfo ``sub`` to be the ID token's ``sub``.

Configuration: ``RP_ISSUER``, ``RP_CLIENT_ID``, ``RP_CLIENT_SECRET``,
``RP_SECRET_KEY``, ``RP_BASE_URL`` (and optionally
``RP_TOKEN_ENDPOINT_AUTH_METHOD``), from the environment, then from the
``config`` dict given to :func:`create_app`.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import requests
from authlib.common.errors import AuthlibBaseError
from authlib.integrations.base_client import MismatchingStateError
from authlib.integrations.flask_client import OAuth
from flask import Flask, redirect, render_template, request, session
from joserfc.errors import JoseError
from werkzeug.wrappers import Response

__all__ = ["ConfigError", "create_app", "load_config"]

TITLE = "Demo RP — a website that uses QR-IdP"

#: name -> default; ``None`` means "no default".
SETTINGS: dict[str, str | None] = {
    "RP_ISSUER": "http://127.0.0.1:8000",
    "RP_CLIENT_ID": None,
    "RP_CLIENT_SECRET": None,
    "RP_SECRET_KEY": None,
    "RP_BASE_URL": "http://localhost:8001",
    "RP_TOKEN_ENDPOINT_AUTH_METHOD": None,
}

SCOPE = "openid profile email"
#: Client authentication at the token endpoint; ``none`` is a public client (PKCE only).
AUTH_METHODS = ("client_secret_basic", "client_secret_post", "none")

#: ID token claims shown first, in this order; any others follow, sorted.
ID_TOKEN_CLAIM_ORDER = (
    "iss",
    "sub",
    "aud",
    "exp",
    "iat",
    "auth_time",
    "nonce",
    "at_hash",
    "amr",
    "acr",
    "azp",
    "name",
    "preferred_username",
    "email",
    "email_verified",
)
USERINFO_CLAIM_ORDER = ("sub", "name", "preferred_username", "email", "email_verified")
TIMESTAMP_CLAIMS = frozenset({"exp", "iat", "nbf", "auth_time", "updated_at"})

#: Endpoints the discovery document must name for the sign-in to work.
REQUIRED_METADATA = ("authorization_endpoint", "token_endpoint", "jwks_uri", "userinfo_endpoint")

HTTP_TIMEOUT_SECONDS = 10
MAX_SHOWN_DESCRIPTION = 500


class ConfigError(ValueError):
    """A setting is missing or has a value the demo RP refuses to start with."""


class IdPError(Exception):
    """The IdP or its answer is not what this RP trusts (shown as an error page)."""

    def __init__(self, title: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.title = title
        self.message = message
        self.status = status


def _check_url(name: str, value: str) -> str:
    """Return ``value`` without a trailing slash, or refuse it."""
    value = value.strip().rstrip("/")
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ConfigError(f"{name} must be an http:// or https:// URL, not {value!r}")
    if parts.query or parts.fragment:
        raise ConfigError(f"{name} must not have a query or a fragment")
    return value


def load_config(overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Return the RP settings: defaults, then ``RP_*`` variables, then ``overrides``.

    An empty environment variable counts as absent. An empty or absent
    ``RP_CLIENT_SECRET`` makes this a public client (PKCE only, token endpoint
    auth method ``none``).
    """
    values: dict[str, Any] = {}
    for name, default in SETTINGS.items():
        raw = os.environ.get(name)
        values[name] = default if raw in (None, "") else raw
    for name in SETTINGS:
        if overrides and name in overrides:
            values[name] = overrides[name]

    if not values["RP_CLIENT_ID"]:
        raise ConfigError("RP_CLIENT_ID is required: the client id registered at the IdP")
    values["RP_ISSUER"] = _check_url("RP_ISSUER", values["RP_ISSUER"] or "")
    values["RP_BASE_URL"] = _check_url("RP_BASE_URL", values["RP_BASE_URL"] or "")
    values["RP_CLIENT_SECRET"] = values["RP_CLIENT_SECRET"] or None
    if not values["RP_SECRET_KEY"]:
        values["RP_SECRET_KEY"] = secrets.token_urlsafe(32)
    has_secret = bool(values["RP_CLIENT_SECRET"])
    auth_method = values["RP_TOKEN_ENDPOINT_AUTH_METHOD"] or (
        "client_secret_basic" if has_secret else "none"
    )
    if auth_method not in AUTH_METHODS:
        raise ConfigError(f"RP_TOKEN_ENDPOINT_AUTH_METHOD must be one of {', '.join(AUTH_METHODS)}")
    if (auth_method == "none") == has_secret:
        raise ConfigError(
            f"RP_TOKEN_ENDPOINT_AUTH_METHOD {auth_method!r} does not fit "
            f"{'a' if has_secret else 'no'} RP_CLIENT_SECRET"
        )
    values["RP_TOKEN_ENDPOINT_AUTH_METHOD"] = auth_method
    return values


def _format_value(name: str, value: Any) -> str:
    """One claim value as text for the tables."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if name in TIMESTAMP_CLAIMS and isinstance(value, int | float):
        try:
            when = datetime.fromtimestamp(value, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        except (OverflowError, OSError, ValueError):
            return str(value)
        return f"{value} ({when})"
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return ", ".join(value)
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _claim_rows(claims: Mapping[str, Any], order: tuple[str, ...]) -> list[tuple[str, str]]:
    """The claims as (name, text) rows: the known ones in ``order``, then the rest sorted."""
    names = [n for n in order if n in claims]
    names += sorted(n for n in claims if n not in order)
    return [(n, _format_value(n, claims[n])) for n in names]


def _display_name(id_claims: Mapping[str, Any], userinfo: Mapping[str, Any]) -> str:
    for key in ("name", "preferred_username", "email"):
        for source in (userinfo, id_claims):
            if source.get(key):
                return str(source[key])
    return str(id_claims.get("sub", "unknown user"))


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the demo RP. Does not contact the IdP (discovery is loaded on first use)."""
    settings = load_config(config)
    issuer: str = settings["RP_ISSUER"]
    base_url: str = settings["RP_BASE_URL"]
    client_id: str = settings["RP_CLIENT_ID"]
    redirect_uri = f"{base_url}/callback"

    app = Flask(__name__)
    app.config.update(settings)
    app.config.update(
        SECRET_KEY=settings["RP_SECRET_KEY"],
        # Our own name: the IdP has its own cookies, and cookies do not keep
        # ports apart (127.0.0.1:8000 and 127.0.0.1:8001 share them).
        SESSION_COOKIE_NAME="rp_session",
        SESSION_COOKIE_HTTPONLY=True,
        # Lax, not Strict: the IdP's redirect to /callback is a cross-site
        # top-level GET, which must carry the cookie holding state and nonce.
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=base_url.startswith("https://"),
    )
    # Other keys of ``config`` (TESTING, ...) are plain Flask settings.
    app.config.update({k: v for k, v in (config or {}).items() if k not in SETTINGS})

    client_kwargs: dict[str, Any] = {
        "scope": SCOPE,
        "code_challenge_method": "S256",
        "token_endpoint_auth_method": settings["RP_TOKEN_ENDPOINT_AUTH_METHOD"],
        "default_timeout": HTTP_TIMEOUT_SECONDS,
    }
    oauth = OAuth(app)
    oauth.register(
        "idp",
        client_id=client_id,
        client_secret=settings["RP_CLIENT_SECRET"],
        server_metadata_url=f"{issuer}/.well-known/openid-configuration",
        client_kwargs=client_kwargs,
    )
    app.extensions["demo_rp.oauth"] = oauth

    @app.context_processor
    def page_context() -> dict[str, str]:
        return {"app_title": TITLE, "issuer": issuer}

    def idp_metadata() -> dict[str, Any]:
        """The discovery document, after checking it is the configured issuer's."""
        metadata = oauth.idp.load_server_metadata()
        if metadata.get("issuer") != issuer:
            # OIDC Discovery §4.3: the issuer in the document must be the one
            # we asked. Forget it, so a corrected IdP is picked up next time.
            found = metadata.get("issuer")
            oauth.idp.server_metadata.clear()
            raise IdPError(
                "The identity provider is not the expected one",
                f"Its discovery document names the issuer {found!r}, "
                f"but this site is configured for {issuer!r}.",
                status=502,
            )
        missing = [key for key in REQUIRED_METADATA if not metadata.get(key)]
        if missing:
            oauth.idp.server_metadata.clear()
            raise IdPError(
                "The identity provider's discovery document is incomplete",
                f"It does not name: {', '.join(missing)}.",
                status=502,
            )
        return metadata

    def forget_state(state: str | None) -> None:
        if state:
            oauth.idp.framework.clear_state_data(session, state)

    def message(title: str, text: str, *, details: str = "", status: int = 200) -> tuple[str, int]:
        return (
            render_template(
                "message.html",
                heading=title,
                text=text,
                details=details[:MAX_SHOWN_DESCRIPTION],
            ),
            status,
        )

    @app.get("/")
    def home() -> str:
        id_claims = session.get("id_claims")
        userinfo = session.get("userinfo") or {}
        if not id_claims:
            expected_host = urlsplit(base_url).netloc
            return render_template(
                "home.html",
                signed_in=False,
                base_url=base_url,
                wrong_host=request.host != expected_host,
            )
        return render_template(
            "home.html",
            signed_in=True,
            display_name=_display_name(id_claims, userinfo),
            id_rows=_claim_rows(id_claims, ID_TOKEN_CLAIM_ORDER),
            userinfo_rows=_claim_rows(userinfo, USERINFO_CLAIM_ORDER),
        )

    @app.route("/login", methods=["GET", "POST"])
    def login() -> Response:
        idp_metadata()
        return oauth.idp.authorize_redirect(redirect_uri=redirect_uri)

    @app.get("/callback")
    def callback() -> Response | tuple[str, int]:
        args = request.args
        state = args.get("state")

        # RFC 9207: the authorization response names its issuer; a different
        # one means the response comes from another IdP (mix-up attack).
        returned_iss = args.getlist("iss")
        if len(returned_iss) > 1 or (returned_iss and returned_iss[0] != issuer):
            forget_state(state)
            return message(
                "Sign-in refused: the answer came from the wrong identity provider",
                f"The response names the issuer {returned_iss[0]!r}, but this site signs in "
                f"with {issuer!r}. This can be a mix-up attack, so the answer was ignored.",
                status=400,
            )

        error = args.get("error")
        if error:
            # The IdP answered with an error: nothing to exchange, so the
            # token endpoint is not called.
            forget_state(state)
            description = args.get("error_description", "")
            if error == "access_denied":
                return message(
                    "Sign-in was denied on the phone",
                    "The sign-in request was declined, so you are not signed in.",
                    details=description,
                )
            return message(
                "Sign-in did not complete",
                f"The identity provider answered with the error {error!r}.",
                details=description,
            )

        if not state or oauth.idp.framework.get_state_data(session, state) is None:
            raise MismatchingStateError()

        metadata = idp_metadata()
        if not returned_iss and metadata.get("authorization_response_iss_parameter_supported"):
            forget_state(state)
            return message(
                "Sign-in refused: the answer does not name its issuer",
                "The identity provider promises an 'iss' parameter (RFC 9207), "
                "but this answer has none, so it was ignored.",
                status=400,
            )

        token = oauth.idp.authorize_access_token(
            claims_options={
                "iss": {"essential": True, "value": issuer},
                "aud": {"essential": True, "value": client_id},
                "sub": {"essential": True},
            }
        )
        id_claims = token.get("userinfo")
        if not id_claims:
            raise IdPError(
                "Sign-in failed: no ID token",
                "The identity provider's token response has no ID token.",
                status=502,
            )
        userinfo = dict(oauth.idp.userinfo(token=token))
        if userinfo.get("sub") != id_claims["sub"]:
            # OIDC Core §5.3.2: the UserInfo response must be about the same user.
            raise IdPError(
                "Sign-in failed: the UserInfo answer is about another user",
                "The UserInfo 'sub' is not the ID token's 'sub'.",
                status=502,
            )

        # A fresh session for the signed-in user (no leftovers from before).
        session.clear()
        session["id_claims"] = dict(id_claims)
        session["userinfo"] = userinfo
        return redirect("/")

    @app.post("/logout")
    def logout() -> Response:
        # With SameSite=Lax a cross-site POST carries no cookie, so the session
        # is empty and nothing is changed: no logout CSRF.
        if session:
            session.clear()
        return redirect("/")

    @app.errorhandler(MismatchingStateError)
    def state_error(exc: MismatchingStateError) -> tuple[str, int]:
        app.logger.warning("Sign-in answer with an unknown state")
        return message(
            "Sign-in failed: this answer does not match a sign-in started here",
            "The sign-in may have been started in another browser or tab, taken too long, "
            "or the page was reloaded. Please sign in again.",
            status=400,
        )

    @app.errorhandler(AuthlibBaseError)
    def authlib_error(exc: AuthlibBaseError) -> tuple[str, int]:
        app.logger.warning("OAuth error: %s: %s", exc.error, exc.description)
        return message(
            "Sign-in failed",
            f"The identity provider answered with the error {exc.error!r}.",
            details=exc.description or "",
            status=400,
        )

    @app.errorhandler(JoseError)
    def id_token_error(exc: JoseError) -> tuple[str, int]:
        app.logger.warning("ID token rejected: %s: %s", exc.error, exc.description)
        return message(
            "Sign-in failed: the ID token was rejected",
            f"The ID token did not pass validation ({exc.error}).",
            details=exc.description or "",
            status=400,
        )

    @app.errorhandler(requests.RequestException)
    def network_error(exc: requests.RequestException) -> tuple[str, int]:
        app.logger.warning("Cannot talk to the IdP: %s", exc)
        return message(
            "The identity provider could not be reached",
            f"This site could not get a valid answer from {issuer}. Is it running?",
            details=type(exc).__name__,
            status=502,
        )

    @app.errorhandler(IdPError)
    def idp_error(exc: IdPError) -> tuple[str, int]:
        app.logger.warning("%s: %s", exc.title, exc.message)
        return message(exc.title, exc.message, status=exc.status)

    return app
