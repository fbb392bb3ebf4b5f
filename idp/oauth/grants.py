"""The grants: how a code, a refresh token or a client's own credentials become tokens.

``AuthorizationCodeGrant`` stores codes as digests, short-lived and single use, with
``RequiredS256`` (PKCE S256, required of public clients; ``plain`` refused) among its
extensions; ``RefreshTokenGrant`` rotates refresh tokens; ``ServiceAccountGrant`` is
``client_credentials`` for registered service accounts. A replayed code or reused
refresh token revokes its whole family (``idp.oauth.family``). ``new_secret_token``
makes every code and token.
"""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from authlib.oauth2.rfc6749 import (
    AccessDeniedError,
    InvalidGrantError,
    InvalidRequestError,
    grants,
)
from authlib.oauth2.rfc7636 import CodeChallenge
from flask import current_app
from sqlalchemy import bindparam, insert, select, update

from idp import db
from idp.accounts.models import User
from idp.db import utcnow
from idp.oauth.claims import ACR, AMR
from idp.oauth.family import revoke_family
from idp.oauth.models import AuthorizationCode, Client, Token, digest

TOKEN_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]

# The hot lookups, built once: a statement made per call costs more to build than to run.
CODE_BY_DIGEST = select(AuthorizationCode).where(AuthorizationCode.code_hash == bindparam("digest"))
TOKEN_BY_REFRESH_DIGEST = select(Token).where(Token.refresh_token_hash == bindparam("digest"))
CODE_INSERT = insert(AuthorizationCode.__table__)


def _epoch(moment: datetime) -> int:
    """Unix time of a naive UTC timestamp (as the database stores them)."""
    return int(moment.replace(tzinfo=UTC).timestamp())


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

    def create_authorization_response(self, redirect_uri: str, grant_user: Any) -> Any:
        """Authlib's answer; a denial says why (``error_description``), when the login
        request knows (``LoginRequest.denial_description``)."""
        if not grant_user:
            login = getattr(self.request, "login_request", None)
            why = getattr(login, "denial_description", None)
            raise AccessDeniedError(description=why, redirect_uri=redirect_uri)
        return super().create_authorization_response(redirect_uri, grant_user)

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
