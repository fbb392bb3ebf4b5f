"""Claims about the user: the ID token and UserInfo, and what they say of the login.

``ScopedClaims`` gives both the user's claims that the granted scope allows;
``IdTokens`` signs the ID token with the current key and a ``kid``, and refuses a
nonce already used; ``UserInfoClaims`` is the OIDC UserInfo endpoint. ``AMR`` and
``ACR`` say how every login here is authenticated; ``issuer`` is the ``iss`` of all.
"""

from __future__ import annotations

import time
from typing import Any

from authlib.oidc.core import OpenIDCode, UserInfo, UserInfoEndpoint
from flask import current_app
from sqlalchemy import select

from idp import db
from idp.accounts.models import User
from idp.accounts.services import user_claims
from idp.oauth.keys import key_store
from idp.oauth.models import AuthorizationCode, Client

#: How the user was authenticated (RFC 8176): a proof with a software key held
#: by the enrolled phone app, confirmed by the user on that phone.
AMR = ["swk", "user"]
ACR = "urn:qr-idp:acr:phone-approval"


def issuer() -> str:
    """This IdP's issuer URL (``IDP_ISSUER``)."""
    return current_app.config["IDP_ISSUER"]


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
            "iss": issuer(),
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
        return issuer()

    def resolve_private_key(self) -> Any:
        return key_store().signing_key("RS256")
