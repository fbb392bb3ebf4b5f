"""Token revocation (RFC 7009), for every client, and introspection (RFC 7662), for
confidential clients.

A client may revoke or introspect only the tokens issued to it. A public client
revokes with its ``client_id`` alone (RFC 7009 §2.1 authenticates confidential clients
only): a browser app signing out withdraws its own tokens. Revoking either
half of a token row (its access token or its refresh token) revokes both: a
refresh token that is withdrawn must not leave its access token usable, and the
other way round (RFC 7009 §2.1 allows it, and it is the safer reading).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from flask import current_app
from sqlalchemy import bindparam, select, update

from idp import audit, db
from idp.oauth.models import Client, Token, digest

CONFIDENTIAL_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]
REVOCATION_AUTH_METHODS = [*CONFIDENTIAL_AUTH_METHODS, "none"]


@dataclass
class FoundToken:
    """A token row, and which of its two tokens was presented."""

    row: Token
    kind: str  # "access_token" or "refresh_token"

    def check_client(self, client: Client) -> bool:
        return self.row.client_id == client.client_id

    def is_expired(self) -> bool:
        if self.kind == "access_token":
            return self.row.is_expired()
        expires = self.row.refresh_expires_at
        return expires is not None and time.time() >= expires

    def is_revoked(self) -> bool:
        if self.row.device_revoked():  # the phone that approved it was revoked
            return True
        return self.row.access_revoked if self.kind == "access_token" else self.row.refresh_revoked


_BY_DIGEST = {
    "access_token": select(Token).where(Token.access_token_hash == bindparam("digest")),
    "refresh_token": select(Token).where(Token.refresh_token_hash == bindparam("digest")),
}


def find_token(token_string: str, hint: str | None) -> FoundToken | None:
    """Look the token up by its digest, as an access token or a refresh token."""
    if not isinstance(token_string, str) or not token_string or len(token_string) > 512:
        return None
    hashed = digest(token_string)
    kinds = (
        ["refresh_token", "access_token"]
        if hint == "refresh_token"
        else [
            "access_token",
            "refresh_token",
        ]
    )
    for kind in kinds:
        row = db.session.scalar(_BY_DIGEST[kind], {"digest": hashed})
        if row is not None:
            return FoundToken(row, kind)
    return None


class Revocation(RevocationEndpoint):
    """``POST /revoke``: 200 whether or not the token existed (RFC 7009 §2.2)."""

    CLIENT_AUTH_METHODS = REVOCATION_AUTH_METHODS

    def query_token(self, token_string: str, token_type_hint: str | None) -> FoundToken | None:
        return find_token(token_string, token_type_hint)

    def revoke_token(self, token: FoundToken, request: Any) -> None:
        db.session.execute(
            update(Token)
            .where(Token.id == token.row.id)
            .values(access_revoked=True, refresh_revoked=True)
        )
        audit.record(
            "token.revoked",
            caller=request.caller,
            username=token.row.user.username if token.row.user else None,
            client_id=token.row.client_id,
            kind=token.kind,
        )


class Introspection(IntrospectionEndpoint):
    """``POST /introspect``: what a token is, for the client it was issued to."""

    CLIENT_AUTH_METHODS = CONFIDENTIAL_AUTH_METHODS

    def query_token(self, token_string: str, token_type_hint: str | None) -> FoundToken | None:
        return find_token(token_string, token_type_hint)

    def check_permission(self, token: FoundToken, client: Client, request: Any) -> bool:
        return token.check_client(client)

    def introspect_token(self, token: FoundToken) -> dict[str, Any]:
        row = token.row
        if token.kind == "access_token":
            exp: int | None = row.issued_at + row.expires_in
        else:
            exp = row.refresh_expires_at
        payload: dict[str, Any] = {
            "active": True,
            "client_id": row.client_id,
            "token_type": "Bearer" if token.kind == "access_token" else "refresh_token",
            "scope": row.scope,
            "iat": row.issued_at,
            "iss": current_app.config["IDP_ISSUER"],
        }
        if exp is not None:
            payload["exp"] = exp
        if row.user is not None:
            payload["sub"] = row.user.subject
            payload["username"] = row.user.username
        return payload
