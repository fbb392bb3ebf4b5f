"""Authlib's authorization server, wired to our models.

Authlib does the protocol; this module supplies its storage hooks (clients, saved
tokens), client authentication and the server's assembly in ``init_app``. The policy
lives in the parts it registers: the grants (``idp.oauth.grants``: PKCE S256, codes
single use and short-lived, refresh tokens rotated), ID tokens and UserInfo
(``idp.oauth.claims``), bearer tokens (``idp.oauth.bearer``).
"""

from __future__ import annotations

import time
from typing import Any

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2 import OAuth2Request
from authlib.oauth2.rfc6749.authenticate_client import (
    authenticate_client_secret_basic as authlib_client_secret_basic,
)
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload
from authlib.oauth2.rfc9207 import IssuerParameter
from flask import Flask, current_app, g, has_request_context
from sqlalchemy import bindparam, insert, select

from idp import audit, db
from idp.oauth import cors
from idp.oauth.bearer import AccessTokens, BearerProtector
from idp.oauth.checks import AuthorizationChecks
from idp.oauth.claims import IdTokens, UserInfoClaims, issuer
from idp.oauth.endpoints import Introspection, Revocation
from idp.oauth.grants import (
    AuthorizationCodeGrant,
    RefreshTokenGrant,
    RequiredS256,
    ServiceAccountGrant,
    new_secret_token,
)
from idp.oauth.models import SUPPORTED_SCOPES, Client, Token, digest
from idp.oauth.polling import CIBA_GRANT_TYPE, DEVICE_CODE_GRANT_TYPE, CibaGrant, DeviceCodeGrant
from idp.web import Caller

# The hot lookups, built once: a statement made per call costs more to build than to run.
CLIENT_BY_ID = select(Client).where(Client.client_id == bindparam("client_id"))
TOKEN_INSERT = insert(Token.__table__)


class StoredAuthorizationRequest(OAuth2Request):
    """An authorization request replayed from stored, already-validated parameters."""

    def __init__(self, params: dict[str, str], caller: Caller) -> None:
        super().__init__("GET", issuer() + "/authorize", headers={})
        self.payload = BasicOAuth2Payload(dict(params))
        #: The login request whose approval this authorization completes.
        self.login_request: Any = None
        #: Who sent the HTTP request (for the audit log).
        self.caller = caller

    @property
    def args(self) -> dict[str, str]:
        return self.payload.data

    @property
    def form(self) -> dict[str, str]:
        return {}


class Server(AuthorizationServer):
    """Flask's Authlib server that also accepts a :class:`StoredAuthorizationRequest`."""

    def create_oauth2_request(self, request: Any) -> OAuth2Request:
        """Authlib's request object, which also says who sent it (``caller``): the grants'
        and endpoints' hooks hand that to the audit log."""
        if isinstance(request, OAuth2Request):
            return request
        oauth_request = super().create_oauth2_request(request)
        oauth_request.caller = Caller.from_request()
        return oauth_request

    def authenticate_client(self, request: Any, methods: list[str], endpoint: str = "token") -> Any:
        """Authlib's client authentication, where a failed ``Authorization: Basic`` attempt
        is final: 401 ``invalid_client`` whatever the body says (RFC 6749 §5.2), never a
        fall-back to a public client named by the body's ``client_id``."""
        if "client_secret_basic" in methods and _offers_basic(request):
            methods = ["client_secret_basic"]
        client = super().authenticate_client(request, methods, endpoint)
        cors.note_client(client.client_id)
        return client

    def validate_requested_scope(self, scope: str | None) -> None:
        """Scope values this IdP does not know (``address``, ``phone``, another
        provider's) are ignored, as OIDC Core §3.1.2.1 says they SHOULD be: the client's
        allowed scopes (``Client.get_allowed_scope``) decide what is granted, and the
        token response names the scope granted."""


def _offers_basic(request: Any) -> bool:
    """Whether the request's ``Authorization`` header is HTTP Basic (well formed or not)."""
    scheme, _, _ = (request.headers.get("Authorization") or "").strip().partition(" ")
    return scheme.lower() == "basic"


class Issuer(IssuerParameter):
    """RFC 9207: ``iss`` in every authorization response."""

    def get_issuer(self) -> str:
        return issuer()


