"""Authlib's authorization server, wired to our models.

Authlib does the protocol; this module supplies storage hooks and policy:
PKCE S256 required of public clients (``plain`` refused), codes single use and
short-lived, refresh tokens rotated, ID tokens signed with a ``kid``.
"""

from __future__ import annotations

import secrets
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from authlib.consts import default_json_headers
from authlib.integrations.flask_oauth2 import AuthorizationServer, ResourceProtector
from authlib.oauth2 import OAuth2Error, OAuth2Request
from authlib.oauth2.rfc6749 import InvalidGrantError, InvalidRequestError, grants
from authlib.oauth2.rfc6749.authenticate_client import (
    authenticate_client_secret_basic as authlib_client_secret_basic,
)
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload
from authlib.oauth2.rfc6750 import BearerTokenValidator
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc9207 import IssuerParameter
from authlib.oidc.core import OpenIDCode, UserInfo, UserInfoEndpoint
from flask import Flask, current_app, g, has_request_context
from flask import request as flask_request
from sqlalchemy import bindparam, insert, or_, select, update

from idp import audit, db
from idp.accounts.models import User
from idp.accounts.services import user_claims
from idp.db import utcnow
from idp.mobile.models import Device
from idp.oauth import cors
from idp.oauth.checks import AuthorizationChecks
from idp.oauth.endpoints import Introspection, Revocation
from idp.oauth.keys import key_store
from idp.oauth.models import SUPPORTED_SCOPES, AuthorizationCode, Client, Token, digest
from idp.web import Caller

#: How the user was authenticated (RFC 8176): a proof with a software key held
#: by the enrolled phone app, confirmed by the user on that phone.
AMR = ["swk", "user"]
ACR = "urn:qr-idp:acr:phone-approval"
TOKEN_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]


# The hot lookups, built once: a statement made per call costs more to build than to run.
CLIENT_BY_ID = select(Client).where(Client.client_id == bindparam("client_id"))
CODE_BY_DIGEST = select(AuthorizationCode).where(AuthorizationCode.code_hash == bindparam("digest"))
TOKEN_BY_ACCESS_DIGEST = select(Token).where(Token.access_token_hash == bindparam("digest"))
TOKEN_BY_REFRESH_DIGEST = select(Token).where(Token.refresh_token_hash == bindparam("digest"))
TOKEN_INSERT = insert(Token.__table__)
CODE_INSERT = insert(AuthorizationCode.__table__)


def _epoch(moment: datetime) -> int:
    """Unix time of a naive UTC timestamp (as the database stores them)."""
    return int(moment.replace(tzinfo=UTC).timestamp())


def _issuer() -> str:
    return current_app.config["IDP_ISSUER"]


class StoredAuthorizationRequest(OAuth2Request):
    """An authorization request replayed from stored, already-validated parameters."""

    def __init__(self, params: dict[str, str], caller: Caller) -> None:
        super().__init__("GET", _issuer() + "/authorize", headers={})
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


class RequiredS256(CodeChallenge):
    """PKCE: S256 only, and required of public clients at the authorize step."""

    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]
    #: Read by Authlib at the token step for a code stored without a method (its own
    #: default is "plain"); the check below stores none such, so this is a safety net.
    DEFAULT_CODE_CHALLENGE_METHOD = "S256"

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        request = grant.request
        if request.client.is_public and not request.payload.data.get("code_challenge"):
            raise InvalidRequestError("PKCE is required: send code_challenge (S256)")
        if request.payload.data.get("code_challenge") and not request.payload.data.get(
            "code_challenge_method"
        ):
            # RFC 7636 would default to "plain", which we refuse.
            raise InvalidRequestError("code_challenge_method must be S256")
        super().validate_code_challenge(grant, redirect_uri)


def new_secret_token(*_args: Any, **_kwargs: Any) -> str:
    """A code, access or refresh token: 256 random bits, base64url (43 characters).

    Authlib's default draws each of 42-48 characters with its own ``SystemRandom`` call
    (an ``os.urandom`` each); one call gives as many bits.
    """
    return secrets.token_urlsafe(32)


