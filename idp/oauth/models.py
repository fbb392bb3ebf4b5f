"""OAuth clients, authorization codes, tokens and signing keys.

These implement Authlib's model interfaces (``ClientMixin``,
``AuthorizationCodeMixin``, ``TokenMixin``) directly on typed models. Secrets,
codes and tokens are stored only as SHA-256 digests: they are long random
values, so a fast hash is enough and a database leak reveals none of them.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from datetime import datetime
from typing import Any

from authlib.oauth2.rfc6749 import scope_to_list
from flask_babel import lazy_gettext
from sqlalchemy import JSON, ForeignKey, String, Text, false, select
from sqlalchemy.orm import Mapped, column_property, mapped_column, relationship

from idp.accounts.models import User
from idp.db import Base, utcnow
from idp.mobile.models import Device

SUPPORTED_SCOPES = ("openid", "profile", "email")
#: What the phone shows for each scope before the user approves.
#: Shown by the phone app before it offers Approve, in the phone's language.
SCOPE_DESCRIPTIONS = {
    "openid": lazy_gettext("Sign you in with your account identifier"),
    "profile": lazy_gettext("Your name and username"),
    "email": lazy_gettext("Your email address"),
}


def digest(value: str) -> str:
    """SHA-256 hex digest of a high-entropy secret, code or token."""
    return hashlib.sha256(value.encode()).hexdigest()


class Client(Base):
    """A relying party registered by an admin."""

    __tablename__ = "clients"

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64), unique=True)
    client_secret_hash: Mapped[str | None] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    # Shown beside the name on the authorize page and in the phone app (https only).
    logo_uri: Mapped[str | None] = mapped_column(String(500))
    redirect_uris: Mapped[list[str]] = mapped_column(JSON)
    # Where RP-initiated logout may send the browser back to (exact match).
    post_logout_redirect_uris: Mapped[list[str]] = mapped_column(
        JSON, default=list, server_default="[]"
    )
    # Number matching for this client's sign-ins, even when IDP_NUMBER_MATCHING is off.
    number_matching: Mapped[bool] = mapped_column(default=False, server_default=false())
    # How near the phone must be to the browser for this client's sign-ins: "warn",
    # "require_same_network" or "off"; None follows IDP_PROXIMITY. The stricter of the two
    # applies (idp.qrlogin.proximity.policy_for): a client may raise the bar, never lower it.
    proximity: Mapped[str | None] = mapped_column(String(24))
    # CIBA (idp.oauth.ciba): "poll" or "ping" (None: not a CIBA client), and where a ping
    # is POSTed when a request is decided.
    backchannel_token_delivery_mode: Mapped[str | None] = mapped_column(String(8))
    backchannel_client_notification_endpoint: Mapped[str | None] = mapped_column(String(500))
    scope: Mapped[str] = mapped_column(String(500), default=" ".join(SUPPORTED_SCOPES))
    grant_types: Mapped[list[str]] = mapped_column(JSON)
    token_endpoint_auth_method: Mapped[str] = mapped_column(String(40))
    id_token_signed_response_alg: Mapped[str] = mapped_column(String(10), default="RS256")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Loaded only when read (listing, registration): CORS asks the index, see idp.oauth.cors.
    web_origins: Mapped[list[ClientOrigin]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True, order_by="ClientOrigin.origin"
    )

    @property
    def is_public(self) -> bool:
        """Public clients (browser or native apps) hold no secret and must use PKCE."""
        return self.token_endpoint_auth_method == "none"  # noqa: S105 (a method name)

    @property
    def client_metadata(self) -> dict[str, object]:
        """RFC 7591 metadata, as Authlib's endpoints read it."""
        return {
            "client_name": self.name,
            "redirect_uris": list(self.redirect_uris),
            "grant_types": list(self.grant_types),
            "response_types": ["code"],
            "scope": self.scope,
            "token_endpoint_auth_method": self.token_endpoint_auth_method,
            "id_token_signed_response_alg": self.id_token_signed_response_alg,
        }

    # -- authlib.oauth2.rfc6749.ClientMixin --------------------------------

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        # OIDC requires redirect_uri; plain OAuth may omit it only when exactly one is registered.
        return self.redirect_uris[0] if len(self.redirect_uris) == 1 else None

    def get_allowed_scope(self, scope: str | None) -> str:
        if not scope:
            return ""
        allowed = set(scope_to_list(self.scope))
        return " ".join(s for s in dict.fromkeys(scope_to_list(scope)) if s in allowed)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        # Exact string match, as OAuth 2.0 Security BCP (RFC 9700 §4.1.3) requires.
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        if self.client_secret_hash is None:
            return False
        return hmac.compare_digest(digest(client_secret), self.client_secret_hash)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if endpoint in ("token", "revocation", "device_authorization"):
            # RFC 7009 §2.1: a public client revokes its own tokens with its client_id;
            # RFC 8628 §3.1: a public device names itself the same way.
            if self.is_public:
                return method == "none"
            # A confidential client may send its secret either way (RFC 6749 §2.3.1).
            return method in ("client_secret_basic", "client_secret_post")
        if endpoint == "backchannel":  # CIBA's bc-authorize: confidential clients only
            return not self.is_public and method in ("client_secret_basic", "client_secret_post")
        return not self.is_public  # introspection: confidential clients only

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.grant_types