def query_client(client_id: str) -> Client | None:
    """Authlib's client lookup, read once per HTTP request (Authlib validates an
    authorization twice); never kept from one request to the next."""
    if not isinstance(client_id, str) or len(client_id) > 64 or "\x00" in client_id:
        return None
    if not has_request_context():
        return db.session.scalar(CLIENT_BY_ID, {"client_id": client_id})
    read: dict[str, Client | None] = g.setdefault("idp_clients", {})
    if client_id not in read:
        read[client_id] = db.session.scalar(CLIENT_BY_ID, {"client_id": client_id})
    return read[client_id]


def save_token(token: dict[str, Any], request: Any) -> None:
    """Store a new token's digests; committed by the token view on success."""
    now = int(time.time())
    refresh = token.get("refresh_token")
    # A plain INSERT: nothing reads the new row back in this request, so the ORM's unit
    # of work (a flush at commit) would only cost time.
    db.session.execute(
        TOKEN_INSERT,
        dict(
            access_token_hash=digest(token["access_token"]),
            refresh_token_hash=digest(refresh) if refresh else None,
            client_id=request.client.client_id,
            user_id=request.user.id if request.user else None,
            scope=token.get("scope", ""),
            issued_at=now,
            expires_in=int(token["expires_in"]),
            refresh_expires_at=now + current_app.config["IDP_REFRESH_TOKEN_TTL"]
            if refresh
            else None,
            access_revoked=False,
            refresh_revoked=False,
            family=getattr(request, "family", None),
            device_pk=getattr(request, "device_pk", None),
        ),
    )
    audit.record(
        "token.issued",
        caller=request.caller,
        username=request.user.username if request.user else None,
        client_id=request.client.client_id,
        grant_type=request.payload.grant_type if request.payload else None,
        scope=token.get("scope") or None,
    )


def init_app(app: Flask) -> None:
    """Give ``app`` its own Authlib server (no state shared between apps)."""
    app.config.setdefault("OAUTH2_ACCESS_TOKEN_GENERATOR", new_secret_token)
    app.config.setdefault("OAUTH2_REFRESH_TOKEN_GENERATOR", new_secret_token)
    app.config.setdefault("OAUTH2_SCOPES_SUPPORTED", list(SUPPORTED_SCOPES))
    app.config.setdefault(
        "OAUTH2_TOKEN_EXPIRES_IN",
        {
            "authorization_code": app.config["IDP_ACCESS_TOKEN_TTL"],
            "refresh_token": app.config["IDP_ACCESS_TOKEN_TTL"],
            "client_credentials": app.config["IDP_ACCESS_TOKEN_TTL"],
            DEVICE_CODE_GRANT_TYPE: app.config["IDP_ACCESS_TOKEN_TTL"],
            CIBA_GRANT_TYPE: app.config["IDP_ACCESS_TOKEN_TTL"],
        },
    )
    server = Server(app, query_client=query_client, save_token=save_token)
    server.register_client_auth_method("client_secret_basic", authenticate_client_secret_basic)
    server.register_grant(
        AuthorizationCodeGrant, [RequiredS256(required=True), AuthorizationChecks(), IdTokens()]
    )
    server.register_grant(RefreshTokenGrant)
    server.register_grant(ServiceAccountGrant)
    server.register_grant(DeviceCodeGrant, [IdTokens()])
    server.register_grant(CibaGrant, [IdTokens()])
    server.register_endpoint(Revocation)
    server.register_endpoint(Introspection)
    server.register_extension(Issuer())
    protector = BearerProtector()
    protector.register_token_validator(AccessTokens(realm=app.config["IDP_ISSUER"]))
    server.register_endpoint(UserInfoClaims(resource_protector=protector))
    app.extensions["idp.oauth"] = server


def authenticate_client_secret_basic(query_client: Any, request: OAuth2Request) -> Client | None:
    """Authlib's ``client_secret_basic``, where credentials that are not UTF-8 (e.g.
    ``Basic /w==``) are no credentials rather than an uncaught ``UnicodeDecodeError``:
    the request then fails as every failed Basic authentication does, 401
    ``invalid_client`` with a ``WWW-Authenticate: Basic`` challenge (RFC 6749 §5.2)."""
    try:
        return authlib_client_secret_basic(query_client, request)
    except UnicodeDecodeError:
        return None


def authorization_server() -> Server:
    """The current app's Authlib server."""
    return current_app.extensions["idp.oauth"]
