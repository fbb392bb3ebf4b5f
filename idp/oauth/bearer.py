"""Bearer access tokens on the resource side: how UserInfo finds and checks them.

``BearerProtector`` reads the token from the ``Authorization`` header or a form
POST's body, never the query string; ``AccessTokens`` looks it up by digest;
``NoBearerToken`` is the bare 401 challenge for a request that offers none.
"""

from __future__ import annotations

from typing import Any

from authlib.consts import default_json_headers
from authlib.integrations.flask_oauth2 import ResourceProtector
from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6750 import BearerTokenValidator
from flask import request as flask_request
from sqlalchemy import bindparam, select

from idp import db
from idp.oauth import cors
from idp.oauth.claims import issuer
from idp.oauth.models import Token, digest

# A hot lookup, built once: a statement made per call costs more to build than to run.
TOKEN_BY_ACCESS_DIGEST = select(Token).where(Token.access_token_hash == bindparam("digest"))


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
            raise NoBearerToken(self._default_realm or issuer())
        return super().parse_request_authorization(request)