class AuthorizationCodeGrant(grants.AuthorizationCodeGrant):
    """Codes are stored as digests, live under a minute, and are used once."""

    TOKEN_ENDPOINT_AUTH_METHODS = TOKEN_AUTH_METHODS
    #: Set once this grant has saved a code: the authorization succeeded.
    code_issued = False

    def generate_authorization_code(self) -> str:
        return new_secret_token()

    def save_authorization_code(self, code: str, request: Any) -> None:
        self.code_issued = True
        login = request.login_request
        data = request.payload.data
        db.session.execute(
            CODE_INSERT,
            dict(
                code_hash=digest(code),
                client_id=request.client.client_id,
                user_id=request.user.id,
                login_request_id=login.id,
                # RFC 6749 §4.1.3: the token request repeats redirect_uri only if this did.
                redirect_uri=data.get("redirect_uri"),
                scope=request.scope or "",
                nonce=data.get("nonce"),
                code_challenge=data.get("code_challenge"),
                code_challenge_method=data.get("code_challenge_method"),
                auth_time=_epoch(login.decided_at) if login.decided_at else int(time.time()),
                acr=ACR,
                amr=AMR,
                expires_at=utcnow() + timedelta(seconds=current_app.config["IDP_CODE_TTL"]),
                used_at=None,
                device_pk=login.device_pk,
            ),
        )  # committed by the completion view with the login's transition

    def query_authorization_code(self, code: str, client: Client) -> AuthorizationCode | None:
        found = db.session.scalar(CODE_BY_DIGEST, {"digest": digest(code)})
        if found is None or found.client_id != client.client_id:
            return None
        if found.device_revoked():
            return None  # revoking the phone revoked its family already: no replay alarm
        if found.used_at is not None:
            # A replayed code: someone else may hold it. Withdraw what it gave (oidcc-codereuse).
            revoke_family(
                found.code_hash,
                client_id=client.client_id,
                reason="code replayed",
                caller=self.request.caller,
            )
            return None
        if found.is_expired():
            return None
        self.request.family = found.code_hash
        self.request.device_pk = found.device_pk
        return found

    def delete_authorization_code(self, authorization_code: AuthorizationCode) -> None:
        # Compare-and-set: of two concurrent redemptions only one may succeed.
        result = db.session.execute(
            update(AuthorizationCode)
            .where(
                AuthorizationCode.id == authorization_code.id, AuthorizationCode.used_at.is_(None)
            )
            .values(used_at=utcnow())
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            # The winner's tokens are committed: withdraw them.
            revoke_family(
                authorization_code.code_hash,
                client_id=authorization_code.client_id,
                reason="code redeemed twice at once",
                caller=self.request.caller,
            )
            raise InvalidGrantError("the authorization code was already used")

    def authenticate_user(self, authorization_code: AuthorizationCode) -> User:
        return authorization_code.user


class RefreshTokenGrant(grants.RefreshTokenGrant):
    """Refresh tokens rotate: each use returns a new one and retires the old."""

    TOKEN_ENDPOINT_AUTH_METHODS = TOKEN_AUTH_METHODS
    INCLUDE_NEW_REFRESH_TOKEN = True

    def authenticate_refresh_token(self, refresh_token: str) -> Token | None:
        token = db.session.scalar(TOKEN_BY_REFRESH_DIGEST, {"digest": digest(refresh_token)})
        if token is None or token.device_revoked():
            return None  # revoking the phone revoked the family: not a reuse to alarm on
        if token.refresh_revoked and token.family:
            # A refresh token used again after it rotated (or was revoked): whoever holds
            # the family's newest token may be the thief or the victim. Revoke them all.
            revoke_family(
                token.family,
                client_id=token.client_id,
                reason="refresh token reused",
                caller=self.request.caller,
            )
            return None
        if not token.is_refresh_usable():
            return None
        self.request.family = token.family
        self.request.device_pk = token.device_pk
        return token

    def authenticate_user(self, refresh_token: Token) -> User | None:
        return refresh_token.user

    def revoke_old_credential(self, refresh_token: Token) -> None:
        result = db.session.execute(
            update(Token)
            .where(Token.id == refresh_token.id, Token.refresh_revoked.is_(False))
            .values(refresh_revoked=True, access_revoked=True)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            db.session.rollback()
            if refresh_token.family:
                revoke_family(
                    refresh_token.family,
                    client_id=refresh_token.client_id,
                    reason="refresh token used twice at once",
                    caller=self.request.caller,
                )
            raise InvalidGrantError("the refresh token was already used")


class ServiceAccountGrant(grants.ClientCredentialsGrant):
    """``client_credentials`` (RFC 6749 §4.4): a confidential client acting for itself,
    only when an admin registered it as a service account. No refresh token, no ID
    token, no user."""

    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]


class ScopedClaims:
    """Authlib's ``generate_user_info``, for the ID token and for UserInfo alike: the
    user's claims that the granted scope allows."""

    def generate_user_info(self, user: User, scope: str) -> UserInfo:
        return UserInfo(user_claims(user, set(scope.split())))


class IdTokens(ScopedClaims, OpenIDCode):
    """ID tokens: RS256 by default (ES256 per client), ``kid`` in the header."""

    def resolve_client_private_key(self, client: Client) -> Any:
        return key_store().signing_key(self.get_client_algorithm(client))

    def get_client_algorithm(self, client: Client) -> str:
        return client.id_token_signed_response_alg or "RS256"

    def get_encode_header(self, client: Client) -> dict[str, str]:
        key = self.resolve_client_private_key(client)
        return {"alg": self.get_client_algorithm(client), "typ": "JWT", "kid": key.kid}

    def get_client_claims(self, client: Client) -> dict[str, Any]:
        now = int(time.time())
        return {
            "iss": _issuer(),
            "aud": client.client_id,
            "iat": now,
            "exp": now + current_app.config["IDP_ID_TOKEN_TTL"],
        }

    def exists_nonce(self, nonce: str, request: Any) -> bool:
        # A nonce already bound to a code of this client is a replay. Authlib validates a
        # completion twice (consent, then response), nothing written in between: one read.
        checked = getattr(request, "idp_nonce_checked", None)
        if checked is not None and checked[0] == nonce:
            return checked[1]
        exists = (
            db.session.scalar(
                select(AuthorizationCode.id).where(
                    AuthorizationCode.client_id == request.payload.client_id,
                    AuthorizationCode.nonce == nonce,
                )
            )
            is not None
        )
        request.idp_nonce_checked = (nonce, exists)
        return exists


class UserInfoClaims(ScopedClaims, UserInfoEndpoint):
    """OIDC UserInfo (GET and POST): the claims the access token's scopes allow."""

    def get_issuer(self) -> str:
        return _issuer()

    def resolve_private_key(self) -> Any:
        return key_store().signing_key("RS256")


class AccessTokens(BearerTokenValidator):
    """Bearer access tokens, looked up by digest."""

    def authenticate_token(self, token_string: str) -> Token | None:
        token = db.session.scalar(TOKEN_BY_ACCESS_DIGEST, {"digest": digest(token_string)})
        # UserInfo is about a person: a service account's token (no user) is not valid there.
        if token is None or token.user_id is None:
            return None
        cors.note_client(token.client_id)
        return token


class NoBearerToken(OAuth2Error):
    """A request that offers no access token at all, or offers it by a scheme other than
    Bearer: 401 with a bare challenge, ``WWW-Authenticate: Bearer realm="..."``, and no
    error code (RFC 6750 §3.1: the client may not know it needs one)."""

    status_code = 401

    def __init__(self, realm: str) -> None:
        super().__init__()
        self.realm = realm

    def get_body(self) -> list[tuple[str, str]]:
        return []

    def get_headers(self) -> list[tuple[str, str]]:
        return [*default_json_headers, ("WWW-Authenticate", f'Bearer realm="{self.realm}"')]


class BearerProtector(ResourceProtector):
    """Bearer tokens in the ``Authorization`` header or, for a form POST without one, in
    its ``access_token`` field (RFC 6750 §2.2; the Basic OP plan's oidcc-userinfo-post-body).
    Never in the query string (§2.3 is not offered: URLs end up in logs)."""

    def parse_request_authorization(self, request: Any) -> tuple[Any, str]:
        form_token = (
            flask_request.method == "POST"
            and flask_request.mimetype == "application/x-www-form-urlencoded"
            and not flask_request.headers.get("Authorization")
            and flask_request.form.get("access_token")
        )
        if form_token:
            return self.get_token_validator("bearer"), form_token
        scheme, _, _ = (flask_request.headers.get("Authorization") or "").strip().partition(" ")
        if scheme.lower() != "bearer":
            raise NoBearerToken(self._default_realm or _issuer())
        return super().parse_request_authorization(request)


class Issuer(IssuerParameter):
    """RFC 9207: ``iss`` in every authorization response."""

    def get_issuer(self) -> str:
        return _issuer()


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


def revoke_family(family: str, *, client_id: str, reason: str, caller: Caller | None) -> None:
    """Revoke every token descended from one authorization code, at once and for good.

    The token request that found the replay fails, but this stands: it is committed
    alone (``db.stand_alone``: that request's work so far is rolled back first)."""
    with db.stand_alone() as session:
        result = session.execute(
            update(Token)
            .where(Token.family == family)
            .values(access_revoked=True, refresh_revoked=True)
        )
        audit.record(
            "token.family_revoked",
            caller=caller,
            client_id=client_id,
            reason=reason,
            tokens=result.rowcount,  # type: ignore[attr-defined]
        )


def revoke_device_grants(device: Device, *, caller: Caller | None) -> tuple[int, int]:
    """Withdraw what a phone's approvals gave: revoke its live tokens (one
    ``token.family_revoked`` event per family, reason ``device_revoked``) and end its
    unredeemed codes. In the caller's transaction, which revokes the device too.

    Returns the numbers of tokens and codes withdrawn.
    """
    now = utcnow()
    revoked = db.session.execute(
        update(Token)
        .where(
            Token.device_pk == device.id,
            or_(Token.access_revoked.is_(False), Token.refresh_revoked.is_(False)),
        )
        .values(access_revoked=True, refresh_revoked=True)
        .returning(Token.family, Token.client_id)
        .execution_options(synchronize_session=False)
    ).all()
    for (_family, client_id), count in sorted(Counter(map(tuple, revoked)).items(), key=str):
        audit.record(
            "token.family_revoked",
            caller=caller,
            username=device.user.username,
            device_id=device.device_id,
            client_id=client_id,
            reason="device_revoked",
            tokens=count,
        )
    # Expired rather than marked used: a used code presented again would read as a replay.
    codes = db.session.execute(
        update(AuthorizationCode)
        .where(
            AuthorizationCode.device_pk == device.id,
            AuthorizationCode.used_at.is_(None),
            AuthorizationCode.expires_at > now,
        )
        .values(expires_at=now)
        .execution_options(synchronize_session=False)
    )
    return len(revoked), codes.rowcount  # type: ignore[attr-defined]


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
        },
    )
    server = Server(app, query_client=query_client, save_token=save_token)
    server.register_client_auth_method("client_secret_basic", authenticate_client_secret_basic)
    server.register_grant(
        AuthorizationCodeGrant, [RequiredS256(required=True), AuthorizationChecks(), IdTokens()]
    )
    server.register_grant(RefreshTokenGrant)
    server.register_grant(ServiceAccountGrant)
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