def _revoked_at(device_pk: Any) -> Any:
    """When the phone of ``device_pk`` was revoked, read with the row itself (a
    primary-key lookup in the same query, without loading the phone)."""
    return (
        select(Device.revoked_at)
        .where(Device.id == device_pk)
        .correlate_except(Device)
        .scalar_subquery()
    )


class ClientOrigin(Base):
    """A web origin (``scheme://host[:port]``) whose pages may read this client's answers
    from the token, UserInfo and revocation endpoints (CORS, see ``idp.oauth.cors``):
    registered with ``--web-origin``, or the origin of one of its redirect URIs."""

    __tablename__ = "client_origins"

    client_id: Mapped[str] = mapped_column(
        ForeignKey("clients.client_id", ondelete="CASCADE"), primary_key=True
    )
    # Indexed on its own too: a preflight asks "is this origin any client's?".
    origin: Mapped[str] = mapped_column(String(300), primary_key=True, index=True)


class AuthorizationCode(Base):
    """A single-use authorization code, stored as its digest."""

    __tablename__ = "authorization_codes"

    id: Mapped[int] = mapped_column(primary_key=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    client_id: Mapped[str] = mapped_column(
        ForeignKey("clients.client_id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    login_request_id: Mapped[str] = mapped_column(String(64))
    redirect_uri: Mapped[str | None] = mapped_column(Text)
    scope: Mapped[str] = mapped_column(String(500))
    nonce: Mapped[str | None] = mapped_column(String(255))
    code_challenge: Mapped[str | None] = mapped_column(String(128))
    code_challenge_method: Mapped[str | None] = mapped_column(String(10))
    auth_time: Mapped[int]
    acr: Mapped[str | None] = mapped_column(String(100))
    amr: Mapped[list[str] | None] = mapped_column(JSON)
    expires_at: Mapped[datetime] = mapped_column(index=True)  # idp purge
    used_at: Mapped[datetime | None]
    # The phone whose approval this code stands for (directly, or through the browser
    # session that approval made): revoking the phone withdraws the code.
    device_pk: Mapped[int | None] = mapped_column(
        ForeignKey("devices.id", ondelete="CASCADE"), index=True
    )

    user: Mapped[User] = relationship(lazy="joined")
    device_revoked_at: Mapped[datetime | None] = column_property(_revoked_at(device_pk))

    def is_expired(self) -> bool:
        return utcnow() >= self.expires_at

    def device_revoked(self) -> bool:
        """The phone that approved this code has been revoked since."""
        return self.device_revoked_at is not None

    # -- authlib AuthorizationCodeMixin (OAuth 2.0 and OIDC) ---------------

    def get_redirect_uri(self) -> str | None:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.auth_time

    def get_acr(self) -> str | None:
        return self.acr

    def get_amr(self) -> list[str] | None:
        return self.amr


class Token(Base):
    """An access token and, when the client may refresh, its refresh token."""

    __tablename__ = "tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    access_token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    refresh_token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    client_id: Mapped[str] = mapped_column(
        ForeignKey("clients.client_id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    scope: Mapped[str] = mapped_column(String(500))
    issued_at: Mapped[int] = mapped_column(index=True)  # idp purge
    expires_in: Mapped[int]
    refresh_expires_at: Mapped[int | None]
    access_revoked: Mapped[bool] = mapped_column(default=False)
    refresh_revoked: Mapped[bool] = mapped_column(default=False)
    # Every token descended from one authorization code (through refresh rotations)
    # shares the code's digest here: replaying the code, or a rotated-away refresh
    # token, revokes the whole family.
    family: Mapped[str | None] = mapped_column(String(64), index=True)
    # The phone whose approval the family descends from (None: a service account's, or
    # issued before revision 0005): revoking the phone revokes the family.
    device_pk: Mapped[int | None] = mapped_column(
        ForeignKey("devices.id", ondelete="CASCADE"), index=True
    )

    user: Mapped[User | None] = relationship(lazy="joined")
    client: Mapped[Client] = relationship(lazy="joined")
    device_revoked_at: Mapped[datetime | None] = column_property(_revoked_at(device_pk))

    def device_revoked(self) -> bool:
        """The phone that approved this token's family has been revoked since. Revoking
        the phone also sets the revoked flags; this check covers a token written by a
        request that raced the revocation."""
        return self.device_revoked_at is not None

    # -- authlib TokenMixin --------------------------------------------------

    def check_client(self, client: Client) -> bool:
        return self.client_id == client.client_id

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return self.expires_in

    def is_expired(self) -> bool:
        return time.time() >= self.issued_at + self.expires_in

    def is_revoked(self) -> bool:
        return self.access_revoked or self.device_revoked()

    def get_user(self) -> User | None:
        return self.user

    def get_client(self) -> Client:
        return self.client

    def is_refresh_usable(self) -> bool:
        """The refresh token exists, is not revoked and has not expired."""
        if self.refresh_token_hash is None or self.refresh_revoked or self.device_revoked():
            return False
        return self.refresh_expires_at is None or time.time() < self.refresh_expires_at


class SigningKey(Base):
    """A private signing key (JWK JSON), made on first start; never in code or files."""

    __tablename__ = "signing_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    kid: Mapped[str] = mapped_column(String(100), unique=True)
    alg: Mapped[str] = mapped_column(String(10))
    private_jwk: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    retired_at: Mapped[datetime | None]
